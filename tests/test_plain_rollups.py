"""Plain PostgreSQL's rollups (sql/plain/20_rollups.sql): every aggregate answers what grouping
the raw rows answers, with buckets materialised before its watermark and raw rows read live
after it; late rows, retried rows and `counted` turned off below the watermark are
re-materialised by the next refresh; retention keeps the materialised buckets."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest

from agent_analytics.cluster import free_port
from agent_analytics.config import Config
from agent_analytics.sql.migrate import AGGREGATES, aggregate_definitions, migrate, refresh_aggregates
from tests.rawdata import load_raw_rows, raw_rows

pytestmark = pytest.mark.usefixtures("plain_backend")


@pytest.fixture
def plain_backend(request):
    # The TimescaleDB path is TimescaleDB's own continuous aggregates (test_datasource_rollups).
    from tests.conftest import _backends_ran

    _backends_ran.add("plain")


def _exact(value):
    # Sums of float8 may differ in the last bits with the order rows are added in.
    return float(f"{value:.12g}") if isinstance(value, float) else value


def _rows(c: psycopg.Connection, select: str) -> list[tuple]:
    n = len(c.execute(f"SELECT * FROM ({select}) q LIMIT 0").description)
    order = ", ".join(str(i) for i in range(1, n + 1))
    return [tuple(map(_exact, r)) for r in c.execute(f"SELECT * FROM ({select}) q ORDER BY {order}")]


def assert_every_rollup_is_the_raw_grouping(c: psycopg.Connection) -> None:
    for name, select in aggregate_definitions().items():
        assert _rows(c, f"SELECT * FROM {name}") == _rows(c, select), name


def _calls_in(c: psycopg.Connection, relation: str) -> int:
    return c.execute(f"SELECT coalesce(sum(calls), 0) FROM {relation}").fetchone()[0]


def test_rollups_answer_as_the_raw_rows_with_late_rows_and_counted_turned_off(fresh_database):
    migrate(fresh_database, timescaledb="off", retention_days=0)
    with psycopg.connect(fresh_database, autocommit=True) as c:
        refresh_aggregates(c)
        # No raw rows yet: nothing materialised, so history loaded next is seen at once.
        assert c.execute("SELECT bool_and(watermark = '-infinity') FROM aa_rollups").fetchone()[0]
    load_raw_rows(fresh_database, raw_rows(seed=3))  # three days of March 2026, then a refresh
    with psycopg.connect(fresh_database, autocommit=True) as c:
        # Materialised up to the bucket of the latest row, which stays live.
        assert {n for (n,) in c.execute("SELECT name FROM aa_rollups WHERE watermark >= '2026-03-03'")} == set(AGGREGATES)
        materialised = _calls_in(c, "tool_calls_hourly_mat")
        assert 350 < materialised == c.execute("SELECT count(*) FROM tool_calls WHERE time < aa_watermark("
                                               "'tool_calls_hourly')").fetchone()[0]
        assert_every_rollup_is_the_raw_grouping(c)

        # Late rows below the watermark: recorded, then re-materialised by the refresh.
        load_raw_rows(fresh_database, raw_rows(seed=4), refresh=False)
        assert c.execute("SELECT count(DISTINCT raw) FROM aa_invalidations").fetchone()[0] == 3
        # As on TimescaleDB, the late rows below the watermark show from the next refresh on.
        assert 400 <= _calls_in(c, "tool_calls_hourly") < 450
        refresh_aggregates(c)
        assert c.execute("SELECT count(*) FROM aa_invalidations").fetchone()[0] == 0
        assert _calls_in(c, "tool_calls_hourly") == 800
        assert_every_rollup_is_the_raw_grouping(c)

        # A session's first metric point turns its events' `counted` off (an UPDATE of old rows).
        c.execute("UPDATE llm_requests SET counted = false WHERE session_id IN ('s3', 's5')")
        refresh_aggregates(c)
        assert_every_rollup_is_the_raw_grouping(c)

        # Rows after the watermark are grouped live: right at once, without a refresh.
        recent = raw_rows(seed=5, t0=datetime.now(timezone.utc) - timedelta(minutes=50), days=1)
        load_raw_rows(fresh_database, recent, refresh=False)
        assert _calls_in(c, "tool_calls_hourly") == 1200
        assert_every_rollup_is_the_raw_grouping(c)


def test_retention_keeps_the_materialised_buckets(fresh_database):
    migrate(fresh_database, timescaledb="off", retention_days=0)
    old = raw_rows(seed=6)  # March 2026
    recent = raw_rows(seed=9, t0=datetime.now(timezone.utc) - timedelta(hours=3), days=1)  # still arriving
    load_raw_rows(fresh_database, tuple(a + b for a, b in zip(old, recent)))
    march = "WHERE bucket < '2026-04-01'"
    with psycopg.connect(fresh_database, autocommit=True) as c:
        before = _rows(c, f"SELECT * FROM tool_calls_by_tool_daily {march}")
        cost = c.execute(f"SELECT sum(estimated_cost_usd) FROM llm_usage_totals_daily {march}").fetchone()[0]
        assert len(before) > 10 and isinstance(cost, Decimal)
        assert c.execute("SELECT aa_apply_retention(30)").fetchone()[0] == 1200  # every March row
        refresh_aggregates(c)
        assert _rows(c, f"SELECT * FROM tool_calls_by_tool_daily {march}") == before
        assert c.execute(f"SELECT sum(estimated_cost_usd) FROM llm_usage_totals_daily {march}").fetchone()[0] == cost


def test_the_service_refreshes_the_rollups_by_itself(fresh_database):
    from agent_analytics.server import Service

    migrate(fresh_database, timescaledb="off", retention_days=0)
    load_raw_rows(fresh_database, raw_rows(seed=8), refresh=False)
    cfg = Config(database_url=fresh_database, ingest_port=free_port(), query_port=free_port(), retention_days=0,
                 ingest_tokens=("t",))
    service = Service(cfg, roles=("ingest",))
    service.start()
    try:
        with psycopg.connect(fresh_database, autocommit=True) as c:
            deadline = time.monotonic() + 30
            while c.execute("SELECT count(*) FROM aa_invalidations").fetchone()[0] and time.monotonic() < deadline:
                time.sleep(0.2)
            assert 350 < _calls_in(c, "tool_calls_hourly_mat") < 400  # all but the latest row's bucket
            assert_every_rollup_is_the_raw_grouping(c)
    finally:
        service.stop()
