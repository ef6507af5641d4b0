"""A session's metric points arrive, their hour ends and is materialised, and only then the
session's api_request events (Claude Code exports metrics and logs separately): the events are
late rows below the watermark, and storing them turns the points' `cost_counted` off (an UPDATE
of rows already materialised). From the next refresh on, every aggregate holds what the raw rows
say, and the top lists and the headline show the requests and their list price, not the points'
price without requests, on both backends. Oracle: Anthropic's published Sonnet 4.5 rates applied
to the capture's ledger, not the code under test."""
from __future__ import annotations

import time
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg

from agent_analytics.datasource import service
from agent_analytics.sql.migrate import aggregate_definitions
from tests.harness_support import refresh_aggregates
from tests.cost_support import CACHE, UTC, event_times, ledger, post_all, query, sonnet


def _exact(v):
    # float8 sums may differ in the last bits with the order rows are added in.
    return float(f"{v:.12g}") if isinstance(v, float) else v


def _rows(c: psycopg.Connection, relation: str) -> list[tuple]:
    return sorted((tuple(map(_exact, r)) for r in c.execute(f"SELECT * FROM {relation}")), key=repr)


def test_events_after_their_points_hour_was_materialised(client, conn, app):
    times = event_times(CACHE)
    # The capture's hour has ended: the refresh materialises it.
    assert max(times) < datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start, end = min(times) - timedelta(hours=2), max(times) + timedelta(hours=2)
    # The panels of one dashboard refresh share the figures they ask alike for a few seconds
    # (datasource/shared.py); here for 0.2 s, and each question below is a later refresh's.
    service.shared(app.extensions).ttl_s = 0.2
    q = app.test_client()

    post_all(client, CACHE, ("metrics",))
    refresh_aggregates(conn)
    [before] = query(q, "llm_top_users_by_cost", start, end)["rows"]
    assert before["requests"] is None and before["cost"] is not None  # the points' cost, no count

    post_all(client, CACHE, ("logs",))
    assert conn.execute("SELECT count(*) FROM metric_points WHERE cost_counted").fetchone()[0] == 0
    refresh_aggregates(conn)
    for name, select in aggregate_definitions().items():
        assert _rows(conn, name) == _rows(conn, f"({select}) q"), name
    time.sleep(0.3)
    requests = ledger(CACHE)
    cost = sum(sonnet(r["input"], r["output"], r["cache_read"], r["cache_write_5m"], r["cache_write_1h"])
               for r in requests)
    for metric in ("llm_top_users_by_cost", "llm_top_models_by_cost"):
        [row] = query(q, metric, start, end)["rows"]
        assert (row["requests"], Decimal(str(row["cost"]))) == (len(requests), cost), (metric, row)
    [total] = query(q, "llm_total_cost", start, end)["rows"]
    assert Decimal(str(total["value"])) == cost, total
