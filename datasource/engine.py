"""The query engine: choose the relation, build parameterised SQL, run it, answer plain rows.

Choosing a relation: whole UTC hours inside the window are read from the hourly continuous
aggregate; the partial hours at either edge from the raw table (so a range like now-24h is exact);
when buckets in the viewer's zone do not fall on UTC hours (a half-hour zone such as
Asia/Kolkata), or the question needs finer than hourly time (a session's activity), everything
comes from the raw table. Both branches project the same columns, so one query fits either.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Callable, Sequence

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from agent_analytics.datasource import filters as filt
from agent_analytics.datasource import telemetry
from agent_analytics.datasource import timerange as tr
from agent_analytics.datasource.catalog import (BY_ID, COMPARISON_DIMENSIONS, NO_AGENT_INSTANCE, NO_MCP_SERVER,
                                                NO_USER)
from agent_analytics.datasource.query import Query
from agent_analytics.datasource.shared import Shared
from agent_analytics.datasource.relations import (BLOCKED, COUNTED, EXECUTED, TIME_FREE, LLM_METRIC_USAGE,
                                                  LLM_SESSIONS, LLM_USAGE, SESSION_METRICS, TOOL_CALLS, Dataset,
                                                  choose_aggregate)
from agent_analytics.datasource.timerange import Window
from agent_analytics.ingest.normalise_gateway import SERVER_SIDE

TOKEN_TYPES = ("input", "output", "cache_read", "cache_write")
EPOCH_ORIGIN = datetime(2000, 1, 3, tzinfo=tr.UTC)  # time_bucket's default origin (a Monday)
SESSION_BUCKETS = (60, 300, 900, 3600, 6 * 3600, 86400)  # seconds; the finest with <= 60 buckets
SESSION_MAX_BUCKETS = 60


@dataclass
class Result:
    rows: list[dict[str, Any]]
    total: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _ceil_hour(t: datetime) -> datetime:
    f = t.replace(minute=0, second=0, microsecond=0)
    return f if f == t else f + timedelta(hours=1)


def _floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _floor_day(t: datetime) -> datetime:
    """UTC midnight at or before t (the daily rollups bucket by UTC day)."""
    return t.astimezone(tr.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _ceil_day(t: datetime) -> datetime:
    f = _floor_day(t)
    return f if f == t else f + timedelta(days=1)


def _num(v: Any) -> Any:
    if isinstance(v, Decimal):
        return float(v)
    return v


def _pct_change(value: Any, previous: Any) -> float | None:
    if value is None or previous in (None, 0):
        return None
    return (float(value) - float(previous)) / float(previous) * 100.0


class Engine:
    def __init__(self, conn: psycopg.Connection, cost_source: str = "estimated", setup_url: str = "",
                 read_aggregates: bool = True, shared: Shared | None = None) -> None:
        self.conn = conn
        self.shared = shared  # figures the panels of one dashboard refresh share
        # Read the aggregates (materialised on both backends) and the session totals kept at
        # ingest; off, everything from the raw rows (AA_READ_AGGREGATES=0: the benchmarks'
        # baseline and the tests' reference answers).
        self.read_aggregates = read_aggregates
        self.setup_url = setup_url
        self.cost = "reported" if cost_source == "reported" else "estimated"
        self.relations: list[str] = []

    # ---- choose relation and build the source subquery ------------------------------------

    def source(self, ds: Dataset, window: Window, q: Query, extra: str = "TRUE",
               use_aggregate: bool = True, drop: Sequence[str] = ()) -> tuple[sql.Composable, list]:
        """SELECT of the dataset's columns for rows in the window passing the query's filters."""
        applicable = [f for f in q.metric.filters if f in ds.filterable and f not in drop]
        pred, pparams = filt.predicate_text(q.filters, applicable)
        condition = extra  # what the rows must satisfy, before de-duplication is spelled out
        if extra == EXECUTED:
            # A call the gateway saw may also be reported by the agent that made it: executions of
            # a server the gateway reports (in the hours the window touches) count from the gateway
            # only. Blocked calls are never deduplicated: an agent-side block never reached the gateway.
            # The servers are looked up once per window and refresh and passed as an array: as a
            # subquery in every branch they cost more planning than the panel's own work.
            extra = EXECUTED + " AND " + _GATEWAY_FIRST
            pparams = [*pparams, self.gateway_servers(window)]
        # Text, not psycopg's sql objects: every part is our own constant SQL (relation and column
        # names from relations.py, values as placeholders), and composing the objects' trees cost
        # more than a cached panel's whole answer.
        where = f"({pred}) AND ({extra})"
        raw_where = f"{where} AND ({ds.raw_condition})"
        raw_cols = ds.raw_columns.format(cost=self.cost)
        hs, he = _ceil_hour(window.start), _floor_hour(window.end)
        pieces: list[str] = []
        params: list = []

        def read(relation: str, cols: str, column: str, lo: datetime, hi: datetime, cond: str,
                 force: bool = False) -> None:
            # One branch per time range: TimescaleDB excludes chunks cheaply for a single range,
            # where an OR of ranges costs planning time for every chunk. Empty ranges are left out.
            if lo < hi or force:
                self._note(relation)
                pieces.append(f'SELECT {cols} FROM {_ident(relation)} WHERE {_ident(column)} >= %s'
                              f' AND {_ident(column)} < %s AND {cond}')
                params.extend([lo, hi, *pparams])

        if use_aggregate and self.read_aggregates and hs < he:
            active = [f for f in applicable if q.filters.get(f)]
            aggregate, agg_columns, rollup = choose_aggregate(ds, q.metric.id, active, condition)
            agg_cols = agg_columns.format(cost=self.cost)
            ds0, ds1 = _ceil_day(hs), _floor_day(he)
            if rollup is not None and rollup.daily and q.metric.id in TIME_FREE and ds0 < ds1:
                # Whole UTC days from the daily rollup, whole hours around them hourly, edges raw.
                read(rollup.daily, agg_cols, "bucket", ds0, ds1, where)
                read(aggregate, agg_cols, "bucket", hs, ds0, where)
                read(aggregate, agg_cols, "bucket", ds1, he, where)
            else:
                read(aggregate, agg_cols, "bucket", hs, he, where)
            read(ds.raw, raw_cols, "time", window.start, hs, raw_where)
            read(ds.raw, raw_cols, "time", he, window.end, raw_where)
        else:
            read(ds.raw, raw_cols, "time", window.start, window.end, raw_where)
        if not pieces:  # an empty window: no rows, the same columns
            read(ds.raw, raw_cols, "time", window.start, window.end, raw_where, force=True)
        return sql.SQL(" UNION ALL ".join(pieces)), params

    def _src(self, ds: Dataset, window: Window, q: Query, extra: str = "TRUE",
             use_aggregate: bool = True) -> tuple[sql.Composable, list]:
        if ds is LLM_USAGE:
            return self._llm_source(window, q, use_aggregate)
        return self.source(ds, window, q, extra, use_aggregate)

    def _llm_source(self, window: Window, q: Query, use_aggregate: bool = True) -> tuple[sql.Composable, list]:
        """LLM Usage rows, each request's tokens counted once: from its event when its session
        sent no metric points (`counted`, decided at ingest), else from the session's metric
        points; requests always from events (a metric point's are unknown: NULL, so a group of
        metric points alone has no request count, not 0). Cost is each event's price (a tier is a property of
        one request), and the metric points' only for sessions that sent no events (the points'
        `cost_counted`); `unpriced_tokens`: those of the counted cost that no price table knows.
        (Claude Code sends both views of the same requests; Codex only events; an agent that
        exports only metrics still appears.) Neither side groups by session, so rollups answer it.

        Counts as float8: exact below 2^53, and summed several times faster than numeric; cost
        stays numeric, so every relation gives the same sum to the last digit."""
        ev = self.source(LLM_USAGE, window, q, use_aggregate=use_aggregate)
        mp = self.source(LLM_METRIC_USAGE, window, q, use_aggregate=use_aggregate)
        text = f"""
            SELECT time, user_id, agent_id, provider, model, requests::float8 AS requests,
                   {", ".join(f"(CASE WHEN {COUNTED} THEN {t}_tokens ELSE 0 END)::float8 AS {t}_tokens"
                              for t in TOKEN_TYPES)},
                   0::float8 AS other_tokens, cost::numeric AS cost, unpriced_tokens::float8 AS unpriced_tokens
            FROM ({{ev}}) e
            UNION ALL
            SELECT time, user_id, agent_id, provider, model, NULL::float8,
                   {", ".join(f"coalesce({t}_tokens, 0)::float8" for t in (*TOKEN_TYPES, "other"))},
                   cost::numeric, unpriced_tokens::float8
            FROM ({{mp}}) p"""
        return sql.SQL(text).format(ev=ev[0], mp=mp[0]), [*ev[1], *mp[1]]

    def gateway_servers(self, window: Window) -> list[str]:
        """The MCP servers the gateway reported in the hours `window` touches, sorted (shared by
        the panels of a refresh): whole UTC days from the daily rollup, the other hours hourly."""
        h0, h1 = _floor_hour(window.start), window.end
        d0, d1 = _ceil_day(h0), _floor_day(h1)
        if not self.read_aggregates:
            ranges = [("tool_calls", "time", h0, _ceil_hour(h1))]
        elif d0 < d1:
            ranges = [("tool_calls_by_server_daily", "bucket", d0, d1),
                      ("tool_calls_by_server_hourly", "bucket", h0, d0),
                      ("tool_calls_by_server_hourly", "bucket", d1, h1)]
        else:
            ranges = [("tool_calls_by_server_hourly", "bucket", h0, h1)]
        parts, params = [], []
        for relation, column, lo, hi in ranges:
            if lo < hi:
                self._note(relation)
                parts.append(_GATEWAY_SERVERS.format(relation=_ident(relation), column=_ident(column)))
                params += [lo, hi]
        if not parts:
            return []
        rows = self.fetch(sql.SQL(" UNION ".join(parts)), params, shared=True)
        return sorted(r["mcp_server_id"] for r in rows)

    def _note(self, relation: str) -> None:
        if relation not in self.relations:
            self.relations.append(relation)

    def fetch(self, query: sql.Composable, params: Sequence[Any], shared: bool = False) -> list[dict[str, Any]]:
        """Run a query. `shared`: the answer may be shared with the other panels of the same
        refresh asking the very same query (same text, same parameters: see shared.py)."""
        text = query.as_string(self.conn)  # composed once: for the shared key and to run

        def run() -> list[dict[str, Any]]:
            with self.conn.cursor(row_factory=dict_row) as cur:
                cur.execute(text, params)
                return [{k: _num(v) for k, v in row.items()} for row in cur.fetchall()]

        if not shared or self.shared is None:
            return run()
        return self.shared.get((text, repr(list(params))), run)

    def with_src(self, src: tuple[sql.Composable, list], body: str, params: Sequence[Any] = (),
                 shared: bool = False) -> list[dict]:
        query = sql.SQL("WITH src AS ({}) ").format(src[0]) + sql.SQL(body)
        return self.fetch(query, [*src[1], *params], shared)

    # ---- entry point -----------------------------------------------------------------------

    def run(self, q: Query) -> Result:
        handler: Callable[[Query], Result] = getattr(self, "_m_" + q.metric.id, None) or self._by_kind(q)
        result = handler(q)
        prev = tr.previous_window(q.window, q.tz, q.ptd_unit, q.whole_unit)
        result.meta.setdefault("from", tr.to_ms(q.window.start))
        result.meta.setdefault("to", tr.to_ms(q.window.end))
        if q.metric.kind in ("stat", "timeseries") and not q.metric.tab == "sessions":
            result.meta["previous_from"] = tr.to_ms(prev.start)
            result.meta["previous_to"] = tr.to_ms(prev.end)
        result.meta["relations"] = list(self.relations)
        return result

    def _by_kind(self, q: Query) -> Callable[[Query], Result]:
        if q.metric.id in telemetry.HANDLERS:
            return lambda query: telemetry.HANDLERS[query.metric.id](self, query)
        if q.metric.id in _STATS:
            return self._stat
        if q.metric.id in _SERIES:
            return self._series
        if q.metric.id in _TOPS:
            return self._top
        raise KeyError(q.metric.id)

    # ---- stats and time series (with the previous period) ----------------------------------

    def _stat(self, q: Query) -> Result:
        ds, extra, body, value_of = _STATS[q.metric.id]
        prev = tr.previous_window(q.window, q.tz, q.ptd_unit, q.whole_unit)
        current, old = (self.with_src(self._src(ds, window, q, extra), body, shared=True) for window in (q.window, prev))
        value, previous = value_of(current), value_of(old)
        row = {"value": value, "previous": previous, "change_pct": _pct_change(value, previous)}
        for column in _STAT_EXTRAS.get(q.metric.id, ()):
            row[column] = current[0][column]
        return Result([row])

    def _buckets(self, ds: Dataset, window: Window, q: Query, extra: str, sums: str, column: str,
                 unit: str) -> dict[datetime, dict[str, Any]]:
        # Hourly aggregates answer local hours/days exactly only when they are unions of UTC hours.
        use_agg = tr.whole_hour_offsets(q.tz, window)
        rows = self.with_src(self._src(ds, window, q, extra, use_aggregate=use_agg),
                             f"SELECT date_trunc(%s, time, %s) AS b, {sums} FROM src GROUP BY 1", [unit, q.tz.key],
                             shared=True)
        return {r["b"]: r for r in rows}

    def _series(self, q: Query) -> Result:
        ds, extra, sums, column = _SERIES[q.metric.id]
        prev = tr.previous_window(q.window, q.tz, q.ptd_unit, q.whole_unit)
        unit = tr.bucket_unit(q.window)
        cur_starts = tr.bucket_starts(q.window, unit, q.tz)
        prev_starts = tr.bucket_starts(prev, unit, q.tz)
        cur = self._buckets(ds, q.window, q, extra, sums, column, unit)
        old = self._buckets(ds, prev, q, extra, sums, column, unit)
        rows = []
        # The k-th previous bucket is drawn at the k-th current bucket (calendar-aligned, DST-safe).
        extras = _SERIES_EXTRAS.get(q.metric.id, ())
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

    # ---- MCP Usage and Security -----------------------------------------------------------

    def _m_mcp_hourly_distribution(self, q: Query) -> Result:
        rows = self.with_src(self.source(TOOL_CALLS, q.window, q, EXECUTED),
                             "SELECT extract(hour FROM time AT TIME ZONE 'UTC')::int AS h, sum(calls) AS n"
                             " FROM src GROUP BY 1")
        by_hour = {r["h"]: r["n"] for r in rows}
        return Result([{"hour": h, "executions": by_hour.get(h, 0)} for h in range(24)])

    def _top(self, q: Query) -> Result:
        ds, extra, body = _TOPS[q.metric.id]
        src = self._src(ds, q.window, q, extra)
        if q.metric.id in _LLM_TOP_ORDERS:
            return self._llm_top(q, src, body)
        rows = self.with_src(src, body + " LIMIT %s OFFSET %s", [q.limit, q.offset])
        if rows:
            total = rows[0]["total"]
        else:
            # Past the last page: count the groups on their own.
            counted = self.with_src(src, f"SELECT count(*) AS total FROM ({body}) t")
            total = counted[0]["total"] if counted else 0
        for r in rows:
            r.pop("total", None)
        return Result(rows, total=int(total))

    # ---- LLM Usage ------------------------------------------------------------------------

    def _llm_top(self, q: Query, src: tuple[sql.Composable, list], body: str) -> Result:
        """Top users or models: the by-tokens and by-cost panels group the same rows, so the
        groups are fetched once per refresh (shared) and ranked here, as the database would."""
        groups = self.with_src(src, body, shared=True)
        ranked = sorted(groups, key=_LLM_TOP_ORDERS[q.metric.id])
        return Result([dict(r) for r in ranked[q.offset:q.offset + q.limit]], total=len(groups))

    def _m_llm_total_cost(self, q: Query) -> Result:
        """The total cost (shared with the other totals), the tokens it could not price and, when
        there are any, their models (from the groups the top-model lists read)."""
        result = self._stat(q)
        row = result.rows[0]
        row["unpriced_models"] = ""
        if row["unpriced_tokens"]:
            by_model = replace(q, metric=BY_ID["llm_top_models_by_cost"])
            groups = self.with_src(self._src(LLM_USAGE, q.window, by_model), _llm_groups("model"), shared=True)
            row["unpriced_models"] = ", ".join(sorted({g["model"] for g in groups if g["unpriced"]}))
        return result

    def _m_llm_tokens_by_type(self, q: Query) -> Result:
        rows = self.with_src(self._src(LLM_USAGE, q.window, q), _LLM_TOTALS, shared=True)
        r = rows[0]
        return Result([{"type": t, "tokens": r[t]} for t in TOKEN_TYPES])

    def _m_llm_status(self, q: Query) -> Result:
        # Existence checks read one row. Sessions first: a small table, where the raw tables'
        # every chunk costs planning time; LLM rows without a session only when it has none.
        self._note("sessions")
        has = self.fetch(sql.SQL("SELECT EXISTS (SELECT 1 FROM sessions WHERE requests > 0 OR points > 0)"
                                 " AS has_data"), [])[0]["has_data"]
        if not has:
            self._note("llm_requests")
            self._note("metric_points")
            has = self.fetch(sql.SQL("SELECT (EXISTS (SELECT 1 FROM llm_requests)"
                                     " OR EXISTS (SELECT 1 FROM metric_points)) AS has_data"), [])[0]["has_data"]
        has = bool(has)
        message = ("" if has else "No LLM telemetry yet: configure your agents (Claude Code, Codex) to send "
                   "OpenTelemetry data to the gateway; the Telemetry page shows what is arriving.")
        return Result([{"has_data": has, "message": message, "setup_url": self.setup_url}])

    # ---- Sessions -------------------------------------------------------------------------

    def _sessions_cte(self, q: Query, drop: Sequence[str] = (), detail: bool = True,
                      top: tuple[str, int] | None = None) -> tuple[sql.Composable, list]:
        """`s`: one row per session with its totals within the window. Unless a provider or model
        filter applies, the sessions wholly inside the window are their kept whole-life totals
        (one row each, migration 0005) and only the others are grouped from their rows: those
        crossing an edge, and under a user or group filter those of several users.
        `detail`: also the user and agent (the baseline statistics need only the totals). `top`:
        only the first n kept sessions in this order are needed (an index gives them)."""
        active = [f for f in q.metric.filters if f in LLM_SESSIONS.filterable and f not in drop and q.filters.get(f)]
        if self.read_aggregates and set(active) <= _KEPT_FILTERS:
            return self._kept_sessions_cte(q, active, detail, top)
        ev = self.source(LLM_SESSIONS, q.window, q, "session_id IS NOT NULL", drop=drop)
        mp = self.source(SESSION_METRICS, q.window, q, "session_id IS NOT NULL", drop=drop)
        return self._grouped_sessions([(ev, mp)], detail, "s")

    def _kept_sessions_cte(self, q: Query, active: Sequence[str], detail: bool,
                           top: tuple[str, int] | None = None) -> tuple[sql.Composable, list]:
        """`s` from the kept session totals (`kept`) and, grouped from the rollups over just the
        part of the window they can have rows in, the sessions those cannot answer (`crossing`)."""
        w = q.window
        self._note("sessions")
        edge = self.fetch(sql.SQL(_STRADDLERS), [w.start] * 6 + [w.end, w.start, w.end])[0]
        # Sessions that began before the window: their rows in it lie before their last sight.
        # Those that began in it and run past its end: their rows in it lie after their first.
        groups = [(edge["before"], Window(w.start, min(w.end, (edge["before_until"] or w.start)
                                                           + timedelta(microseconds=1)))),
                  (edge["after"], Window(edge["after_from"] or w.start, w.end))]
        if active:
            # A user filter keeps a session's rows all or none only when they name one user.
            many = self.fetch(sql.SQL(_MANY_USERS), [w.start, w.end, w.end])[0]
            groups.append((many["ids"], Window(many["since"] or w.start, min(w.end, (many["until"] or w.start)
                                                                           + timedelta(microseconds=1)))))
        pairs = []
        for ids, window in groups:
            if ids:
                narrowed = replace(q, metric=BY_ID["session_models"], window=window,
                                   filters={**{f: q.filters[f] for f in active}, "session": tuple(ids)})
                pairs.append((self.source(LLM_SESSIONS, window, narrowed, "session_id IS NOT NULL"),
                               self.source(SESSION_METRICS, window, narrowed, "session_id IS NOT NULL")))
        who = ("coalesce(ev_user_id, mp_user_id) AS user_id, coalesce(ev_agent_id, mp_agent_id) AS agent_id,"
               if detail else "")
        pred, pparams = filt.predicate(q.filters, active)
        # The filters read `user_id`: here, the one user a session's rows name.
        kept = sql.SQL(f"""
        kept AS (
            SELECT id AS session_id, {who} {_KEPT_REQUESTS} AS requests, tokens,
                   {", ".join(f"{t}_tokens" for t in TOKEN_TYPES)}, {self.cost}_cost_usd::float8 AS cost,
                   {self.cost}_unpriced_tokens::float8 AS unpriced_tokens,
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
        grouped, gparams = self._grouped_sessions(pairs, detail, "crossing")
        return (grouped + sql.SQL(", ") + kept + sql.SQL(f", s AS ({kept_rows} UNION ALL SELECT * FROM crossing)"),
                [*gparams, *params])

    @staticmethod
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

    def _session_stats(self, q: Query) -> dict[str, Any]:
        """Count and P50 / average / P95 per dimension over the filter set's sessions (not
        `session`): the same for Session metrics and the Sessions table's chips, so computed once
        for the panels of a refresh (see shared.py)."""
        cte, params = self._sessions_cte(q, drop=("session",), detail=False)
        return self.fetch(sql.SQL("WITH ") + cte + sql.SQL(_SESSION_STATS), params, shared=True)[0]

    @staticmethod
    def _compare(value: Any, stats: dict[str, Any], dim: str) -> tuple[float | None, bool]:
        """Ratio to the median (None: no baseline, chip hidden) and the top-5% flag."""
        n, median, p95 = stats[f"{dim}_n"], stats[f"{dim}_p50"], stats[f"{dim}_p95"]
        if value is None or n < 2:
            return None, False
        ratio = value / median if median not in (None, 0) else None
        return ratio, bool(p95 is not None and value >= p95)

    def _session_rows(self, q: Query, order: str, limit: int, offset: int,
                      total: int | None = None) -> tuple[list[dict], int]:
        """A page of sessions and how many there are (counted here unless `total` is known: then
        only the page's worth of kept sessions is read, in the order, from an index)."""
        top = None if total is None else (order.replace("s.", ""), limit + offset)
        cte, params = self._sessions_cte(q, top=top)
        count = "" if total is not None else ", count(*) OVER () AS total"
        query = sql.SQL("WITH ") + cte + sql.SQL(_PAGE.format(order=order, total=count))
        rows = self.fetch(query, [*params, limit, offset])
        if total is None and rows:
            total = rows[0]["total"]
        if total is None:
            counted = self.fetch(sql.SQL("WITH ") + cte + sql.SQL("SELECT count(*) AS total FROM s"), params)
            total = counted[0]["total"]
        return self._with_models(q, rows), int(total)

    def _with_models(self, q: Query, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The page's sessions with the models each used in the window (under the filters): a
        session's kept totals name them; the others are looked up, for this page only."""
        if all(r["models"] is not None for r in rows):
            return rows
        # As the drawer's per-session metrics would ask: the query's filters plus these sessions.
        narrowed = replace(q, metric=BY_ID["session_models"],
                           filters={**q.filters, "session": tuple(r["session_id"] for r in rows
                                                                  if r["models"] is None)})
        ev = self.source(LLM_SESSIONS, q.window, narrowed, "session_id IS NOT NULL")
        mp = self.source(SESSION_METRICS, q.window, narrowed, "session_id IS NOT NULL")
        found = self.fetch(sql.SQL("SELECT session_id, array_agg(DISTINCT model) AS models FROM"
                                   " (SELECT session_id, model FROM ({}) e UNION ALL"
                                   " SELECT session_id, model FROM ({}) p) m GROUP BY session_id").format(ev[0], mp[0]),
                           [*ev[1], *mp[1]])
        models = {r["session_id"]: r["models"] for r in found}
        return [r if r["models"] is not None else {**r, "models": models.get(r["session_id"]) or []} for r in rows]

    @staticmethod
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

    def _m_sessions_table(self, q: Query) -> Result:
        stats = self._session_stats(q)
        # Without a session filter the table lists the very sessions the statistics counted.
        known = None if q.filters.get("session") else stats["sessions"]
        rows, total = self._session_rows(q, self._ORDERS[q.order_by], q.limit, q.offset, known)
        out = []
        for r in rows:
            full = self._session_out(r)
            row = {c: full[c] for c in ("session_id", "user_id", "user", "agent_id", "agent", "models", "start",
                                        "end", "duration", "requests", "tokens", "cost", "unpriced_tokens",
                                        "unpriced")}
            for d in COMPARISON_DIMENSIONS:
                row[f"{d}_ratio"], row[f"{d}_top_5pct"] = self._compare(full[d], stats, d)
            out.append(row)
        return Result(out, total=total)

    def _m_session_metrics(self, q: Query) -> Result:
        stats = self._session_stats(q)
        row = {"sessions": stats["sessions"]}
        for d in COMPARISON_DIMENSIONS:
            for cut in ("p50", "avg", "p95"):
                row[f"{d}_{cut}"] = stats[f"{d}_{cut}"]
        return Result([row])

    def _selected_sessions(self, q: Query) -> list[dict[str, Any]]:
        if not q.filters.get("session"):
            return []  # the drawer shows nothing until a session is chosen
        rows, _ = self._session_rows(q, "s.session_id COLLATE \"C\"", len(q.filters["session"]), 0)
        return [self._session_out(r) for r in rows]

    def _m_session_totals(self, q: Query) -> Result:
        return Result(self._selected_sessions(q))

    def _m_session_token_mix(self, q: Query) -> Result:
        sessions = self._selected_sessions(q)
        if not sessions:
            return Result([])
        return Result([{"type": t, "tokens": sum(s[f"{t}_tokens"] for s in sessions)} for t in TOKEN_TYPES])

    def _m_session_comparison(self, q: Query) -> Result:
        sessions = self._selected_sessions(q)
        if not sessions:
            return Result([])
        stats = self._session_stats(q)
        s = sessions[0]
        rows = []
        for d in COMPARISON_DIMENSIONS:
            ratio, top = self._compare(s[d], stats, d)
            rows.append({"dimension": d, "value": s[d], "median": stats[f"{d}_p50"], "ratio": ratio,
                         "p95": stats[f"{d}_p95"], "top_5pct": top, "baseline_sessions": stats[f"{d}_n"]})
        return Result(rows)

    def _m_session_models(self, q: Query) -> Result:
        if not q.filters.get("session"):
            return Result([])
        ev = self.source(LLM_SESSIONS, q.window, q, "session_id IS NOT NULL")
        mp = self.source(SESSION_METRICS, q.window, q, "session_id IS NOT NULL")
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
        rows = self.fetch(sql.SQL(text).format(ev=ev[0], mp=mp[0]), [*ev[1], *mp[1]])
        return Result(rows, total=len(rows))

    def _session_buckets(self, q: Query) -> tuple[list[datetime], dict[datetime, dict], int]:
        if not q.filters.get("session"):
            return [], {}, 0
        span = self.with_src(self.source(LLM_SESSIONS, q.window, q, use_aggregate=False),
                             "SELECT min(time) AS lo, max(time) AS hi FROM src")[0]
        if span["lo"] is None:
            return [], {}, 0
        seconds = (span["hi"] - span["lo"]).total_seconds()
        width = next((w for w in SESSION_BUCKETS if seconds / w < SESSION_MAX_BUCKETS), SESSION_BUCKETS[-1])
        # Hour-multiple buckets aligned on the origin are unions of the aggregate's hours.
        rows = self.with_src(
            self.source(LLM_SESSIONS, q.window, q, use_aggregate=width >= 3600),
            "SELECT date_bin(%s, time, %s) AS b,"
            " sum(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens)::float8 AS tokens,"
            " sum(cost)::float8 AS cost FROM src GROUP BY 1",
            [timedelta(seconds=width), EPOCH_ORIGIN])
        by = {r["b"]: r for r in rows}
        first = EPOCH_ORIGIN + timedelta(seconds=width * math.floor(
            (span["lo"] - EPOCH_ORIGIN).total_seconds() / width))
        starts = []
        t = first
        while t <= span["hi"]:
            starts.append(t)
            t += timedelta(seconds=width)
        return starts, by, width

    def _m_session_tokens_over_time(self, q: Query) -> Result:
        starts, by, width = self._session_buckets(q)
        rows = [{"time": tr.to_ms(t), "current": by[t]["tokens"] if t in by else 0} for t in starts]
        return Result(rows, meta={"bucket_seconds": width})

    def _m_session_cumulative_cost(self, q: Query) -> Result:
        starts, by, width = self._session_buckets(q)
        running: float | None = None
        rows = []
        for t in starts:
            c = by[t]["cost"] if t in by else None
            if c is not None:
                running = (running or 0.0) + c
            rows.append({"time": tr.to_ms(t), "current": running})
        return Result(rows, meta={"bucket_seconds": width})


_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def _ident(name: str) -> str:
    """A relation or column name of our own, quoted as sql.Identifier would."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not one of our identifiers: {name!r}")
    return f'"{name}"'


# `<> ALL` of an empty array is true: with no gateway in the window every agent report counts.
# The MCP servers' own spans count as the gateway's do (they too see every call to the server).
_SERVER_SIDE = "source IN (" + ", ".join(f"'{s}'" for s in SERVER_SIDE) + ")"
_GATEWAY_FIRST = f"({_SERVER_SIDE} OR mcp_server_id IS NULL OR mcp_server_id <> ALL(%s))"
_GATEWAY_SERVERS = (f"SELECT DISTINCT mcp_server_id FROM {{relation}} WHERE {_SERVER_SIDE}"
                    " AND mcp_server_id IS NOT NULL AND {column} >= %s AND {column} < %s")
_TOKENS = "input_tokens + output_tokens + cache_read_tokens + cache_write_tokens + other_tokens"
# The cost of a set of rows: null when some usage but none of it could be priced (unknown is
# not 0), 0 when there is no usage to price. With some priced, the priced sum; the unpriced
# tokens go alongside.
_COST_SUM = "coalesce(sum(cost), CASE WHEN sum(unpriced_tokens) > 0 THEN NULL ELSE 0 END)"


def _literal(text: str) -> str:
    """One of our own labels as an SQL string literal."""
    if "'" in text or "\\" in text:
        raise ValueError(f"not a plain label: {text!r}")
    return f"'{text}'"


def _llm_groups(key: str) -> str:
    """Every user's or model's tokens, cost and requests, unordered: the by-tokens and the
    by-cost panels share it and rank it with _LLM_TOP_ORDERS. Usage without a user is the
    "(no user)" row."""
    where = ""
    if key == "user":
        keys, inner_keys, join = (f"g.user_id, coalesce(u.display_name, u.email, g.user_id, {_literal(NO_USER)})"
                                  f" AS \"user\"", "user_id", "LEFT JOIN users u ON u.id = g.user_id")
    else:
        keys, inner_keys, join = "g.provider, g.model", "provider, model", ""
    return (f"SELECT {keys}, g.tokens, g.cost, g.requests, g.unpriced_tokens, g.unpriced_tokens > 0 AS unpriced"
            f" FROM (SELECT {inner_keys}, sum({_TOKENS})::float8 AS tokens, ({_COST_SUM})::float8 AS cost,"
            f" sum(requests) AS requests, coalesce(sum(unpriced_tokens), 0)::float8 AS unpriced_tokens"
            f" FROM src {where} GROUP BY {inner_keys}) g {join}")


def _by_cost(r: dict[str, Any]) -> tuple:
    """cost DESC NULLS LAST, then tokens DESC (names follow, in byte order: COLLATE "C")."""
    return (r["cost"] is None, -(r["cost"] or 0), -r["tokens"])


_LLM_TOP_ORDERS: dict[str, Callable[[dict[str, Any]], tuple]] = {
    # The row without a user after the others it ties with (NULLS LAST).
    "llm_top_users_by_tokens": lambda r: (-r["tokens"], r["user_id"] is None, r["user_id"] or ""),
    "llm_top_users_by_cost": lambda r: (*_by_cost(r), r["user_id"] is None, r["user_id"] or ""),
    "llm_top_models_by_tokens": lambda r: (-r["tokens"], r["provider"], r["model"]),
    "llm_top_models_by_cost": lambda r: (*_by_cost(r), r["provider"], r["model"]),
}


# Stats and series: the body run over `src` for the range and the previous one, and how the
# value is read from its rows. Every query is shared by the panels of a refresh asking it
# (Engine.fetch): LLM totals, token mix and both LLM series each run one body, for several panels.
_LLM_TOTALS = ("SELECT " + ", ".join(f"coalesce(sum({t}_tokens), 0) AS {t}" for t in TOKEN_TYPES)
               + f", coalesce(sum({_TOKENS}), 0) AS tokens, {_COST_SUM} AS cost,"
               " coalesce(sum(unpriced_tokens), 0) AS unpriced_tokens FROM src")
_LLM_BUCKET_SUMS = (f"sum({_TOKENS}) AS tokens, {_COST_SUM} AS cost,"
                    " coalesce(sum(unpriced_tokens), 0)::float8 AS unpriced_tokens")


def _column(name: str) -> Callable[[list[dict[str, Any]]], Any]:
    return lambda rows: rows[0][name] if rows else None


_STATS: dict[str, tuple[Dataset, str, str, Callable[[list[dict[str, Any]]], Any]]] = {
    "mcp_tool_executions": (TOOL_CALLS, EXECUTED, "SELECT coalesce(sum(calls), 0) AS v FROM src", _column("v")),
    # A hashed DISTINCT is much faster than count(DISTINCT (a, b)) on a row value.
    "mcp_unique_tools": (TOOL_CALLS, EXECUTED,
                         "SELECT count(*) AS v FROM (SELECT DISTINCT mcp_server_id, tool_name FROM src) d",
                         _column("v")),
    "mcp_active_agent_instances": (TOOL_CALLS, EXECUTED, "SELECT count(*) AS v FROM (SELECT DISTINCT agent_instance_id"
                                                         " FROM src WHERE agent_instance_id IS NOT NULL) d",
                                   _column("v")),
    "mcp_active_users": (TOOL_CALLS, EXECUTED, "SELECT count(*) AS v FROM (SELECT DISTINCT user_id FROM src"
                                               " WHERE user_id IS NOT NULL) d", _column("v")),
    "llm_total_tokens": (LLM_USAGE, "TRUE", _LLM_TOTALS, _column("tokens")),
    "llm_total_cost": (LLM_USAGE, "TRUE", _LLM_TOTALS, _column("cost")),
    # Counted from the groups the top-model lists read.
    "llm_models_used": (LLM_USAGE, "TRUE", _llm_groups("model"), lambda groups: len({g["model"] for g in groups})),
    "security_blocked_calls": (TOOL_CALLS, BLOCKED, "SELECT coalesce(sum(calls), 0) AS v FROM src", _column("v")),
}

# Columns of the range's row a stat answers besides its value (what a cost could not price).
_STAT_EXTRAS = {"llm_total_cost": ("unpriced_tokens",)}

# Series: the sums per bucket and the column a metric draws.
_SERIES: dict[str, tuple[Dataset, str, str, str]] = {
    "mcp_executions_over_time": (TOOL_CALLS, EXECUTED, "sum(calls) AS v", "v"),
    "llm_tokens_over_time": (LLM_USAGE, "TRUE", _LLM_BUCKET_SUMS, "tokens"),
    "llm_cost_over_time": (LLM_USAGE, "TRUE", _LLM_BUCKET_SUMS, "cost"),
    "security_blocked_over_time": (TOOL_CALLS, BLOCKED, "sum(calls) AS v", "v"),
}

# Columns of each bucket a series answers besides its value: a cost bucket's tokens it could
# not price (a bucket partly priced says so, as the headline does).
_SERIES_EXTRAS = {"llm_cost_over_time": ("unpriced_tokens",)}

_C = 'COLLATE "C"'

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


def _tool_top(measure: str) -> str:
    return (f"SELECT g.tool_name AS tool, g.mcp_server_id,"
            f" coalesce(m.name, g.mcp_server_id, {_literal(NO_MCP_SERVER)}) AS mcp,"
            f" g.n AS {measure}, count(*) OVER () AS total"
            f" FROM (SELECT tool_name, mcp_server_id, sum(calls) AS n FROM src GROUP BY 1, 2) g"
            f" LEFT JOIN mcp_servers m ON m.id = g.mcp_server_id"
            f" ORDER BY g.n DESC, g.mcp_server_id {_C} NULLS LAST, g.tool_name {_C}")


def _instance_top(measure: str) -> str:
    return (f"SELECT g.agent_instance_id,"
            f" coalesce(ai.name, g.agent_instance_id, {_literal(NO_AGENT_INSTANCE)}) AS agent_instance,"
            f" ai.agent_id, coalesce(a.name, ai.agent_id) AS agent, ai.user_id,"
            f" coalesce(u.display_name, u.email, ai.user_id) AS \"user\", g.n AS {measure},"
            f" count(*) OVER () AS total"
            f" FROM (SELECT agent_instance_id, sum(calls) AS n FROM src GROUP BY 1) g"
            f" LEFT JOIN agent_instances ai ON ai.id = g.agent_instance_id"
            f" LEFT JOIN agents a ON a.id = ai.agent_id LEFT JOIN users u ON u.id = ai.user_id"
            f" ORDER BY g.n DESC, g.agent_instance_id {_C} NULLS LAST")


def _user_top(measure: str) -> str:
    return (f"SELECT g.user_id, coalesce(u.display_name, u.email, g.user_id, {_literal(NO_USER)}) AS \"user\","
            f" g.n AS {measure}, count(*) OVER () AS total"
            f" FROM (SELECT user_id, sum(calls) AS n FROM src GROUP BY 1) g"
            f" LEFT JOIN users u ON u.id = g.user_id ORDER BY g.n DESC, g.user_id {_C} NULLS LAST")


def _mcp_top(measure: str) -> str:
    return (f"SELECT g.mcp_server_id, coalesce(m.name, g.mcp_server_id, {_literal(NO_MCP_SERVER)}) AS mcp,"
            f" g.n AS {measure}, count(*) OVER () AS total"
            f" FROM (SELECT mcp_server_id, sum(calls) AS n FROM src GROUP BY 1) g"
            f" LEFT JOIN mcp_servers m ON m.id = g.mcp_server_id ORDER BY g.n DESC, g.mcp_server_id {_C} NULLS LAST")


_POLICY_TOP = (
    f"SELECT g.policy_id, g.policy_name, g.policy_description, g.n AS blocked, p.name AS current_name,"
    f" (p.name IS NOT NULL AND p.name IS DISTINCT FROM g.policy_name) AS renamed, count(*) OVER () AS total"
    f" FROM (SELECT policy_id, sum(calls) AS n,"
    # As recorded on the latest block in the range (a policy may be renamed mid-range).
    f"   (array_agg(policy_name ORDER BY time DESC, policy_name {_C}))[1] AS policy_name,"
    f"   (array_agg(policy_description ORDER BY time DESC, policy_name {_C}))[1] AS policy_description"
    f"   FROM src WHERE policy_id IS NOT NULL GROUP BY 1) g"
    f" LEFT JOIN policies p ON p.id = g.policy_id ORDER BY g.n DESC, g.policy_id {_C}")


_TOPS: dict[str, tuple[Dataset, str, str]] = {
    "mcp_top_tools": (TOOL_CALLS, EXECUTED, _tool_top("executions")),
    "mcp_top_agent_instances": (TOOL_CALLS, EXECUTED, _instance_top("executions")),
    "mcp_top_users": (TOOL_CALLS, EXECUTED, _user_top("executions")),
    "mcp_top_mcps": (TOOL_CALLS, EXECUTED, _mcp_top("executions")),
    "security_top_blocked_tools": (TOOL_CALLS, BLOCKED, _tool_top("blocked")),
    "security_top_blocked_agent_instances": (TOOL_CALLS, BLOCKED, _instance_top("blocked")),
    "security_top_blocked_users": (TOOL_CALLS, BLOCKED, _user_top("blocked")),
    "security_top_blocked_mcps": (TOOL_CALLS, BLOCKED, _mcp_top("blocked")),
    "security_top_policies": (TOOL_CALLS, BLOCKED, _POLICY_TOP),
    "llm_top_users_by_tokens": (LLM_USAGE, "TRUE", _llm_groups("user")),
    "llm_top_users_by_cost": (LLM_USAGE, "TRUE", _llm_groups("user")),
    "llm_top_models_by_tokens": (LLM_USAGE, "TRUE", _llm_groups("model")),
    "llm_top_models_by_cost": (LLM_USAGE, "TRUE", _llm_groups("model")),
}

