"""Price rows stored before migration 0008 as the receiver prices them since (ingest/pricing.py):
token points whose cost counts at the base tier (a point sums many requests), and Claude Code
events whose attributes split their cache writes with the 1-hour writes at their own rate. Run
by `migrate` once 0008 is applied, until a run finishes it (sql/migrate.py); prices at each
row's own time, so a rerun changes nothing."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Callable, Iterable

import psycopg

from . import pricing

_SCALE = Decimal("1e-12")  # numeric(24, 12), as the receiver's store rounds
_CHUNK = 10_000


@dataclass
class RepriceReport:
    points: int = 0
    requests: int = 0
    sessions: int = 0

    def summary(self) -> str:
        return (f"repriced: {self.points} metric point(s) at the base tier, {self.requests} request(s) with"
                f" 1-hour cache writes; totals of {self.sessions} session(s) recounted")


def _ns(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000) * 1000


def _stored(cost: Decimal | None) -> Decimal | None:
    return None if cost is None else cost.quantize(_SCALE, rounding=ROUND_HALF_UP)


def _changed(conn: psycopg.Connection, query: str, price: Callable[..., Decimal | None]) -> list[tuple]:
    """(source_key, time, new estimate, session) of the rows `query` selects whose estimate differs."""
    out = []
    with conn.transaction(), conn.cursor(name="aa_reprice") as cur:
        cur.itersize = _CHUNK
        cur.execute(query)
        for row in cur:
            key, time, old, session = row[:4]
            new = _stored(price(time, *row[4:]))
            if new != old:
                out.append((key, time, new, session))
    return out


def _update(conn: psycopg.Connection, table: str, rows: Iterable[tuple]) -> None:
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE aa_repriced (source_key bytea, time timestamptz, cost numeric(24, 12))"
                     " ON COMMIT DROP")
        with conn.cursor().copy("COPY aa_repriced (source_key, time, cost) FROM STDIN") as cp:
            for key, time, cost, _ in rows:
                cp.write_row((key, time, cost))
        conn.execute(f"UPDATE {table} t SET estimated_cost_usd = r.cost FROM aa_repriced r"  # our own table names
                     " WHERE t.source_key = r.source_key AND t.time = r.time")


def _point_price(time: datetime, provider: str, model: str, token_type: str, value: float) -> Decimal | None:
    rate = pricing.base_rate(provider, model, token_type, _ns(time)) if token_type else None
    return None if rate is None else rate * int(round(value))


def _request_price(time: datetime, provider: str, model: str, inp: int, out: int, read: int, write: int,
                   write_1h: Decimal) -> Decimal | None:
    return pricing.estimate(provider, model, inp, out, read, write, _ns(time), min(int(write_1h), write))


def reprice(conn: psycopg.Connection) -> RepriceReport:
    """Bring stored estimates to this release's basis; `conn` in autocommit mode."""
    report = RepriceReport()
    points = _changed(conn, "SELECT source_key, time, estimated_cost_usd, session_id, provider, model, token_type,"
                            " value FROM metric_points WHERE metric = 'tokens' AND cost_counted", _point_price)
    requests = _changed(conn, "SELECT source_key, time, estimated_cost_usd, session_id, provider, model,"
                              " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,"
                              " (attributes->>'cache_creation_1h_tokens')::numeric FROM llm_requests"
                              " WHERE jsonb_typeof(attributes->'cache_creation_1h_tokens') = 'number'"
                              " AND (attributes->>'cache_creation_1h_tokens')::numeric > 0", _request_price)
    if points:
        _update(conn, "metric_points", points)
    if requests:
        _update(conn, "llm_requests", requests)
    sessions = sorted({s for *_, s in points + requests if s})
    if sessions:
        conn.execute("SELECT aa_rebuild_session_totals(%s)", (sessions,))
    report.points, report.requests, report.sessions = len(points), len(requests), len(sessions)
    return report

