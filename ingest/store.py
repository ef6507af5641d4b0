"""Write a normalised batch in one transaction: directory rows first seen; the sessions' first and
last sight (taken before any fact: it decides whether a session's events or its metric points
count, for tokens and for cost: ingest/sessions.py); cumulative metric series differenced against
metric_series_state under row locks; facts by COPY straight into their tables (or, when some are
already stored, through a temporary table and INSERT ... ON CONFLICT DO NOTHING, so a retried or
concurrently duplicated batch stores nothing twice; see `_copy_insert`); the sessions' totals,
from the rows the batch newly stored; and last the count of what arrived, by where it came from
and what became of it (ingest/stats.py).

Rows are inserted in one total order, time then key, so that two receivers writing overlapping
batches wait for each other instead of deadlocking. Time first: consecutive rows land on the same
pages of the time-led indexes (and in the same TimescaleDB chunk), where rows sorted by their
random keys would scatter.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from operator import attrgetter, itemgetter
from datetime import datetime, timezone
from typing import AbstractSet, Any, Iterable, Sequence

import psycopg
from psycopg import sql

from . import pricing, sessions, stats
from .content_keys import content_key
from .identity import email_of
from .normalise_gateway import SERVER_SOURCE
from .rows import ATTRIBUTION_COLUMNS, COLUMNS, Batch, MetricPoint, to_datetime

# The fixed placeholder of a series never seen before (last_time is NOT NULL).
NEVER = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass
class StoreResult:
    inserted: dict[str, int] = field(default_factory=dict)    # table -> rows new to the database
    offered: dict[str, int] = field(default_factory=dict)     # table -> rows in the batch
    stale_points: int = 0                                      # cumulative points already accounted for
    new_origins: set[int] | None = None                        # records (Batch.origins) that stored a fact; None: all

    @property
    def duplicates(self) -> int:
        return sum(self.offered.values()) - sum(self.inserted.values())


# Columns not read as the fact's attribute of the same name.
_SPECIAL = {"time": "time_ns", "start_time": "start_time_ns",
            "attributes": "attributes_json",  # canonical JSON text, parsed by the server
            "counted": "session_id",          # the session decides (see _row)
            "cost_counted": "session_id"}


def _getter(cols: tuple[str, ...]) -> Any:
    """One getter of every column's value, as a list; the attribution columns (last) from
    `attribution`."""
    plain = attrgetter(*(_SPECIAL.get(col, col) for col in cols if col not in ATTRIBUTION_COLUMNS))
    if not set(ATTRIBUTION_COLUMNS) & set(cols):
        return lambda obj: [*plain(obj)]
    if cols[-len(ATTRIBUTION_COLUMNS):] != ATTRIBUTION_COLUMNS:
        raise ValueError(f"the attribution columns must come last, in order: {cols}")
    return lambda obj: [*plain(obj), *obj.attribution]


# Per table, one getter of every column's attribute (this runs for every row).
_GETTERS = {table: _getter(cols) for table, cols in COLUMNS.items()}
_TIMES = {table: [i for i, col in enumerate(cols) if col in ("time", "start_time")] for table, cols in COLUMNS.items()}
_COUNTED = {table: cols.index("counted") if "counted" in cols else None for table, cols in COLUMNS.items()}
_COST_COUNTED = {table: cols.index("cost_counted") if "cost_counted" in cols else None
                 for table, cols in COLUMNS.items()}


def _row(table: str, obj: Any, with_metrics: AbstractSet[str] = frozenset(),
         with_events: AbstractSet[str] = frozenset()) -> tuple:
    values = _GETTERS[table](obj)
    for i in _TIMES[table]:
        values[i] = to_datetime(values[i])
    counted = _COUNTED[table]
    if counted is not None:  # the session's metric points count instead of its events
        values[counted] = values[counted] not in with_metrics
    cost_counted = _COST_COUNTED[table]
    if cost_counted is not None:  # the session's events give the cost, request by request
        values[cost_counted] = values[cost_counted] not in with_events
    return tuple(values)


def _copy_insert(conn: psycopg.Connection, table: str, rows: Sequence[tuple]) -> Sequence[tuple]:
    """Insert fact rows, skipping those already stored; returns the rows that were new.

    Fresh data (the common case) is COPied straight into the table inside a savepoint; if any
    row is already there (a retry, a duplicate at another receiver) the savepoint is undone and
    the rows go through a temporary table and INSERT ... ON CONFLICT DO NOTHING instead. Rows
    are written in the same order (time, key) either way, so concurrent writers wait rather than
    deadlock.
    """
    if not rows:
        return ()
    rows = sorted(rows, key=itemgetter(COLUMNS[table].index("time"), COLUMNS[table].index("source_key")))
    cols = COLUMNS[table]
    col_list = sql.SQL(", ").join(sql.Identifier(c) for c in cols)
    try:
        with conn.transaction():
            with conn.cursor() as cur, cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
                    sql.Identifier(table), col_list)) as copy:
                for row in rows:
                    copy.write_row(row)
        return rows
    except psycopg.errors.UniqueViolation:
        pass
    tmp = sql.Identifier(f"aa_in_{table}")
    # One temporary table per connection, emptied at each commit: no catalog churn per request.
    conn.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
                 .format(tmp, sql.Identifier(table)))
    with conn.cursor() as cur:
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(tmp, col_list)) as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ORDER BY time, source_key"
                            " ON CONFLICT DO NOTHING RETURNING {}").format(sql.Identifier(table), col_list, col_list,
                                                                          tmp, col_list))
        return cur.fetchall()


def _insert_missing(conn: psycopg.Connection, table: str, cols: tuple[str, ...], rows: Iterable[tuple]) -> None:
    """Insert directory rows not yet present, in one statement (text columns only), in key order."""
    rows = sorted(set(rows), key=lambda r: tuple("" if v is None else str(v) for v in r))
    if not rows:
        return
    columns = list(zip(*rows))
    stmt = sql.SQL("INSERT INTO {} ({}) SELECT * FROM unnest({}) ORDER BY 1 ON CONFLICT DO NOTHING").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, cols)),
        sql.SQL(", ").join(sql.SQL("%s::text[]") for _ in cols))
    conn.execute(stmt, [list(c) for c in columns])


_USER_ID, _AGENT_ID = attrgetter("user_id"), attrgetter("agent_id")


def _server_ids(conn: psycopg.Connection, batch: Batch) -> None:
    """MCP servers' own spans name the server by its `service.name`: stored under the id of the
    directory's server with that service name (the name agents use), when there is one. (Their
    content keys were taken from what was received, so a retry collides whatever the directory
    says by then.)"""
    own = [t for t in batch.tool_calls if t.source == SERVER_SOURCE and t.mcp_server_id]
    if not own:
        return
    services = sorted({t.mcp_server_id for t in own if t.mcp_server_id})
    rows = conn.execute("SELECT service_name, min(id) FROM mcp_servers WHERE service_name = ANY(%s)"
                        " GROUP BY service_name", [services]).fetchall()
    ids: dict[str, str] = dict(rows)
    for t in own:
        if t.mcp_server_id in ids:
            t.mcp_server_id = ids[t.mcp_server_id]


def _directory(conn: psycopg.Connection, batch: Batch) -> None:
    facts: list[Any] = [*batch.llm_requests, *batch.llm_errors, *batch.tool_calls, *batch.metric_points,
                        *batch.enforcement, *batch.productivity_points]
    users = set(map(_USER_ID, facts)) | {u for _, u in batch.agent_instances.values()}
    users.discard(None)
    users.discard("")
    agents = dict(batch.agents)
    for a in set(map(_AGENT_ID, facts)) | {a for a, _ in batch.agent_instances.values()}:
        if a:
            agents.setdefault(a, a)
    servers = {s for s in (*(t.mcp_server_id for t in batch.tool_calls),
                           *(e.mcp_server_id for e in batch.enforcement)) if s}
    tools = {(t.mcp_server_id, t.tool_name) for t in batch.tool_calls if t.mcp_server_id}
    _insert_missing(conn, "users", ("id", "email"), ((u, email_of(u)) for u in users))
    _insert_missing(conn, "agents", ("id", "name"), agents.items())
    _insert_missing(conn, "agent_instances", ("id", "agent_id", "user_id"),
                    ((i, a, u) for i, (a, u) in batch.agent_instances.items()))
    _insert_missing(conn, "mcp_servers", ("id", "name"), ((s, s) for s in servers))
    _insert_missing(conn, "tools", ("mcp_server_id", "name"), tools)
    _insert_missing(conn, "policies", ("id", "name", "description"),
                    ((p, n, d) for p, (n, d) in batch.policies.items()))


def _difference(conn: psycopg.Connection, points: list[MetricPoint], result: StoreResult) -> list[MetricPoint]:
    """Cumulative points -> delta points, exactly once per (series, time), even with two
    receivers: each series' state row is locked for the rest of the transaction.

    A point at or before the series' last time was already counted (a retry, or out of order):
    it yields nothing. A lower value or a new start time is a reset: the point's whole value
    is new since its start.
    """
    if not points:
        return []
    by_series: dict[bytes, list[MetricPoint]] = defaultdict(list)
    for p in points:
        by_series[p.series_key].append(p)
    keys = sorted(by_series)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO metric_series_state (series_key, start_time, last_time, last_value)"
                    " SELECT k, NULL, %s, 0 FROM unnest(%s::bytea[]) AS k ORDER BY k ON CONFLICT DO NOTHING",
                    (NEVER, keys))
        cur.execute("SELECT series_key, start_time, last_time, last_value FROM metric_series_state"
                    " WHERE series_key = ANY(%s) ORDER BY series_key FOR UPDATE", (keys,))
        state = {bytes(k): (st, lt, lv) for k, st, lt, lv in cur.fetchall()}
    deltas: list[MetricPoint] = []
    updates = []
    for key in keys:
        start, last_time, last_value = state[key]
        first = last_time == NEVER
        for p in sorted(by_series[key], key=lambda x: x.time_ns):
            t = to_datetime(p.time_ns)
            p_start = to_datetime(p.start_time_ns)
            if not first and t <= last_time:
                result.stale_points += 1
                continue
            reset = first or p.value < last_value or (
                start is not None and p_start is not None and p_start != start)
            delta = replace(
                p, start_time_ns=p.start_time_ns if reset else _ns(last_time),
                value=p.value if reset else p.value - last_value, cumulative=False, series_key=key,
                source_key=content_key("cumulative_point", series=key.hex(), t=p.time_ns))
            pricing.price_point(delta)
            deltas.append(delta)
            start, last_time, last_value, first = p_start, t, p.value, False
        updates.append((start, last_time, last_value, key))
    with conn.cursor() as cur:
        cur.executemany("UPDATE metric_series_state SET start_time = %s, last_time = %s, last_value = %s"
                        " WHERE series_key = %s", updates)
    return deltas


def _ns(dt: datetime) -> int:
    delta = dt - NEVER
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def store(conn: psycopg.Connection, batch: Batch) -> StoreResult:
    """Everything in `batch`, in one transaction; returns what was new."""
    result = StoreResult()
    with conn.transaction():
        _server_ids(conn, batch)
        _directory(conn, batch)
        with_metrics, with_events = sessions.record(conn, batch)
        points = [p for p in batch.metric_points if not p.cumulative]
        points += _difference(conn, [p for p in batch.metric_points if p.cumulative], result)
        productivity = [p for p in batch.productivity_points if not p.cumulative]
        productivity += _difference(conn, [p for p in batch.productivity_points if p.cumulative], result)
        new: dict[str, Sequence[tuple]] = {}
        facts = (("llm_requests", batch.llm_requests), ("llm_errors", batch.llm_errors),
                 ("tool_calls", batch.tool_calls), ("metric_points", points),
                 ("agent_enforcement", batch.enforcement), ("productivity_points", productivity))
        for table, objs in facts:
            result.offered[table] = len(objs)
            new[table] = _copy_insert(conn, table, [_row(table, o, with_metrics, with_events) for o in objs])
            result.inserted[table] = len(new[table])
        if result.duplicates or result.stale_points:  # (else every record's facts were new)
            result.new_origins = set()
            for table, objs in facts:
                _note_new(table, objs, new[table], result.new_origins)
        sessions.add_totals(conn, new["llm_requests"], new["metric_points"], with_metrics, with_events)
        stats.write(conn, batch.tally, batch.origins, result.new_origins)
    return result


_SOURCE_KEY_AT = {table: cols.index("source_key") for table, cols in COLUMNS.items()}


def _note_new(table: str, objs: Sequence[Any], rows: Sequence[tuple], new_origins: set[int]) -> None:
    """Add to `new_origins` the records (Batch.origins) with a fact among the new `rows`."""
    if len(rows) == len(objs):  # (the common case: every row was new)
        new_origins.update(o.origin for o in objs)
        return
    origin_of = {o.source_key: o.origin for o in objs}
    at = _SOURCE_KEY_AT[table]
    new_origins.update(origin_of[bytes(r[at])] for r in rows)

