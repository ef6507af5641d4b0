"""A batch's sessions, in the batch's transaction: their first and last sight, which of their
reports count (`record`), and their totals (`add_totals`, migrations 0005, 0008 and 0011).

A session is "counted once": its tokens come from its metric points once it has sent any (its
events' `counted` turns off), and its cost from its events once it has sent any (its metric
points' `cost_counted` turns off). The upsert of `record` takes the sessions' row locks (in id
order) before any fact is written, so that a batch of events and a batch of metric points of the
same session run one after the other, and the later sees what the earlier decided.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Sequence, overload

import orjson
import psycopg
from psycopg import sql

from .normalise_claude_code import SOURCE as COST_METRIC_SOURCE  # the one agent sending a cost metric
from .normalise_gateway import SERVER_SIDE
from .rows import COLUMNS, Batch, to_datetime

# What the counted tokens of a session become when its first metric point arrives: from then
# on its metric points count, not its events. (Its events' cost keeps counting.)
RESET_COUNTED = "tokens = 0, input_tokens = 0, output_tokens = 0, cache_read_tokens = 0, cache_write_tokens = 0"
# What the cost of a session priced from its metric points becomes when its first event
# arrives: from then on its events' cost counts, not its points'.
RESET_COST = ("estimated_cost_usd = NULL, reported_cost_usd = NULL, estimated_unpriced_tokens = 0,"
              " reported_unpriced_tokens = 0")


def record(conn: psycopg.Connection, batch: Batch) -> tuple[set[str], set[str]]:
    """Record the batch's sessions (first and last sight) and return those whose tokens come
    from metric points (the ones that have sent any, before or in this batch) and those whose
    cost comes from events (the ones that have sent any api_request event).

    A session's first metric point turns its stored events' `counted` off, so each request is
    counted once however the two reports interleave; its first event turns its stored metric
    points' `cost_counted` off: a request's price depends on the request (a tier applies to one
    request), which only its event gives, where a metric point sums many.
    """
    seen: dict[str, list] = {}
    f: Any
    for f in [*batch.llm_requests, *batch.llm_errors, *batch.metric_points,
              *(t for t in batch.tool_calls if t.source not in SERVER_SIDE)]:
        if not f.session_id:
            continue
        s = seen.get(f.session_id)
        if s is None:
            seen[f.session_id] = [f.agent_id, f.user_id, f.time_ns, f.time_ns]
            continue
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
    # Of those, the ones whose stored metric points counted their cost before this batch.
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


@overload
def _stored(cost: Decimal) -> Decimal: ...
@overload
def _stored(cost: None) -> None: ...
@overload
def _stored(cost: Decimal | None) -> Decimal | None: ...


def _stored(cost: Decimal | None) -> Decimal | None:
    """A cost as its numeric(24, 12) column holds it (PostgreSQL rounds half away from zero)."""
    if cost is None:
        return None
    return (cost if type(cost) is Decimal else Decimal(cost)).quantize(_NUMERIC_SCALE, rounding=ROUND_HALF_UP)


def _add(total: Any, value: Any) -> Any:
    """SQL's sum: NULLs are skipped, and a sum of nothing is NULL."""
    if value is None:
        return total
    return value if total is None else total + value


def _total(sql_type: str, default: Any) -> Any:
    return field(default=default, metadata={"sql": sql_type})


@dataclass(slots=True)
class _Totals:
    """What a batch adds to one session's row: its columns (each with its SQL type) and the time
    its facts span."""
    first_time: datetime
    last_time: datetime
    requests: int = _total("bigint", 0)
    points: int = _total("bigint", 0)
    tokens: float = _total("float8", 0.0)
    input_tokens: float = _total("float8", 0.0)
    output_tokens: float = _total("float8", 0.0)
    cache_read_tokens: float = _total("float8", 0.0)
    cache_write_tokens: float = _total("float8", 0.0)
    estimated_cost_usd: Decimal | None = _total("numeric", None)   # NULL: nothing priced
    reported_cost_usd: Decimal | None = _total("numeric", None)
    estimated_unpriced_tokens: float = _total("float8", 0.0)
    reported_unpriced_tokens: float = _total("float8", 0.0)


