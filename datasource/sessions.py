"""Sessions: the Sessions table, the session statistics and the drawer's per-session metrics.

A session's totals within the window come from the totals kept at ingest when the session lies
wholly inside it (and the filters allow), otherwise grouped from its rows (engine.Engine.source
plans the relations). Each request's tokens and cost are counted once: from its events or from its
session's metric points, decided at ingest (`counted`, `cost_counted`).
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Sequence

from psycopg import sql

from agent_analytics.datasource import filters as filt
from agent_analytics.datasource import planner
from agent_analytics.datasource import timerange as tr
from agent_analytics.datasource.catalog import BY_ID, COMPARISON_DIMENSIONS
from agent_analytics.datasource.kinds import Handler
from agent_analytics.datasource.query import Query
from agent_analytics.datasource.relations import COUNTED, LLM_SESSIONS, SESSION_METRICS
from agent_analytics.datasource.result import Result
from agent_analytics.datasource.sqltext import TOKEN_TYPES
from agent_analytics.datasource.timerange import Window

if TYPE_CHECKING:
    from agent_analytics.datasource.engine import Engine

# The sessions crossing the window's start (`before`) or only its end (`after`), and how far into
# the window their rows can reach. A session's span [first_seen, last_seen] covers all its rows.
_STRADDLERS = (
    "SELECT array_agg(id ORDER BY id) FILTER (WHERE first_seen < %s) AS before,"
    " max(last_seen) FILTER (WHERE first_seen < %s) AS before_until,"
    " array_agg(id ORDER BY id) FILTER (WHERE first_seen >= %s) AS after,"
    " min(first_seen) FILTER (WHERE first_seen >= %s) AS after_from"
    " FROM sessions"
    " WHERE (tstzrange(first_seen, last_seen, '[]') @> %s::timestamptz AND first_seen < %s)"
    " OR (tstzrange(first_seen, last_seen, '[]') @> %s::timestamptz AND first_seen >= %s AND first_seen < %s)")

# The filters the kept session totals can answer (a session's rows name one user), and the
# columns the kept totals read.
_KEPT_FILTERS = frozenset({"user", "group"})
_KEPT_COLUMNS = ("id, has_metrics, requests, points, ev_user_id, ev_agent_id, mp_user_id, mp_agent_id, tokens,"
                 " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, estimated_cost_usd,"
                 " reported_cost_usd, estimated_unpriced_tokens, reported_unpriced_tokens, first_time, last_time,"
                 " models")
# A session's requests are its request events; one that sent metric points only has an unknown
# number of requests (NULL: left out of the statistics, its chip hidden), not 0. The grouped
# sessions say the same: their metric-point parts add NULL requests.
_KEPT_REQUESTS = "(CASE WHEN requests = 0 AND points > 0 THEN NULL ELSE requests END)::float8"
# Sessions wholly inside the window whose rows name several users (a partial index finds them).
_MANY_USERS = ("SELECT array_agg(id ORDER BY id) AS ids, min(first_seen) AS since, max(last_seen) AS until"
               " FROM sessions WHERE cardinality(user_ids) > 1"
               " AND first_seen >= %s AND first_seen < %s AND last_seen < %s")

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


def _sessions_cte(e: Engine, q: Query, drop: Sequence[str] = (), detail: bool = True,
                  top: tuple[str, int] | None = None) -> tuple[sql.Composable, list]:
    """`s`: one row per session with its totals within the window. Unless a provider or model
    filter applies, the sessions wholly inside the window are their kept whole-life totals
    (one row each, migration 0005) and only the others are grouped from their rows: those
    crossing an edge, and under a user or group filter those of several users.
    `detail`: also the user and agent (the baseline statistics need only the totals). `top`:
    only the first n kept sessions in this order are needed (an index gives them)."""
    active = [f for f in q.metric.filters if f in LLM_SESSIONS.filterable and f not in drop and q.filters.get(f)]
    if e.read_aggregates and set(active) <= _KEPT_FILTERS:
        return _kept_sessions_cte(e, q, active, detail, top)
    ev = e.source(LLM_SESSIONS, q.window, q, "session_id IS NOT NULL", drop=drop)
    mp = e.source(SESSION_METRICS, q.window, q, "session_id IS NOT NULL", drop=drop)
    return _grouped_sessions([(ev, mp)], detail, "s")


def _kept_sessions_cte(e: Engine, q: Query, active: Sequence[str], detail: bool,
                       top: tuple[str, int] | None = None) -> tuple[sql.Composable, list]:
    """`s` from the kept session totals (`kept`) and, grouped from the rollups over just the
    part of the window they can have rows in, the sessions those cannot answer (`crossing`)."""
    w = q.window
    e._note("sessions")
    edge = e.fetch(sql.SQL(_STRADDLERS), [w.start] * 6 + [w.end, w.start, w.end])[0]
    # Sessions that began before the window: their rows in it lie before their last sight.
    # Those that began in it and run past its end: their rows in it lie after their first.
    groups = [(edge["before"], Window(w.start, min(w.end, (edge["before_until"] or w.start)
                                                       + timedelta(microseconds=1)))),
              (edge["after"], Window(edge["after_from"] or w.start, w.end))]
    if active:
        # A user filter keeps a session's rows all or none only when they name one user.
        many = e.fetch(sql.SQL(_MANY_USERS), [w.start, w.end, w.end])[0]
        groups.append((many["ids"], Window(many["since"] or w.start, min(w.end, (many["until"] or w.start)
                                                                       + timedelta(microseconds=1)))))
    pairs = []
    for ids, window in groups:
        if ids:
            narrowed = replace(q, metric=BY_ID["session_models"], window=window,
                               filters={**{f: q.filters[f] for f in active}, "session": tuple(ids)})
            pairs.append((e.source(LLM_SESSIONS, window, narrowed, "session_id IS NOT NULL"),
                           e.source(SESSION_METRICS, window, narrowed, "session_id IS NOT NULL")))
    who = ("coalesce(ev_user_id, mp_user_id) AS user_id, coalesce(ev_agent_id, mp_agent_id) AS agent_id,"
           if detail else "")
    pred, pparams = filt.predicate(q.filters, active)
    # The filters read `user_id`: here, the one user a session's rows name.
    kept = sql.SQL(f"""
    kept AS (
        SELECT id AS session_id, {who} {_KEPT_REQUESTS} AS requests, tokens,
               {", ".join(f"{t}_tokens" for t in TOKEN_TYPES)}, {e.cost}_cost_usd::float8 AS cost,
               {e.cost}_unpriced_tokens::float8 AS unpriced_tokens,
               CASE WHEN points > 0 OR (has_metrics AND requests > 0) THEN 'metrics' ELSE 'events' END
                   AS totals_source,
               first_time AS start_time, last_time AS end_time,
               date_part('epoch', last_time - first_time) AS duration, models
        FROM (SELECT {_KEPT_COLUMNS}, user_ids[1] AS user_id FROM sessions
              WHERE first_seen >= %s AND first_seen < %s AND last_seen < %s AND (requests > 0 OR points > 0)
              {"AND cardinality(user_ids) = 1" if active else ""}) k
        WHERE {{pred}})""").format(pred=pred)
    params = [w.start, w.end, w.end, *pparams]
    kept_rows = "SELECT * FROM kept"
    if top is not None:
        kept_rows = f"({kept_rows} ORDER BY {top[0]} LIMIT %s)"
        params.append(top[1])
    if not pairs:
        return kept + sql.SQL(f", s AS ({kept_rows})"), params
    grouped, gparams = _grouped_sessions(pairs, detail, "crossing")
    return (grouped + sql.SQL(", ") + kept + sql.SQL(f", s AS ({kept_rows} UNION ALL SELECT * FROM crossing)"),
            [*gparams, *params])


def _grouped_sessions(pairs: Sequence[tuple[tuple[sql.Composable, list], tuple[sql.Composable, list]]],
                      detail: bool, name: str) -> tuple[sql.Composable, list]:
    """`name`: one row per session grouped from its rows in each (events, metric points) pair
    of sources. A session's tokens come from its counted events or from its metric points, and
    its cost from its events or (without any) from its points' `cost_counted` rows, never both
    (decided at ingest), so the two sides simply add up."""
    # Counts as float8 (exact below 2^53; a numeric sum's state is large, and 75k of them spill
    # to disk); cost stays numeric so that every relation gives the same sum to the last digit.
    ev_tokens = ", ".join(f"CASE WHEN {COUNTED} THEN {t}_tokens ELSE 0 END::float8 AS {t}_tokens"
                          for t in TOKEN_TYPES)
    mp_tokens = ", ".join(f"coalesce({t}_tokens, 0)::float8" for t in TOKEN_TYPES)
    sums = ", ".join(f"sum({t}_tokens)::float8 AS {t}_tokens" for t in TOKEN_TYPES)
    # Events name the user and agent first. (Models are looked up for the page only: an
    # array per group costs a memory context each, for every session in the window.)
    details = ("coalesce(max(user_id) FILTER (WHERE is_event), max(user_id)) AS user_id,"
               " coalesce(max(agent_id) FILTER (WHERE is_event), max(agent_id)) AS agent_id," if detail else "")
    who = "user_id, agent_id, " if detail else ""
    sides = []
    params: list = []
    for ev, mp in pairs:
        sides.append(sql.SQL(f"""
        SELECT session_id, {who}true AS is_event, NOT {COUNTED} AS superseded,
               requests::float8, {ev_tokens},
               CASE WHEN {COUNTED} THEN input_tokens + output_tokens + cache_read_tokens + cache_write_tokens
                    ELSE 0 END::float8 AS tokens,
               cost, unpriced_tokens::float8, first_time, last_time
        FROM ({{ev}}) e
        UNION ALL
        SELECT session_id, {who}false, true, NULL, {mp_tokens}, coalesce(tokens, 0)::float8,
               cost, unpriced_tokens::float8, first_time, last_time
        FROM ({{mp}}) p""").format(ev=ev[0], mp=mp[0]))
        params += [*ev[1], *mp[1]]
    text = f"""
    {name}_parts AS ({{parts}}),
    {name} AS (SELECT session_id, {details}
                 sum(requests)::float8 AS requests, sum(tokens)::float8 AS tokens,
                 {sums}, sum(cost)::float8 AS cost,
                 coalesce(sum(unpriced_tokens), 0)::float8 AS unpriced_tokens,
                 CASE WHEN bool_or(superseded) THEN 'metrics' ELSE 'events' END AS totals_source,
                 min(first_time) AS start_time, max(last_time) AS end_time,
                 date_part('epoch', max(last_time) - min(first_time)) AS duration,
                 NULL::text[] AS models
          FROM {name}_parts GROUP BY session_id)
    """
    return sql.SQL(text).format(parts=sql.SQL(" UNION ALL ").join(sides)), params


def _session_stats(e: Engine, q: Query) -> dict[str, Any]:
    """Count and P50 / average / P95 per dimension over the filter set's sessions (not
    `session`): the same for Session metrics and the Sessions table's chips, so computed once
    for the panels of a refresh (see shared.py)."""
    cte, params = _sessions_cte(e, q, drop=("session",), detail=False)
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
    cte, params = _sessions_cte(e, q, top=top)
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
    narrowed = replace(q, metric=BY_ID["session_models"],
                       filters={**q.filters, "session": tuple(r["session_id"] for r in rows
                                                              if r["models"] is None)})
    ev = e.source(LLM_SESSIONS, q.window, narrowed, "session_id IS NOT NULL")
    mp = e.source(SESSION_METRICS, q.window, narrowed, "session_id IS NOT NULL")
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
    ev = e.source(LLM_SESSIONS, q.window, q, "session_id IS NOT NULL")
    mp = e.source(SESSION_METRICS, q.window, q, "session_id IS NOT NULL")
    # Tokens from counted events or from metric points, cost from events or (sessions
    # without events) metric points; requests and latency always from events.
    text = f"""
    WITH ev_src AS ({{ev}}), mp_src AS ({{mp}}),
    parts AS (
        SELECT provider, model, requests::float8 AS requests, latency_ms_sum, latency_count::float8 AS latency_count,
               CASE WHEN {COUNTED} THEN input_tokens + output_tokens + cache_read_tokens + cache_write_tokens
               ELSE 0 END::float8 AS tokens,
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
    span = e.with_src(e.source(LLM_SESSIONS, q.window, q, use_aggregate=False),
                      "SELECT min(time) AS lo, max(time) AS hi FROM src")[0]
    if span["lo"] is None:
        return [], {}, 0
    width, starts = planner.session_bins(span["lo"], span["hi"])
    # Hour-multiple buckets aligned on the origin are unions of the aggregate's hours.
    rows = e.with_src(
        e.source(LLM_SESSIONS, q.window, q, use_aggregate=width >= 3600),
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


HANDLERS: dict[str, Handler] = {
    "sessions_table": sessions_table,
    "session_metrics": session_metrics,
    "session_totals": session_totals,
    "session_token_mix": session_token_mix,
    "session_comparison": session_comparison,
    "session_models": session_models,
    "session_tokens_over_time": session_tokens_over_time,
    "session_cumulative_cost": session_cumulative_cost,
}
