"""The query engine: answer a metric's query as plain rows, by stage.

Planning (planner.py: which relations over which time ranges, which rollup), building the SQL
(each tab's module declares its metrics with their builders: mcp.py, security.py, llm.py,
sessions.py, telemetry.py; kinds.py runs the shapes they share), and running it here: the source
subquery a plan reads, the gateway pre-query that counts a call once, and the fetch, whose answers
the panels of one refresh may share (shared.py). Every query goes to its metric's builder.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Sequence

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from agent_analytics.datasource import filters as filt
from agent_analytics.config import ATTRIBUTION_COLUMNS
from agent_analytics.datasource import catalog, planner
from agent_analytics.datasource import timerange as tr
from agent_analytics.datasource.kinds import Handler
from agent_analytics.datasource.query import Query
from agent_analytics.datasource.relations import (ALL, LLM_METRIC_ORIGIN, LLM_METRIC_USAGE, LLM_ORIGIN, LLM_USAGE,
                                                  ORIGIN_KEYS, SESSION_AGENTS, SESSION_METRIC_AGENTS, Condition,
                                                  Dataset, counted_tokens)
from agent_analytics.datasource.result import Result
from agent_analytics.datasource.shared import Shared
from agent_analytics.datasource.sqltext import GATEWAY_FIRST, GATEWAY_SERVERS, TOKEN_TYPES, ident
from agent_analytics.datasource.timerange import Window

__all__ = ["Engine", "HANDLERS", "Result", "TOKEN_TYPES"]


_ATTRIBUTION = ", ".join(ATTRIBUTION_COLUMNS)

# Every metric's builder by metric id (declared with the metric: catalog.METRICS).
HANDLERS: dict[str, Handler] = {m.id: m.build for m in catalog.METRICS}


# The LLM sources read as events and metric points together, each request's tokens counted once
# (Engine._llm_source): the events' dataset, its metric points' twin, the keys both project.
_COMBINED = ((LLM_USAGE, LLM_METRIC_USAGE, "user_id, agent_id, provider, model, " + _ATTRIBUTION),
             (LLM_ORIGIN, LLM_METRIC_ORIGIN, "user_id, provider, model, " + ", ".join(ORIGIN_KEYS)),
             (SESSION_AGENTS, SESSION_METRIC_AGENTS, "session_id, user_id, provider, model, query_source, agent_name"))


def _num(v: Any) -> Any:
    if isinstance(v, Decimal):
        return float(v)
    return v


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

    def source(self, ds: Dataset, window: Window, q: Query, condition: Condition = ALL,
               use_aggregate: bool = True, drop: Sequence[str] = ()) -> tuple[sql.Composable, list]:
        """SELECT of the dataset's columns for rows in the window passing the query's filters and
        meeting `condition`."""
        applicable = [f for f in q.metric.filters if f in ds.filterable and f not in drop]
        pred, pparams = filt.predicate_text(q.filters, applicable, ds.attributed)
        extra = condition.sql
        if condition.gateway_first:
            # A call the gateway saw may also be reported by the agent that made it: executions of
            # a server the gateway reports (in the hours the window touches) count from the gateway
            # only. Blocked calls are never deduplicated: an agent-side block never reached the gateway.
            # The servers are looked up once per window and refresh and passed as an array: as a
            # subquery in every branch they cost more planning than the panel's own work.
            extra = extra + " AND " + GATEWAY_FIRST
            pparams = [*pparams, self.gateway_servers(window)]
        # Text, not psycopg's sql objects: every part is our own constant SQL (relation and column
        # names from relations.py, values as placeholders), and composing the objects' trees cost
        # more than a cached panel's whole answer.
        where = f"({pred}) AND ({extra})"
        raw_where = f"{where} AND ({ds.raw_condition})"
        raw_cols = ds.raw_columns.format(cost=self.cost)
        active = [f for f in applicable if q.filters.get(f)]
        plan = planner.plan(ds, q.metric.dataset_reads, window, active, condition,
                            aggregates=use_aggregate and self.read_aggregates, now=datetime.now(tr.UTC))
        agg_cols = (plan.agg_columns or "").format(cost=self.cost)
        pieces: list[str] = []
        params: list = []
        for r in plan.reads:
            self._note(r.relation)
            cols, cond = (raw_cols, raw_where) if r.raw else (agg_cols, where)
            pieces.append(f'SELECT {cols} FROM {ident(r.relation)} WHERE {ident(r.column)} >= %s'
                          f' AND {ident(r.column)} < %s AND {cond}')
            params.extend([r.lo, r.hi, *pparams])
        return sql.SQL(" UNION ALL ".join(pieces)), params

    def _src(self, ds: Dataset, window: Window, q: Query, condition: Condition = ALL,
             use_aggregate: bool = True) -> tuple[sql.Composable, list]:
        for events, points, keys in _COMBINED:
            if ds is events:
                return self._llm_source(window, q, use_aggregate, events, points, keys)
        return self.source(ds, window, q, condition, use_aggregate)

    def _llm_source(self, window: Window, q: Query, use_aggregate: bool = True, events: Dataset = LLM_USAGE,
                    points: Dataset = LLM_METRIC_USAGE,
                    keys: str = "user_id, agent_id, provider, model") -> tuple[sql.Composable, list]:
        """LLM Usage rows, each request's tokens counted once: from its event when its session
        sent no metric points (`counted`, decided at ingest), else from the session's metric
        points; requests always from events (a metric point's are unknown: NULL, so a group of
        metric points alone has no request count, not 0). Cost is each event's price (a tier is a property of
        one request), and the metric points' only for sessions that sent no events (the points'
        `cost_counted`); `unpriced_tokens`: those of the counted cost that no price table knows.
        (Claude Code sends both views of the same requests; Codex only events; an agent that
        exports only metrics still appears.) Neither side groups by session, so rollups answer it.

        Counts as float8: exact below 2^53, and summed several times faster than numeric; cost
        stays numeric, so every relation gives the same sum to the last digit. `events` and
        `points`: the pair of datasets read (_COMBINED), `keys` the columns both project."""
        ev = self.source(events, window, q, use_aggregate=use_aggregate)
        mp = self.source(points, window, q, use_aggregate=use_aggregate)
        text = f"""
            SELECT time, {keys}, requests::float8 AS requests,
                   {", ".join(f"({counted_tokens(f'{t}_tokens')})::float8 AS {t}_tokens"
                              for t in TOKEN_TYPES)},
                   0::float8 AS other_tokens, cost::numeric AS cost, unpriced_tokens::float8 AS unpriced_tokens
            FROM ({{ev}}) e
            UNION ALL
            SELECT time, {keys}, NULL::float8,
                   {", ".join(f"coalesce({t}_tokens, 0)::float8" for t in (*TOKEN_TYPES, "other"))},
                   cost::numeric, unpriced_tokens::float8
            FROM ({{mp}}) p"""
        return sql.SQL(text).format(ev=ev[0], mp=mp[0]), [*ev[1], *mp[1]]

    def gateway_servers(self, window: Window) -> list[str]:
        """The MCP servers the gateway reported in the hours `window` touches, sorted (shared by
        the panels of a refresh): whole UTC days from the daily rollup, the other hours hourly."""
        parts, params = [], []
        for r in planner.plan_gateway(window, self.read_aggregates, now=datetime.now(tr.UTC)):
            self._note(r.relation)
            parts.append(GATEWAY_SERVERS.format(relation=ident(r.relation), column=ident(r.column)))
            params += [r.lo, r.hi]
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
        result = HANDLERS[q.metric.id](self, q)
        prev = tr.previous_window(q.window, q.tz, q.ptd_unit, q.whole_unit)
        result.meta.setdefault("from", tr.to_ms(q.window.start))
        result.meta.setdefault("to", tr.to_ms(q.window.end))
        if q.metric.kind in ("stat", "timeseries") and not q.metric.tab == "sessions":
            result.meta["previous_from"] = tr.to_ms(prev.start)
            result.meta["previous_to"] = tr.to_ms(prev.end)
        result.meta["relations"] = list(self.relations)
        return result