_TOTALS = tuple(f.name for f in fields(_Totals) if "sql" in f.metadata)
_TOTAL_TYPES = tuple(f.metadata["sql"] for f in fields(_Totals) if "sql" in f.metadata)
_NULLABLE = {"estimated_cost_usd", "reported_cost_usd"}
_TOKEN_TOTAL = {"input": "input_tokens", "output": "output_tokens", "cache_read": "cache_read_tokens",
                "cache_write": "cache_write_tokens"}  # a token point's token_type -> its total


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


def add_totals(conn: psycopg.Connection, requests: Sequence[tuple], points: Sequence[tuple],
               with_metrics: set[str], with_events: set[str]) -> None:
    """Add the newly stored events and metric points to their sessions' totals (migrations 0005
    and 0008), in the batch's transaction: the sessions' rows are already locked by `record`.
    Events count tokens only in sessions without metric points (`counted`, as on the rows), and
    always their cost; metric points count their cost only in sessions without events
    (`cost_counted`). The tokens of that cost without a price are kept beside it (migration 0011):
    an event's without an estimate or a reported cost; a counted token point's without an
    estimate, or from an agent that reports no cost metric (relations.COST_METRIC_SOURCE)."""
    totals: dict[str, _Totals] = {}
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
            tot = totals[s] = _Totals(r[t], r[t])
        tot.requests += 1
        if s not in with_metrics:
            tot.tokens += r[i_in] + r[i_out] + r[i_cr] + r[i_cw]
            tot.input_tokens += r[i_in]
            tot.output_tokens += r[i_out]
            tot.cache_read_tokens += r[i_cr]
            tot.cache_write_tokens += r[i_cw]
        # As `_add(total, _stored(cost))` for each cost, without the calls (this runs per request).
        estimated: Decimal | None = r[i_est]
        reported: Decimal | None = r[i_rep]
        if estimated is not None:
            cost = _stored(estimated)
            tot.estimated_cost_usd = cost if tot.estimated_cost_usd is None else tot.estimated_cost_usd + cost
        if reported is not None:
            cost = _stored(reported)
            tot.reported_cost_usd = cost if tot.reported_cost_usd is None else tot.reported_cost_usd + cost
        if estimated is None or reported is None:
            n = r[i_in] + r[i_out] + r[i_cr] + r[i_cw]
            tot.estimated_unpriced_tokens += n if estimated is None else 0
            tot.reported_unpriced_tokens += n if reported is None else 0
        tot.first_time = min(tot.first_time, r[t])
        tot.last_time = max(tot.last_time, r[t])
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
            tot = totals[s] = _Totals(first, p[t])
        tot.points += 1
        value = float(p[i_value])
        priced_here = s not in with_events
        if p[i_metric] == "tokens":
            tot.tokens += value
            token_total = _TOKEN_TOTAL.get(p[i_type])
            if token_total is not None:
                setattr(tot, token_total, getattr(tot, token_total) + value)
            if priced_here:
                tot.estimated_cost_usd = _add(tot.estimated_cost_usd, _stored(p[i_est]))
                tot.estimated_unpriced_tokens += value if p[i_est] is None else 0.0
                tot.reported_unpriced_tokens += value if p[i_source] != COST_METRIC_SOURCE else 0.0
        elif p[i_metric] == "cost" and priced_here:
            # As PostgreSQL turns a float8 into numeric (15 significant digits).
            tot.reported_cost_usd = _add(tot.reported_cost_usd, Decimal(format(value, ".15g")))
        tot.first_time = min(tot.first_time, first)
        tot.last_time = max(tot.last_time, p[t])
        names.add((s, False, p[user], p[agent], p[model]))
    if not totals:
        return
    ids = sorted(totals)
    columns = [[getattr(totals[i], name) for i in ids] for name in (*_TOTALS, "first_time", "last_time")]
    conn.execute(_ADD_TOTALS, [ids, *columns, orjson.dumps(list(names)).decode()])
