"""The sessions `s` of a query's window, one row per session with its totals within the window:
the kept whole-life totals (migration 0005) for the sessions wholly inside it, grouped from their
rows (engine.Engine.source plans the relations) for the others. sessions.py answers the Sessions
metrics from it.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Sequence

from psycopg import sql

from agent_analytics.datasource import catalog
from agent_analytics.datasource import filters as filt
from agent_analytics.datasource.query import Query
from agent_analytics.datasource.relations import COUNTED, LLM_SESSIONS, SESSION_METRICS, counted_tokens
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

# The filters the kept session totals can answer: those reading only `user_id` (a session's rows
# name one user, which the kept totals carry) or `session_id` (a session's rows are all or none of
# it), and the columns the kept totals read.
_USER_FILTERS = frozenset(f.name for f in filt.DECLARED if f.columns <= {"user_id"})
_KEPT_FILTERS = _USER_FILTERS | frozenset(f.name for f in filt.DECLARED if f.columns <= {"session_id"})
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

def sessions_cte(e: Engine, q: Query, drop: Sequence[str] = (), detail: bool = True,
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
    read = q.metric.dataset_reads  # the metric points of the same sessions meet the same condition
    ev = e.source(read.dataset, q.window, q, read.rows, drop=drop)
    mp = e.source(SESSION_METRICS, q.window, q, read.rows, drop=drop)
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
    users = [f for f in active if f in _USER_FILTERS]
    if users:
        # A user filter keeps a session's rows all or none only when they name one user.
        many = e.fetch(sql.SQL(_MANY_USERS), [w.start, w.end, w.end])[0]
        groups.append((many["ids"], Window(many["since"] or w.start, min(w.end, (many["until"] or w.start)
                                                                       + timedelta(microseconds=1)))))
    pairs = []
    chosen = set(q.filters["session"]) if "session" in active else None
    for ids, window in groups:
        if ids and chosen is not None:
            ids = [i for i in ids if i in chosen]   # the crossing sessions the filter keeps
        if ids:
            narrowed = replace(q, metric=catalog.BY_ID["session_models"], window=window,
                               filters={**{f: q.filters[f] for f in active}, "session": tuple(ids)})
            read = narrowed.metric.dataset_reads
            pairs.append((e.source(read.dataset, window, narrowed, read.rows),
                          e.source(SESSION_METRICS, window, narrowed, read.rows)))
    who = ("coalesce(ev_user_id, mp_user_id) AS user_id, coalesce(ev_agent_id, mp_agent_id) AS agent_id,"
           if detail else "")
    pred, pparams = filt.predicate(q.filters, active)
    # The filters read `user_id`: here, the one user a session's rows name; `session_id`: its id.
    kept = sql.SQL(f"""
    kept AS (
        SELECT id AS session_id, {who} {_KEPT_REQUESTS} AS requests, tokens,
               {", ".join(f"{t}_tokens" for t in TOKEN_TYPES)}, {e.cost}_cost_usd::float8 AS cost,
               {e.cost}_unpriced_tokens::float8 AS unpriced_tokens,
               CASE WHEN points > 0 OR (has_metrics AND requests > 0) THEN 'metrics' ELSE 'events' END
                   AS totals_source,
               first_time AS start_time, last_time AS end_time,
               date_part('epoch', last_time - first_time) AS duration, models
        FROM (SELECT {_KEPT_COLUMNS}, user_ids[1] AS user_id, id AS session_id FROM sessions
              WHERE first_seen >= %s AND first_seen < %s AND last_seen < %s AND (requests > 0 OR points > 0)
              {"AND cardinality(user_ids) = 1" if users else ""}) k
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
    ev_tokens = ", ".join(f"{counted_tokens(f'{t}_tokens')}::float8 AS {t}_tokens"
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
               {counted_tokens()}::float8 AS tokens,
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
