"""Budgets against their spend: each budget of the directory (ingest/budgets.py) with the cost
of its scope's LLM usage in its current UTC period (list price or reported cost, AA_COST_SOURCE,
request by request: the LLM Usage source, read from the aggregates), what of it could not be
priced, the previous period's spend to the same point, and the forecast (budget_forecast.py).

Evaluated as of the end of the query's time range (now, for a dashboard or an alert rule whose
range ends now), never later than now: a range ending last Tuesday shows the budgets as they
stood then.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple, Sequence

from psycopg import sql

from agent_analytics.datasource import budget_forecast as bf
from agent_analytics.datasource import catalog
from agent_analytics.datasource import timerange as tr
from agent_analytics.datasource.catalog import PERCENT, UNPRICED_COLUMNS, USD, Metric, col
from agent_analytics.datasource.filters import ATTRIBUTION_COLUMNS, GROUPS_OF_ROW, MEMBERS_OF_ROW
from agent_analytics.datasource.query import Query
from agent_analytics.datasource.relations import ALL, LLM_USAGE, reads
from agent_analytics.datasource.result import Result, pct_change
from agent_analytics.datasource.sqltext import COST_SUM
from agent_analytics.datasource.timerange import Window
from agent_analytics.ingest.budgets import SCOPES

if TYPE_CHECKING:
    from agent_analytics.datasource.engine import Engine

# How a scope narrows the LLM usage: the data source's own filters (filters.py), so a group
# budget counts the group's members as they stand now, as the group filter does. A scope kind
# is one entry here and one in ingest/budgets.py SCOPES, which the directory accepts.
SCOPE_FILTERS: dict[str, Callable[[Mapping[str, Any]], dict[str, tuple[str, ...]]]] = {
    "organisation": lambda b: {},
    "user": lambda b: {"user": (b["target"],)},
    "group": lambda b: {"group": (b["target"],)},
    # An attribution dimension's own filter (filters.py declares one per dimension).
    "attribute": lambda b: {b["attribute"]: (b["target"],)},
}
if tuple(SCOPE_FILTERS) != SCOPES:
    raise ValueError("the directory must accept exactly the budget scopes measured here")


class Target(NamedTuple):
    """How the rows of a statement name each one's target: `expression` over `rows` (its FROM:
    a template whose `{by}` is what else the statement groups by, a leading comma or nothing;
    a %s there reads the batch's targets as one bound list). `reads`: the columns rows that
    select the batch's targets themselves read; then the scope's filter, which would repeat
    that selection, is left out (and costs its planning no more)."""
    expression: str
    rows: str = "src"
    reads: tuple[str, ...] = ()


# A group's filter keeps its members' usage and what its attribution rule maps to it: each row
# joined to every group it counts in (a member of two groups counts in both), as the filter does.
# The rows are first summed by what decides their groups (and by what else the statement
# groups by), and the groups looked up once per user and attribution values (a few hundred),
# their sums carried along in arrays; sums of sums and minima of minima are the statement's own
# (cost is numeric, exact).
def _groups(keys: tuple[str, ...], groups_of_row: str) -> Target:
    by = ", ".join(keys)
    return Target(
        "src.group_id",
        "(SELECT g.group_id, x.time, x.cost, x.unpriced_tokens"
        f" FROM (SELECT {by}, array_agg(time) AS times, array_agg(cost) AS costs,"
        " array_agg(unpriced_tokens) AS unpriced"
        f" FROM (SELECT {by}, min(time) AS time, sum(cost) AS cost, sum(unpriced_tokens) AS unpriced_tokens"
        f" FROM src GROUP BY {by}{{by}}) d GROUP BY {by}) src"
        f" JOIN LATERAL ({groups_of_row}) g ON g.group_id = ANY(%s)"
        " CROSS JOIN LATERAL unnest(src.times, src.costs, src.unpriced) x(time, cost, unpriced_tokens)) src",
        keys)


_GROUPS = _groups(("user_id", *ATTRIBUTION_COLUMNS), GROUPS_OF_ROW)
# Where no rule maps a value onto any of the batch's groups, their members alone: read from the
# rollups by user, smaller than those by user and attribution.
_MEMBERS = _groups(("user_id",), MEMBERS_OF_ROW)
_MAPPED = "SELECT EXISTS (SELECT 1 FROM attribution_groups WHERE group_id = ANY(%s)) AS mapped"

# The budgets of a scope kind are measured together, a few statements for them all: for one
# target, the scope's filter keeps exactly the rows its Target names it on. None: the
# organisation is one scope.
TARGETS: dict[str, Callable[[Mapping[str, Any]], Target | None]] = {
    "organisation": lambda b: None,
    "user": lambda b: Target("src.user_id"),
    "group": lambda b: _GROUPS,
    "attribute": lambda b: Target(f"src.{b['attribute']}"),  # the dimension's column, as its filter's
}
if set(TARGETS) != set(SCOPE_FILTERS):
    raise ValueError("every budget scope says how its budgets are measured together")
_ONE = Target("NULL::text")  # a batch of one target, no column names it

_BUDGETS = ("SELECT b.id, b.name, b.scope, b.attribute, b.target, b.period, b.amount_usd::float8 AS amount_usd,"
            " b.owner, CASE b.scope WHEN 'user' THEN coalesce(u.display_name, u.email, b.target)"
            " WHEN 'group' THEN coalesce(g.name, b.target) WHEN 'organisation' THEN 'Organisation'"
            " ELSE b.attribute || '=' || b.target END AS scope_name"
            " FROM budgets b LEFT JOIN users u ON b.scope = 'user' AND u.id = b.target"
            " LEFT JOIN groups g ON b.scope = 'group' AND g.id = b.target ORDER BY b.id")
_DAY = "date_trunc('day', time, 'UTC')"
_DAILY = (f"SELECT {{target}} AS target, ({_DAY} AT TIME ZONE 'UTC')::date AS day,"
          f" {COST_SUM}::float8 AS cost, coalesce(sum(unpriced_tokens), 0)::float8 AS unpriced_tokens"
          " FROM {rows} GROUP BY 1, 2")
_TOTAL = f"SELECT {{target}} AS target, {COST_SUM}::float8 AS cost FROM {{rows}} GROUP BY 1"
_FIRST = "SELECT {target} AS target, (min(time) AT TIME ZONE 'UTC')::date AS day FROM {rows} GROUP BY 1"
# Where the search for the first day with usage begins: before any agent sent telemetry.
_HISTORY = datetime(2000, 1, 3, tzinfo=bf.UTC)


class Batch(NamedTuple):
    """Budgets measured together: the filters that keep all their targets' usage, how a row
    names its target (TARGETS; _ONE for a single target) and the budgets."""
    filters: dict[str, tuple[str, ...]]
    target: Target
    budgets: list[Mapping[str, Any]]

    def key(self, budget: Mapping[str, Any]) -> str | None:
        return None if self.target == _ONE else budget["target"]

    def targets(self) -> tuple[str, ...]:
        return tuple(sorted({b["target"] for b in self.budgets}))


def batches(budgets: Sequence[Mapping[str, Any]]) -> list[Batch]:
    """The budgets in batches measured together (TARGETS), in the order first met."""
    found: dict[tuple[str, Target | str | None], Batch] = {}
    for b in budgets:
        target = TARGETS[b["scope"]](b)
        key = (b["scope"], target or b["target"])
        if key not in found:
            found[key] = Batch(SCOPE_FILTERS[b["scope"]](b), target or _ONE, [])
        found[key].budgets.append(b)
    out = []
    for batch in found.values():
        if batch.target != _ONE:  # one filter, every target of the batch
            batch = batch._replace(filters={name: batch.targets() for name in batch.filters})
        out.append(batch)
    return out


def _cost(e: Engine, q: Query, metric_id: str, window: Window, batch: Batch, body: str) -> list[dict[str, Any]]:
    """`body` over the LLM usage of `window` under the batch's filters (its `{target}` the batch's),
    read as the metric `metric_id` reads it (which aggregates may answer: a day's sums by hour, a
    total by day too)."""
    if window.end <= window.start:
        window = Window(window.start, window.start)
    metric, filters = catalog.BY_ID[metric_id], batch.filters
    if batch.target.reads:
        metric = replace(metric, reads=metric.dataset_reads._replace(
            needs=(metric.dataset_reads.needs or frozenset()) | frozenset(batch.target.reads)))
        filters = {}
    asked = replace(q, metric=metric, window=window, filters=filters)
    read = asked.metric.dataset_reads
    rows = batch.target.rows.format(by=f", {_DAY}" if body is _DAILY else "")
    return e.with_src(e._src(read.dataset, window, asked, read.rows),
                      body.format(target=batch.target.expression, rows=rows),
                      [list(batch.targets())] * rows.count("%s"))


def first_days(e: Engine, q: Query, batch: Batch, before: datetime) -> dict[str | None, date]:
    """The first UTC day before `before` with LLM usage (priced or not) of each target of the
    batch that has one; read as Total cost reads it, whole days from the daily aggregate."""
    rows = _cost(e, q, "llm_total_cost", Window(_HISTORY, before), batch, _FIRST)
    return {r["target"]: r["day"] for r in rows if r["day"] is not None}


def _rate_firsts(e: Engine, q: Query, batch: Batch, days: Mapping[str | None, list[dict[str, Any]]],
                 read_from: datetime, rate: tuple[datetime, datetime]) -> dict[str | None, date]:
    """Each target's first day with usage as far as its daily rate tells it apart (the rate
    reads only the days since then within `rate`, the longest rate window): its first day when
    that is in `rate`, a day before it otherwise. From the days read since `read_from` (before
    `rate`), and the history before them only for the targets none of those days were before."""
    r0, r1 = (t.date() for t in rate)
    firsts = {t: min(r["day"] for r in rows) for t, rows in days.items() if any(r["day"] < r1 for r in rows)}
    unsure = [t for t in batch.targets() if firsts.get(t, r0) >= r0]
    if unsure:
        older = batch._replace(filters={name: tuple(unsure) for name in batch.filters},
                               budgets=[b for b in batch.budgets if b["target"] in unsure])
        firsts |= first_days(e, q, older, read_from)
    return firsts


def measure(e: Engine, q: Query, batch: Batch, as_of: datetime, data_since: date | None) -> dict[str, dict[str, Any]]:
    """The rows of the batch's budgets by budget id: each one's spend to date, the previous
    period's to the same point, the forecast. `data_since`: the installation's first day with
    usage (None: none before `as_of`'s day); a previous period that began before it is unknown
    (None), not $0. A few statements for them all: every day's cost since the earliest day any
    of them reads, and the day before the longest rate window (each keeps its own); the history
    before that only for targets with no usage in it; the previous periods' totals by period."""
    key = batch.key
    rate = bf.rate_window(as_of, _HISTORY.date())
    read_from = min([bf.period_bounds(b["period"], as_of)[0] for b in batch.budgets] + [rate[0] - bf.DAY])
    days: dict[str | None, list[dict[str, Any]]] = {}
    # Read as Total cost reads it: whole UTC days from the daily aggregate, whose buckets are the
    # UTC days summed here, and the hours and minutes of the current day around them.
    for r in _cost(e, q, "llm_total_cost", Window(read_from, as_of), batch, _DAILY):
        days.setdefault(r["target"], []).append(r)
    firsts: dict[str | None, date] = (({None: data_since} if data_since else {}) if not batch.filters
                                      else _rate_firsts(e, q, batch, days, read_from, rate))
    since: dict[str, datetime] = {}  # each budget's first day read: its period's, or its rate window's
    for b in batch.budgets:
        start, _ = bf.period_bounds(b["period"], as_of)
        since[b["id"]] = min(start, bf.rate_window(as_of, firsts.get(key(b)))[0])
    previous: dict[str, dict[str | None, float | None]] = {}
    for period in sorted({b["period"] for b in batch.budgets}):
        start, _ = bf.period_bounds(period, as_of)
        prev_start, prev_point = bf.previous_point(period, start, as_of)
        if data_since is not None and data_since <= prev_start.date():
            # A target without usage in that window cost $0, as the sum over no rows says.
            got = {r["target"]: r["cost"]
                   for r in _cost(e, q, "llm_total_cost", Window(prev_start, prev_point), batch, _TOTAL)}
            previous[period] = {key(b): got.get(key(b), 0.0) for b in batch.budgets if b["period"] == period}
    out = {}
    for b in batch.budgets:
        start, end = bf.period_bounds(b["period"], as_of)
        mine = [r for r in days.get(key(b), []) if r["day"] >= since[b["id"]].date()]
        daily: dict[date, float | None] = {r["day"]: r["cost"] for r in mine}
        unpriced = sum(r["unpriced_tokens"] for r in mine if r["day"] >= start.date())
        prev = previous[b["period"]][key(b)] if b["period"] in previous else None
        o = bf.outlook(b["amount_usd"], b["period"], as_of, daily, firsts.get(key(b)))
        out[b["id"]] = {
            "budget": b["id"], "name": b["name"], "scope": b["scope"], "scope_name": b["scope_name"],
            "owner": b["owner"], "period": b["period"], "period_start": tr.to_ms(start),
            "period_end": tr.to_ms(end), "amount": b["amount_usd"], "spend": o.spend, "spend_pct": o.spend_pct,
            "unpriced_tokens": unpriced, "unpriced": unpriced > 0, "previous_spend": prev,
            "change_pct": pct_change(o.spend, prev), "daily_rate": o.daily_rate, "forecast": o.forecast,
            "forecast_pct": o.forecast_pct,
            "reached_on": None if o.reached_on is None else tr.to_ms(datetime.combine(o.reached_on, time(), bf.UTC)),
            "forecast_date": None if o.forecast_date is None else tr.to_ms(o.forecast_date),
            "outlook": o.outlook, "method": bf.METHOD,
        }
    return out


def budgets(e: Engine, q: Query) -> Result:
    """Every budget, as of the end of the query's range (at the latest now)."""
    as_of = min(q.window.end, datetime.now(bf.UTC))
    e._note("budgets")
    rows = [b for b in e.fetch(sql.SQL(_BUDGETS), []) if b["scope"] in SCOPE_FILTERS]
    data_since = first_days(e, q, Batch({}, _ONE, []), bf.rate_window(as_of, None)[1]).get(None)
    measured: dict[str, dict[str, Any]] = {}
    for batch in batches(rows):
        if batch.target == _GROUPS and not e.fetch(sql.SQL(_MAPPED), [list(batch.targets())])[0]["mapped"]:
            batch = batch._replace(target=_MEMBERS)
        measured |= measure(e, q, batch, as_of, data_since)
    ordered = [measured[b["id"]] for b in rows]
    return Result(ordered[q.offset:q.offset + q.limit], total=len(ordered), meta={"as_of": tr.to_ms(as_of)})


METRIC = Metric(
    "llm_budgets", "llm", "table", "Budgets", USD,
    (col("budget", title="Budget id"), col("name", title="Budget"), col("scope", title="Scope"),
     col("scope_name", title="For"), col("owner", title="Owner"), col("period", title="Period"),
     col("period_start", "time", None, "Period start"), col("period_end", "time", None, "Period end"),
     col("amount", "number", USD, "Amount"), col("spend", "number", USD, "Spend to date"),
     col("spend_pct", "number", PERCENT, "Spent"), *UNPRICED_COLUMNS,
     col("previous_spend", "number", USD, "Previous period, same point"),
     col("change_pct", "number", PERCENT, "Change"), col("daily_rate", "number", USD, "Daily rate"),
     col("forecast", "number", USD, "Forecast at period end"), col("forecast_pct", "number", PERCENT, "Forecast"),
     col("reached_on", "time", None, "Reached on"), col("forecast_date", "time", None, "Forecast to reach"),
     col("outlook", title="Outlook"), col("method", title="Forecast method")), (),
    "Every budget (directory) with its scope's LLM cost in its current UTC period as of the end of the range "
    "(at the latest now): spend to date (null when none of it could be priced; unpriced_tokens: what it could "
    "not price), the previous period's spend to the same point (null when the installation's data begins "
    "after that period's start), the daily rate (mean of the last 7 complete UTC days, or of those since the "
    "scope's first day with usage; null before one), the forecast at the period's end (spend + rate x days "
    "left; null when spend or rate is) and the date the amount is forecast to be reached (null when the rate "
    "is 0 or unknown or it falls after the period). docs/budgets.md.",
    # Each budget is read as Total cost reads it (by UTC day, and the previous period's total).
    build=budgets, reads=reads(LLM_USAGE, ALL, ("user_id",), time=True))
