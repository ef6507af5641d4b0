"""Values for dashboard variables and ad hoc filter values: (value, text) pairs, from each
filter's declared query (filters.py)."""
from __future__ import annotations

from datetime import datetime

import psycopg

from agent_analytics.datasource.filters import FILTERS


def values(conn: psycopg.Connection, name: str, start: datetime | None = None,
           end: datetime | None = None) -> list[tuple[str, str]]:
    # The name comes from a fixed whitelist (the declared filters); the SQL is our own.
    rows = conn.execute(FILTERS[name].values, {"start": start, "end": end}).fetchall()
    return [(str(v), str(t)) for v, t in rows if v is not None]
