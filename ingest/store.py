"""Write a normalised batch in one transaction: directory rows first seen, facts by COPY straight
into their tables (or, when some are already stored, through a temporary table and INSERT ... ON
CONFLICT DO NOTHING, so a retried or concurrently duplicated batch stores nothing twice; see
`_copy_insert`), cumulative metric series differenced against metric_series_state under row
locks, the sessions' first and last sight (taken first: it decides whether a session's events or
its metric points count, for tokens and for cost, see `_sessions`), the sessions' totals, from
the rows the batch newly stored (`_session_totals`), and last the count of what arrived, by where
it came from and what became of it (ingest/stats.py).

Rows are inserted in one total order, time then key, so that two receivers writing overlapping
batches wait for each other instead of deadlocking. Time first: consecutive rows land on the same
pages of the time-led indexes (and in the same TimescaleDB chunk), where rows sorted by their
random keys would scatter.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import AbstractSet, Any, Iterable, Sequence

import orjson
import psycopg
from psycopg import sql

from . import pricing, stats
from .identity import email_of
from .normalise_claude_code import SOURCE as COST_METRIC_SOURCE  # the one agent sending a cost metric
from .normalise_gateway import SERVER_SIDE, SERVER_SOURCE
from .rows import Batch, MetricPoint, content_key, to_datetime

# The fixed placeholder of a series never seen before (last_time is NOT NULL).
NEVER = datetime(1970, 1, 1, tzinfo=timezone.utc)

COLUMNS: dict[str, tuple[str, ...]] = {
    "llm_requests": ("time", "source_key", "source", "session_id", "user_id", "agent_id", "provider", "model",
                     "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                     "reported_cost_usd", "estimated_cost_usd", "cost_basis", "latency_ms", "attributes", "counted"),
    "llm_errors": ("time", "source_key", "source", "session_id", "user_id", "agent_id", "provider", "model",
                   "error", "status_code", "duration_ms", "attributes"),
    "tool_calls": ("time", "source_key", "source", "user_id", "agent_id", "agent_instance_id", "session_id",
                   "mcp_server_id", "tool_name", "outcome", "duration_ms", "error_type", "policy_id",
                   "policy_name", "policy_description", "attributes"),
    "metric_points": ("time", "start_time", "source_key", "source", "session_id", "user_id", "agent_id",
                      "provider", "model", "metric", "token_type", "value", "estimated_cost_usd", "cost_counted"),
}


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
# Per table, one getter of every column's attribute (this runs for every row).
_GETTERS = {table: attrgetter(*(_SPECIAL.get(col, col) for col in cols)) for table, cols in COLUMNS.items()}
_TIMES = {table: [i for i, col in enumerate(cols) if col in ("time", "start_time")] for table, cols in COLUMNS.items()}
_COUNTED = {table: cols.index("counted") if "counted" in cols else None for table, cols in COLUMNS.items()}
_COST_COUNTED = {table: cols.index("cost_counted") if "cost_counted" in cols else None
                 for table, cols in COLUMNS.items()}


def _row(table: str, obj: Any, with_metrics: AbstractSet[str] = frozenset(),
         with_events: AbstractSet[str] = frozenset()) -> tuple:
    values = list(_GETTERS[table](obj))
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
    facts: list[Any] = [*batch.llm_requests, *batch.llm_errors, *batch.tool_calls, *batch.metric_points]
    users = set(map(_USER_ID, facts)) | {u for _, u in batch.agent_instances.values()}
    users.discard(None)
    users.discard("")
    agents = dict(batch.agents)
    for a in set(map(_AGENT_ID, facts)) | {a for a, _ in batch.agent_instances.values()}:
        if a:
            agents.setdefault(a, a)
    servers = {t.mcp_server_id for t in batch.tool_calls if t.mcp_server_id}
    tools = {(t.mcp_server_id, t.tool_name) for t in batch.tool_calls if t.mcp_server_id}
    _insert_missing(conn, "users", ("id", "email"), ((u, email_of(u)) for u in users))
    _insert_missing(conn, "agents", ("id", "name"), agents.items())
    _insert_missing(conn, "agent_instances", ("id", "agent_id", "user_id"),
                    ((i, a, u) for i, (a, u) in batch.agent_instances.items()))
    _insert_missing(conn, "mcp_servers", ("id", "name"), ((s, s) for s in servers))
    _insert_missing(conn, "tools", ("mcp_server_id", "name"), tools)
    _insert_missing(conn, "policies", ("id", "name", "description"),
                    ((p, n, d) for p, (n, d) in batch.policies.items()))


def _sessions(conn: psycopg.Connection, batch: Batch) -> tuple[set[str], set[str]]:
    """Record the batch's sessions (first and last sight) and return those whose tokens come
    from metric points (the ones that have sent any, before or in this batch) and those whose
    cost comes from events (the ones that have sent any api_request event).

    A session's first metric point turns its stored events' `counted` off, so each request is
    counted once however the two reports interleave; its first event turns its stored metric
    points' `cost_counted` off: a request's price depends on the request (a tier applies to one
    request), which only its event gives, where a metric point sums many. The upsert takes the
    sessions' row locks
    (in id order) before any fact is written: a batch of events and a batch of metric points of
    the same session run one after the other, and the later sees what the earlier decided.
    """
    seen: dict[str, list] = {}
    f: Any
    for f in [*batch.llm_requests, *batch.llm_errors, *batch.metric_points,
              *(t for t in batch.tool_calls if t.source not in SERVER_SIDE)]:
        if not f.session_id:
            continue
        s = seen.setdefault(f.session_id, [f.agent_id, f.user_id, f.time_ns, f.time_ns])
        s[0] = s[0] or f.agent_id
        s[1] = s[1] or f.user_id
        s[2] = min(s[2], f.time_ns)
        s[3] = max(s[3], f.time_ns)
    if not seen:
        return set(), set()
    ids = sorted(seen)
    rows = conn.execute(
        "INSERT INTO sessions (id, agent_id, user_id, first_seen, last_seen)"
        " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[])"
        " ORDER BY 1"
        " ON CONFLICT (id) DO UPDATE SET"
        " first_seen = least(sessions.first_seen, excluded.first_seen),"
        " last_seen = greatest(sessions.last_seen, excluded.last_seen),"
        " agent_id = coalesce(sessions.agent_id, excluded.agent_id),"
        " user_id = coalesce(sessions.user_id, excluded.user_id)"
        " RETURNING id, has_metrics, first_seen, requests, points",
        (ids, [seen[i][0] for i in ids], [seen[i][1] for i in ids], [to_datetime(seen[i][2]) for i in ids],
         [to_datetime(seen[i][3]) for i in ids])).fetchall()
    with_metrics = {sid for sid, has, *_ in rows if has}
    first_seen = {sid: fs for sid, _, fs, *_ in rows}
    new = sorted({p.session_id for p in batch.metric_points if p.session_id} - with_metrics)
    if new:
        conn.execute(f"UPDATE sessions SET has_metrics = true, {RESET_COUNTED} WHERE id = ANY(%s)", (new,))
        # Bounded by time so that TimescaleDB skips older (possibly compressed) chunks.
        conn.execute("UPDATE llm_requests SET counted = false"
                     " WHERE session_id = ANY(%s) AND time >= %s AND counted",
                     (new, min(first_seen[i] for i in new)))
        with_metrics.update(new)
    with_events = {sid for sid, _, _, requests, _ in rows if requests}
    new = sorted({r.session_id for r in batch.llm_requests if r.session_id} - with_events)
    # Of those, the ones whose stored metric points counted their cost until now.
    fresh = set(new)
    priced_by_points = [sid for sid, _, _, _, points in rows if points and sid in fresh]
    if priced_by_points:
        conn.execute(f"UPDATE sessions SET {RESET_COST} WHERE id = ANY(%s)", (priced_by_points,))
        conn.execute("UPDATE metric_points SET cost_counted = false"
                     " WHERE session_id = ANY(%s) AND time >= %s AND cost_counted",
                     (priced_by_points, min(first_seen[i] for i in priced_by_points)))
    with_events.update(new)
    return with_metrics, with_events


# Where each column sits in a row of its table.
_AT = {table: {c: i for i, c in enumerate(cols)} for table, cols in COLUMNS.items()}
_NUMERIC_SCALE = Decimal("1e-12")  # the cost columns are numeric(24, 12)


def _stored(cost: Decimal | None) -> Decimal | None:
    """A cost as its numeric(24, 12) column holds it (PostgreSQL rounds half away from zero)."""
    return None if cost is None else Decimal(cost).quantize(_NUMERIC_SCALE, rounding=ROUND_HALF_UP)


def _add(total: Any, value: Any) -> Any:
    """SQL's sum: NULLs are skipped, and a sum of nothing is NULL."""
    if value is None:
        return total
    return value if total is None else total + value


