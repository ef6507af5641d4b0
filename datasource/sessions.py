"""Sessions: the Sessions table, the session statistics and the drawer's per-session metrics.

A session's totals within the window come from the totals kept at ingest when the session lies
wholly inside it (and the filters allow), otherwise grouped from its rows (session_rows.py). Each
request's tokens and cost are counted once: from its events or from its session's metric points,
decided at ingest (`counted`, `cost_counted`). Each metric is declared once here (METRICS,
collected by catalog.py) with what it reads and its builder.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from psycopg import sql

from agent_analytics.datasource import llm_health, planner
from agent_analytics.datasource import timerange as tr
from agent_analytics.datasource.catalog import (COMPARISON_DIMENSIONS, COST_COLUMN, COUNT, LLM_SESSION_FILTERS, MS,
                                                RATIO,
                                                REQUESTS_COLUMN, SECONDS, SESSION_FILTERS, TOKENS_COLUMN,
                                                UNPRICED_COLUMNS, USD, Column, Metric, col)
from agent_analytics.datasource.query import Query
from agent_analytics.datasource.relations import (EVERY_COLUMN, IN_SESSION, LLM_SESSIONS, SESSION_KEYS,
                                                  SESSION_METRICS, counted_tokens, reads)
from agent_analytics.datasource.result import Result
from agent_analytics.datasource.session_rows import sessions_cte
from agent_analytics.datasource.sqltext import TOKEN_TYPES

if TYPE_CHECKING:
    from agent_analytics.datasource.engine import Engine

# One page of the sessions `s` in `order`, with the total count unless known, and (for the page
# only) names.
_PAGE = (" SELECT s.*, coalesce(u.display_name, u.email, s.user_id) AS user_name,"
         " coalesce(a.name, s.agent_id) AS agent_name"
         " FROM (SELECT s.*{total} FROM s ORDER BY {order} LIMIT %s OFFSET %s) s"
         " LEFT JOIN users u ON u.id = s.user_id LEFT JOIN agents a ON a.id = s.agent_id"
         " ORDER BY {order}")

# Count and P50 / average / P95 per comparison dimension over the sessions `s`
# (one ordered-set aggregate per dimension gives both percentiles from one sort; OFFSET 0 keeps
# the subquery whole, so each session's dimensions are computed once, not once per aggregate).
_SESSION_STATS = ("SELECT " + ", ".join(["sessions"] + [
    f"{d}_n, {d}_pct[1] AS {d}_p50, {d}_avg, {d}_pct[2] AS {d}_p95" for d in COMPARISON_DIMENSIONS])
    + " FROM (SELECT " + ", ".join(["count(*) AS sessions"] + [
        f"count({d}) AS {d}_n, percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY {d}) AS {d}_pct,"
        f" avg({d}) AS {d}_avg" for d in COMPARISON_DIMENSIONS])
    + " FROM (SELECT " + ", ".join(COMPARISON_DIMENSIONS) + " FROM s OFFSET 0) s) pct")


def _session_stats(e: Engine, q: Query) -> dict[str, Any]:
    """Count and P50 / average / P95 per dimension over the filter set's sessions (not
    `session`): the same for Session metrics and the Sessions table's chips, so computed once
    for the panels of a refresh (see shared.py)."""
    cte, params = sessions_cte(e, q, drop=("session",), detail=False)
    return e.fetch(sql.SQL("WITH ") + cte + sql.SQL(_SESSION_STATS), params, shared=True)[0]


def _compare(value: Any, stats: dict[str, Any], dim: str) -> tuple[float | None, bool]:
    """Ratio to the median (None: no baseline, chip hidden) and the top-5% flag."""
    n, median, p95 = stats[f"{dim}_n"], stats[f"{dim}_p50"], stats[f"{dim}_p95"]
    if value is None or n < 2:
        return None, False
    ratio = value / median if median not in (None, 0) else None
    return ratio, bool(p95 is not None and value >= p95)


def _session_rows(e: Engine, q: Query, order: str, limit: int, offset: int,
                  total: int | None = None) -> tuple[list[dict], int]:
    """A page of sessions and how many there are (counted here unless `total` is known: then
    only the page's worth of kept sessions is read, in the order, from an index)."""
    top = None if total is None else (order.replace("s.", ""), limit + offset)
    cte, params = sessions_cte(e, q, top=top)
    count = "" if total is not None else ", count(*) OVER () AS total"
    query = sql.SQL("WITH ") + cte + sql.SQL(_PAGE.format(order=order, total=count))
    rows = e.fetch(query, [*params, limit, offset])
    if total is None and rows:
        total = rows[0]["total"]
    if total is None:
        counted = e.fetch(sql.SQL("WITH ") + cte + sql.SQL("SELECT count(*) AS total FROM s"), params)
        total = counted[0]["total"]
    return _with_models(e, q, rows), int(total)


def _with_models(e: Engine, q: Query, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The page's sessions with the models each used in the window (under the filters): a
    session's kept totals name them; the others are looked up, for this page only."""
    if all(r["models"] is not None for r in rows):
        return rows
    # As the drawer's per-session metrics would ask: the query's filters plus these sessions.
    narrowed = replace(q, metric=MODELS,
                       filters={**q.filters, "session": tuple(r["session_id"] for r in rows
                                                              if r["models"] is None)})
    read = narrowed.metric.dataset_reads
    ev = e.source(read.dataset, q.window, narrowed, read.rows)
    mp = e.source(SESSION_METRICS, q.window, narrowed, read.rows)
    found = e.fetch(sql.SQL("SELECT session_id, array_agg(DISTINCT model) AS models FROM"
                            " (SELECT session_id, model FROM ({}) e UNION ALL"
                            " SELECT session_id, model FROM ({}) p) m GROUP BY session_id").format(ev[0], mp[0]),
                    [*ev[1], *mp[1]])
    models = {r["session_id"]: r["models"] for r in found}
    return [r if r["models"] is not None else {**r, "models": models.get(r["session_id"]) or []} for r in rows]


def _session_out(r: dict[str, Any]) -> dict[str, Any]:
    models = sorted({m for m in r["models"] if m is not None})
    return {
        "session_id": r["session_id"], "user_id": r["user_id"], "user": r["user_name"],
        "agent_id": r["agent_id"], "agent": r["agent_name"], "models": ", ".join(models),
        "start": tr.to_ms(r["start_time"]) if r["start_time"] else None,
        "end": tr.to_ms(r["end_time"]) if r["end_time"] else None,
        "duration": r["duration"], "requests": r["requests"], "tokens": r["tokens"], "cost": r["cost"],
        "unpriced_tokens": r["unpriced_tokens"], "unpriced": r["unpriced_tokens"] > 0,
        **{f"{t}_tokens": r[f"{t}_tokens"] for t in TOKEN_TYPES},
        "totals_source": r["totals_source"],
    }


_ORDERS = {
    "cost": "s.cost DESC NULLS LAST, s.session_id COLLATE \"C\"",
    "tokens": "s.tokens DESC, s.session_id COLLATE \"C\"",
    "recency": "s.end_time DESC, s.session_id COLLATE \"C\"",
}


def sessions_table(e: Engine, q: Query) -> Result:
    stats = _session_stats(e, q)
    # Without a session filter the table lists the very sessions the statistics counted.
    known = None if q.filters.get("session") else stats["sessions"]
    rows, total = _session_rows(e, q, _ORDERS[q.order_by], q.limit, q.offset, known)
    out = []
    for r in rows:
        full = _session_out(r)
        row = {c: full[c] for c in ("session_id", "user_id", "user", "agent_id", "agent", "models", "start",
                                    "end", "duration", "requests", "tokens", "cost", "unpriced_tokens",
                                    "unpriced")}
        for d in COMPARISON_DIMENSIONS:
            row[f"{d}_ratio"], row[f"{d}_top_5pct"] = _compare(full[d], stats, d)
        out.append(row)
    return Result(out, total=total)


def session_metrics(e: Engine, q: Query) -> Result:
    stats = _session_stats(e, q)
    row = {"sessions": stats["sessions"]}
    for d in COMPARISON_DIMENSIONS:
        for cut in ("p50", "avg", "p95"):
            row[f"{d}_{cut}"] = stats[f"{d}_{cut}"]
    return Result([row])


def _selected_sessions(e: Engine, q: Query) -> list[dict[str, Any]]:
    if not q.filters.get("session"):
        return []  # the drawer shows nothing until a session is chosen
    rows, _ = _session_rows(e, q, "s.session_id COLLATE \"C\"", len(q.filters["session"]), 0)
    return [_session_out(r) for r in rows]


def session_totals(e: Engine, q: Query) -> Result:
    return Result(_selected_sessions(e, q))


def session_token_mix(e: Engine, q: Query) -> Result:
    sessions = _selected_sessions(e, q)
    if not sessions:
        return Result([])
    return Result([{"type": t, "tokens": sum(s[f"{t}_tokens"] for s in sessions)} for t in TOKEN_TYPES])


def session_comparison(e: Engine, q: Query) -> Result:
    sessions = _selected_sessions(e, q)
    if not sessions:
        return Result([])
    stats = _session_stats(e, q)
    s = sessions[0]
    rows = []
    for d in COMPARISON_DIMENSIONS:
        ratio, top = _compare(s[d], stats, d)
        rows.append({"dimension": d, "value": s[d], "median": stats[f"{d}_p50"], "ratio": ratio,
                     "p95": stats[f"{d}_p95"], "top_5pct": top, "baseline_sessions": stats[f"{d}_n"]})
    return Result(rows)


def session_models(e: Engine, q: Query) -> Result:
    if not q.filters.get("session"):
        return Result([])
    read = q.metric.dataset_reads
    ev = e.source(read.dataset, q.window, q, read.rows)
    mp = e.source(SESSION_METRICS, q.window, q, read.rows)
    # Tokens from counted events or from metric points, cost from events or (sessions
    # without events) metric points; requests and latency always from events.
    text = f"""
    WITH ev_src AS ({{ev}}), mp_src AS ({{mp}}),
    parts AS (
        SELECT provider, model, requests::float8 AS requests, latency_ms_sum, latency_count::float8 AS latency_count,
               {counted_tokens()}::float8 AS tokens,
               cost::float8 AS cost
        FROM ev_src
        UNION ALL
        SELECT provider, model, NULL, NULL, 0, coalesce(tokens, 0), cost::float8
        FROM mp_src)
    SELECT provider, model, sum(requests) AS requests, sum(tokens) AS tokens, sum(cost) AS cost,
           sum(latency_ms_sum) / nullif(sum(latency_count), 0) AS avg_latency_ms
    FROM parts GROUP BY provider, model
    ORDER BY sum(tokens) DESC, provider COLLATE "C", model COLLATE "C"
    """
    rows = e.fetch(sql.SQL(text).format(ev=ev[0], mp=mp[0]), [*ev[1], *mp[1]])
    return Result(rows, total=len(rows))


def _session_buckets(e: Engine, q: Query) -> tuple[list[datetime], dict[datetime, dict], int]:
    if not q.filters.get("session"):
        return [], {}, 0
    read = q.metric.dataset_reads
    span = e.with_src(e.source(read.dataset, q.window, q, read.rows, use_aggregate=False),
                      "SELECT min(time) AS lo, max(time) AS hi FROM src")[0]
    if span["lo"] is None:
        return [], {}, 0
    width, starts = planner.session_bins(span["lo"], span["hi"])
    # Hour-multiple buckets aligned on the origin are unions of the aggregate's hours.
    rows = e.with_src(
        e.source(read.dataset, q.window, q, read.rows, use_aggregate=width >= 3600),
        "SELECT date_bin(%s, time, %s) AS b,"
        " sum(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens)::float8 AS tokens,"
        " sum(cost)::float8 AS cost FROM src GROUP BY 1",
        [timedelta(seconds=width), planner.EPOCH_ORIGIN])
    by = {r["b"]: r for r in rows}
    return starts, by, width


def session_tokens_over_time(e: Engine, q: Query) -> Result:
    starts, by, width = _session_buckets(e, q)
    rows = [{"time": tr.to_ms(t), "current": by[t]["tokens"] if t in by else 0} for t in starts]
    return Result(rows, meta={"bucket_seconds": width})


def session_cumulative_cost(e: Engine, q: Query) -> Result:
    starts, by, width = _session_buckets(e, q)
    running: float | None = None
    rows = []
    for t in starts:
        c = by[t]["cost"] if t in by else None
        if c is not None:
            running = (running or 0.0) + c
        rows.append({"time": tr.to_ms(t), "current": running})
    return Result(rows, meta={"bucket_seconds": width})


# A session's totals: what it did within the window, whenever within it (whole days may come
# from the daily twins). Its activity over time reads the full aggregate, or raw rows.
_TOTALS = reads(LLM_SESSIONS, IN_SESSION, SESSION_KEYS, time=False)
_ACTIVITY = reads(LLM_SESSIONS, IN_SESSION, EVERY_COLUMN, time=True)
_TOKEN_TYPE_COLUMNS = tuple(col(f"{t}_tokens", "number", COUNT) for t in TOKEN_TYPES)
_IDENTITY = (col("session_id"), col("user_id"), col("user"), col("agent_id"), col("agent"), col("models"))
_DIMENSIONS = (("cost", USD, "Cost"), ("tokens", COUNT, "Tokens"), ("duration", SECONDS, "Duration"),
               ("requests", COUNT, "Requests"))

MODELS = Metric(
    "session_models", "sessions", "table", "Models", COUNT,
    (col("provider"), col("model"), REQUESTS_COLUMN, TOKENS_COLUMN, COST_COLUMN,
     col("avg_latency_ms", "number", MS, "Average latency")),
    SESSION_FILTERS, "Per-model rollup of the session.", build=session_models, reads=_TOTALS)

METRICS: tuple[Metric, ...] = (
    Metric("sessions_table", "sessions", "table", "Sessions", USD,
           (col("session_id", title="Session"), col("user_id", title="User id"), col("user", title="User"),
            col("agent_id", title="Agent id"), col("agent", title="Agent"), col("models", title="Models"),
            col("start", "time", None, "Start"), col("end", "time", None, "End"),
            col("duration", "number", SECONDS, "Duration"), REQUESTS_COLUMN, TOKENS_COLUMN, COST_COLUMN,
            *UNPRICED_COLUMNS)
           + tuple(c for dim, _, label in _DIMENSIONS
                   for c in (col(f"{dim}_ratio", "number", RATIO, f"{label} vs median"),
                             col(f"{dim}_top_5pct", "boolean", None, f"Top 5% {dim}"))),
           LLM_SESSION_FILTERS, "Sessions ranked by order_by (cost | tokens | recency). Requests are the session's request "
           "events: null (unknown, not 0) for a session that sent metrics only. Cost is what could be priced; "
           "unpriced_tokens / unpriced: the session's tokens no price is known for (its cost is then a lower "
           "bound, null when nothing was priced). The attribution filters do not narrow it.", paged=True, options=("order_by",),
           build=sessions_table, reads=_TOTALS),
    Metric("session_metrics", "sessions", "record", "Session metrics", None,
           (col("sessions", "number", COUNT, "Sessions"),)
           + tuple(Column(f"{dim}_{cut}", "number", unit, f"{label} {cut_label}") for dim, unit, label in _DIMENSIONS
                   for cut, cut_label in (("p50", "P50"), ("avg", "average"), ("p95", "P95"))),
           LLM_SESSION_FILTERS, "Count and P50 / average / P95 of each dimension over the matching sessions; requests "
           "over the sessions whose requests are known (a session that sent metrics only is left out, not counted as "
           "0). The attribution filters do not narrow it.",
           build=session_metrics, reads=_TOTALS),
    Metric("session_totals", "sessions", "record", "Session totals", None,
           _IDENTITY + (col("start", "time"), col("end", "time"), col("duration", "number", SECONDS, "Duration"),
                        REQUESTS_COLUMN, TOKENS_COLUMN, *_TOKEN_TYPE_COLUMNS, COST_COLUMN, *UNPRICED_COLUMNS,
                        col("totals_source", title="Totals from")),
           SESSION_FILTERS, "One row for the `session` filter; tokens from metrics when the session sent metric "
           "points, else from events (totals_source says which); cost from its events, request by request, "
           "when it sent any, else from its metric points; unpriced_tokens: its tokens no price is known for; "
           "requests null (unknown) when it sent metrics only.", build=session_totals, reads=_TOTALS),
    MODELS,
    Metric("session_token_mix", "sessions", "bars", "Token mix", COUNT,
           (col("type", title="Token type"), TOKENS_COLUMN), SESSION_FILTERS, "The session's tokens by type.",
           build=session_token_mix, reads=_TOTALS),
    Metric("session_tokens_over_time", "sessions", "timeseries", "Tokens over time", COUNT,
           (col("time", "time"), col("current", "number", COUNT, "Tokens")), SESSION_FILTERS,
           "From events, bucketed over the session's lifespan (1m..1d buckets); no previous period.",
           build=session_tokens_over_time, reads=_ACTIVITY),
    Metric("session_cumulative_cost", "sessions", "timeseries", "Cumulative cost", USD,
           (col("time", "time"), col("current", "number", USD, "Cumulative cost")), SESSION_FILTERS,
           "From events: running total of cost at the end of each bucket.",
           build=session_cumulative_cost, reads=_ACTIVITY),
    Metric("session_comparison", "sessions", "table", "Compared with the median session", None,
           (col("dimension"), col("value", "number"), col("median", "number"), col("ratio", "number", RATIO),
            col("p95", "number"), col("top_5pct", "boolean"), col("baseline_sessions", "number", COUNT)),
           SESSION_FILTERS, "Four rows (cost, tokens, duration, requests); ratio null (chip hidden) when "
           "fewer than 2 sessions form the baseline, the median is 0/null, or the session's value is unknown "
           "(requests of a session that sent metrics only).", build=session_comparison, reads=_TOTALS),
    llm_health.SESSION_SUBAGENTS,
)
