"""The shapes most metrics share, run from a declaration: a stat with its previous period, a
series with the previous period's buckets alongside, a top list (ranked by the database, or
grouped once per refresh and ranked here). declare.py builds each metric's builder from its spec
with `stat_handler`, `series_handler` and `top_handler`."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Sequence

from agent_analytics.datasource import planner
from agent_analytics.datasource import timerange as tr
from agent_analytics.datasource.query import Query
from agent_analytics.datasource.relations import Condition, Dataset
from agent_analytics.datasource.result import Result, pct_change
from agent_analytics.datasource.timerange import Window

if TYPE_CHECKING:
    from agent_analytics.datasource.engine import Engine

Handler = Callable[["Engine", Query], Result]
# A stat: the dataset, the rows it counts, the body run over `src`, how the value is read.
StatSpec = tuple[Dataset, Condition, str, Callable[[list[dict[str, Any]]], Any]]
# A series: the dataset, the rows it counts, the sums per bucket, the column drawn.
SeriesSpec = tuple[Dataset, Condition, str, str]
# A top list: the dataset, the rows it counts, the body run over `src`.
TopSpec = tuple[Dataset, Condition, str]


def stat(e: Engine, q: Query, spec: StatSpec, extras: Sequence[str] = ()) -> Result:
    """A stat over the range and the previous one: `spec`'s body run over each, its value read
    from the rows; `extras`: columns of the range's row answered besides the value."""
    ds, extra, body, value_of = spec
    prev = tr.previous_window(q.window, q.tz, q.ptd_unit, q.whole_unit)
    current, old = (e.with_src(e._src(ds, window, q, extra), body, shared=True) for window in (q.window, prev))
    value, previous = value_of(current), value_of(old)
    row = {"value": value, "previous": previous, "change_pct": pct_change(value, previous)}
    for c in extras:
        row[c] = current[0][c]
    return Result([row])


def _buckets(e: Engine, ds: Dataset, window: Window, q: Query, extra: Condition, sums: str, column: str,
             unit: str) -> dict[datetime, dict[str, Any]]:
    # Hourly aggregates answer local hours/days exactly only when they are unions of UTC hours.
    use_agg = planner.hours_align(q.tz, window)
    rows = e.with_src(e._src(ds, window, q, extra, use_aggregate=use_agg),
                      f"SELECT date_trunc(%s, time, %s) AS b, {sums} FROM src GROUP BY 1", [unit, q.tz.key],
                      shared=True)
    return {r["b"]: r for r in rows}


def series(e: Engine, q: Query, spec: SeriesSpec, extras: Sequence[str] = ()) -> Result:
    """A series over the range's buckets with the previous range's alongside: `spec`'s sums per
    bucket and the column drawn; `extras`: columns of each bucket answered besides the value."""
    ds, extra, sums, column = spec
    prev = tr.previous_window(q.window, q.tz, q.ptd_unit, q.whole_unit)
    unit = tr.bucket_unit(q.window)
    cur_starts = tr.bucket_starts(q.window, unit, q.tz)
    prev_starts = tr.bucket_starts(prev, unit, q.tz)
    cur = _buckets(e, ds, q.window, q, extra, sums, column, unit)
    old = _buckets(e, ds, prev, q, extra, sums, column, unit)
    rows = []
    # The k-th previous bucket is drawn at the k-th current bucket (calendar-aligned, DST-safe).
    for k, start in enumerate(cur_starts):
        if k < len(prev_starts):
            before = old.get(prev_starts[k])
            previous = before[column] if before else 0
        else:
            previous = None
        bucket = cur.get(start)
        row = {"time": tr.to_ms(start), "current": bucket[column] if bucket else 0, "previous": previous}
        for c in extras:
            row[c] = bucket[c] if bucket else 0
        rows.append(row)
    return Result(rows, meta={"bucket": unit})


def top(e: Engine, q: Query, spec: TopSpec) -> Result:
    """A page of a top list ranked by the database, and how many groups there are."""
    ds, extra, body = spec
    src = e._src(ds, q.window, q, extra)
    rows = e.with_src(src, body + " LIMIT %s OFFSET %s", [q.limit, q.offset])
    if rows:
        total = rows[0]["total"]
    else:
        # Past the last page: count the groups on their own.
        counted = e.with_src(src, f"SELECT count(*) AS total FROM ({body}) t")
        total = counted[0]["total"] if counted else 0
    for r in rows:
        r.pop("total", None)
    return Result(rows, total=int(total))


def ranked_top(e: Engine, q: Query, spec: TopSpec, order: Callable[[dict[str, Any]], tuple]) -> Result:
    """Top users or models: the by-tokens and by-cost panels group the same rows, so the
    groups are fetched once per refresh (shared) and ranked here, as the database would."""
    ds, extra, body = spec
    groups = e.with_src(e._src(ds, q.window, q, extra), body, shared=True)
    ranked = sorted(groups, key=order)
    # The groups may hold what another panel sharing them shows: each answers its own columns.
    names = {c.name for c in q.metric.columns}
    return Result([{k: v for k, v in r.items() if k in names} for r in ranked[q.offset:q.offset + q.limit]],
                  total=len(groups))


def column(name: str) -> Callable[[list[dict[str, Any]]], Any]:
    return lambda rows: rows[0][name] if rows else None


def stat_handler(spec: StatSpec, extras: Sequence[str] = ()) -> Handler:
    """The builder of a stat metric: `stat` over its spec."""
    def handler(e: Engine, q: Query) -> Result:
        return stat(e, q, spec, extras)
    return handler


def series_handler(spec: SeriesSpec, extras: Sequence[str] = ()) -> Handler:
    """The builder of a series metric: `series` over its spec."""
    def handler(e: Engine, q: Query) -> Result:
        return series(e, q, spec, extras)
    return handler


def top_handler(spec: TopSpec, order: Callable[[dict[str, Any]], tuple] | None = None) -> Handler:
    """The builder of a top list: ranked by the database, or here by `order`'s key."""
    def handler(e: Engine, q: Query) -> Result:
        return top(e, q, spec) if order is None else ranked_top(e, q, spec, order)
    return handler