_TOTALS = ("requests", "points", "tokens", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
           "estimated_cost_usd", "reported_cost_usd", "estimated_unpriced_tokens", "reported_unpriced_tokens")
_TOTAL_TYPES = ("bigint", "bigint", "float8", "float8", "float8", "float8", "float8", "numeric", "numeric",
                "float8", "float8")
_NULLABLE = {"estimated_cost_usd", "reported_cost_usd"}
_TOKEN_AT = {"input": 3, "output": 4, "cache_read": 5, "cache_write": 6}  # index in a session's totals
# What the counted tokens of a session become when its first metric point arrives: from then
# on its metric points count, not its events. (Its events' cost keeps counting.)
RESET_COUNTED = "tokens = 0, input_tokens = 0, output_tokens = 0, cache_read_tokens = 0, cache_write_tokens = 0"
# What the cost of a session priced from its metric points becomes when its first event
# arrives: from then on its events' cost counts, not its points'.
RESET_COST = ("estimated_cost_usd = NULL, reported_cost_usd = NULL, estimated_unpriced_tokens = 0,"
              " reported_unpriced_tokens = 0")
_ADD_TOTALS = sql.SQL(
    "UPDATE sessions s SET {sets},"
    " ev_user_id = greatest(s.ev_user_id, n.ev_user_id), ev_agent_id = greatest(s.ev_agent_id, n.ev_agent_id),"
    " mp_user_id = greatest(s.mp_user_id, n.mp_user_id), mp_agent_id = greatest(s.mp_agent_id, n.mp_agent_id),"
    " models = CASE WHEN n.models <@ s.models THEN s.models"
    "          ELSE ARRAY(SELECT DISTINCT m FROM unnest(s.models || n.models) m ORDER BY 1) END,"
    # (An array holding NULL is never contained: those are merged every time.)
    " user_ids = CASE WHEN n.user_ids <@ s.user_ids THEN s.user_ids"
    "          ELSE ARRAY(SELECT DISTINCT u FROM unnest(s.user_ids || n.user_ids) u ORDER BY 1) END,"
    " first_time = least(s.first_time, d.first_time), last_time = greatest(s.last_time, d.last_time)"
    " FROM unnest(%s::text[], {arrays}, %s::timestamptz[], %s::timestamptz[]) AS d(id, {names}, first_time, last_time)"
    # The greatest user and agent each side names, compared as the database collates them, and
    # the models and users named.
    " JOIN (SELECT id, max(user_id) FILTER (WHERE ev) AS ev_user_id, max(agent_id) FILTER (WHERE ev) AS ev_agent_id,"
    "       max(user_id) FILTER (WHERE NOT ev) AS mp_user_id, max(agent_id) FILTER (WHERE NOT ev) AS mp_agent_id,"
    "       array_agg(DISTINCT model) AS models, array_agg(DISTINCT user_id) AS user_ids"
    # One JSON parameter: hundreds of names per batch cost far less to send as one text than
    # as five arrays the driver writes element by element.
    "       FROM jsonb_array_elements(%s::jsonb) e, LATERAL (SELECT e->>0 AS id, (e->>1)::bool AS ev,"
    "            e->>2 AS user_id, e->>3 AS agent_id, e->>4 AS model) w"
    "       GROUP BY id) n ON n.id = d.id"
    " WHERE s.id = d.id").format(
        sets=sql.SQL(", ").join(
            sql.SQL("{c} = coalesce(s.{c} + d.{c}, s.{c}, d.{c})" if c in _NULLABLE else "{c} = s.{c} + d.{c}")
            .format(c=sql.Identifier(c)) for c in _TOTALS),
        arrays=sql.SQL(", ").join(sql.SQL(f"%s::{t}[]") for t in _TOTAL_TYPES),
        names=sql.SQL(", ").join(map(sql.Identifier, _TOTALS)))


def _session_totals(conn: psycopg.Connection, requests: Sequence[tuple], points: Sequence[tuple],
                    with_metrics: set[str], with_events: set[str]) -> None:
    """Add the newly stored events and metric points to their sessions' totals (migrations 0005
    and 0008), in the batch's transaction: the sessions' rows are already locked by `_sessions`.
    Events count tokens only in sessions without metric points (`counted`, as on the rows), and
    always their cost; metric points count their cost only in sessions without events
    (`cost_counted`). The tokens of that cost without a price are kept beside it (migration 0011):
    an event's without an estimate or a reported cost; a counted token point's without an
    estimate, or from an agent that reports no cost metric (relations.COST_METRIC_SOURCE)."""
    totals: dict[str, list] = {}
    names: set[tuple[str, bool, str | None, str | None, str]] = set()
    at = _AT["llm_requests"]
    sid, t, user, agent, model = at["session_id"], at["time"], at["user_id"], at["agent_id"], at["model"]
    i_in, i_out, i_cr, i_cw = at["input_tokens"], at["output_tokens"], at["cache_read_tokens"], at["cache_write_tokens"]
    i_est, i_rep = at["estimated_cost_usd"], at["reported_cost_usd"]
    for r in requests:
        s = r[sid]
        if not s:
            continue
        tot = totals.get(s)
        if tot is None:
            tot = totals[s] = [0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, None, None, 0.0, 0.0, r[t], r[t]]
        tot[0] += 1
        if s not in with_metrics:
            tot[2] += r[i_in] + r[i_out] + r[i_cr] + r[i_cw]
            tot[3] += r[i_in]
            tot[4] += r[i_out]
            tot[5] += r[i_cr]
            tot[6] += r[i_cw]
        tot[7] = _add(tot[7], _stored(r[i_est]))
        tot[8] = _add(tot[8], _stored(r[i_rep]))
        if r[i_est] is None or r[i_rep] is None:
            n = r[i_in] + r[i_out] + r[i_cr] + r[i_cw]
            tot[9] += n if r[i_est] is None else 0
            tot[10] += n if r[i_rep] is None else 0
        tot[11] = min(tot[11], r[t])
        tot[12] = max(tot[12], r[t])
        names.add((s, True, r[user], r[agent], r[model]))
    at = _AT["metric_points"]
    sid, t, start, user, agent, model = (at["session_id"], at["time"], at["start_time"], at["user_id"],
                                         at["agent_id"], at["model"])
    i_source = at["source"]
    i_metric, i_type, i_value, i_est = at["metric"], at["token_type"], at["value"], at["estimated_cost_usd"]
    for p in points:
        s = p[sid]
        if not s:
            continue
        first = p[start] or p[t]
        tot = totals.get(s)
        if tot is None:
            tot = totals[s] = [0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, None, None, 0.0, 0.0, first, p[t]]
        tot[1] += 1
        value = float(p[i_value])
        priced_here = s not in with_events
        if p[i_metric] == "tokens":
            tot[2] += value
            if p[i_type] in _TOKEN_AT:
                tot[_TOKEN_AT[p[i_type]]] += value
            if priced_here:
                tot[7] = _add(tot[7], _stored(p[i_est]))
                tot[9] += value if p[i_est] is None else 0.0
                tot[10] += value if p[i_source] != COST_METRIC_SOURCE else 0.0
        elif p[i_metric] == "cost" and priced_here:
            # As PostgreSQL turns a float8 into numeric (15 significant digits).
            tot[8] = _add(tot[8], Decimal(format(value, ".15g")))
        tot[11] = min(tot[11], first)
        tot[12] = max(tot[12], p[t])
        names.add((s, False, p[user], p[agent], p[model]))
    if not totals:
        return
    ids = sorted(totals)
    columns = [[totals[i][k] for i in ids] for k in range(len(_TOTALS) + 2)]
    conn.execute(_ADD_TOTALS, [ids, *columns, orjson.dumps(list(names)).decode()])


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
            delta = MetricPoint(
                time_ns=p.time_ns,
                start_time_ns=p.start_time_ns if reset else _ns(last_time),
                source=p.source, session_id=p.session_id, user_id=p.user_id, agent_id=p.agent_id,
                provider=p.provider, model=p.model, metric=p.metric, token_type=p.token_type,
                value=p.value if reset else p.value - last_value, cumulative=False, series_key=key,
                source_key=content_key("cumulative_point", series=key.hex(), t=p.time_ns), origin=p.origin)
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
        with_metrics, with_events = _sessions(conn, batch)
        points = [p for p in batch.metric_points if not p.cumulative]
        points += _difference(conn, [p for p in batch.metric_points if p.cumulative], result)
        new: dict[str, Sequence[tuple]] = {}
        for table, objs in (("llm_requests", batch.llm_requests), ("llm_errors", batch.llm_errors),
                            ("tool_calls", batch.tool_calls), ("metric_points", points)):
            result.offered[table] = len(objs)
            new[table] = _copy_insert(conn, table, [_row(table, o, with_metrics, with_events) for o in objs])
            result.inserted[table] = len(new[table])
        if result.duplicates or result.stale_points:  # (else every record's facts were new)
            result.new_origins = set()
            for table, objs in (("llm_requests", batch.llm_requests), ("llm_errors", batch.llm_errors),
                                ("tool_calls", batch.tool_calls), ("metric_points", points)):
                _note_new(table, objs, new[table], result.new_origins)
        _session_totals(conn, new["llm_requests"], new["metric_points"], with_metrics, with_events)
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

