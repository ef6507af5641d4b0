"""The test harness itself: `-m "not db"` leaves out every test that reaches the database without
anyone marking it and starts no cluster, a reset database is empty in its tables and its
aggregates however the previous test left them, and the tests' refresh materialises what the
service's does."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from agent_analytics.sql import aggregates
from agent_analytics.sql.migrate import AGGREGATES, MATERIALISED
from tests.harness_support import refresh_aggregates, reset_database
from tests.rawdata import load_raw_rows, raw_rows

ROOT = Path(__file__).resolve().parent.parent


def test_not_db_runs_the_unit_tests_alone_without_a_cluster():
    # test_ingest_directory's tests take client, conn or db_url, none of them marked by hand.
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "not db", "-v", "-p", "no:cacheprovider",
                           "tests/test_ingest_directory.py", "tests/test_config.py"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "test_ingest_directory.py::" not in proc.stdout
    assert "tests/test_config.py::" in proc.stdout and " deselected" in proc.stdout
    assert "test cluster: not started" in proc.stdout


def _counts(conn: psycopg.Connection) -> dict[str, int]:
    tables = [r[0] for r in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        " AND tablename NOT IN ('schema_meta', 'schema_migrations', 'aa_rollups')")]
    return {name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in [*tables, *AGGREGATES]}


def test_reset_empties_every_table_and_aggregate(db_url, conn):
    tool_calls, llm, points = raw_rows()
    load_raw_rows(db_url)  # facts, session totals and every aggregate
    conn.execute("INSERT INTO users (id, email) VALUES ('ann@x', 'ann@x')")
    # Raw rows gone but their aggregates still materialised: the reset must look at both.
    conn.execute("DELETE FROM tool_calls")
    held = {name for name, n in _counts(conn).items() if n}
    assert {"users", "llm_requests", "sessions", "tool_calls_hourly", "llm_usage_by_model_daily"} <= held
    assert "tool_calls" not in held

    reset_database(db_url)
    assert {name: n for name, n in _counts(conn).items() if n} == {}
    # What is loaded next is aggregated from scratch, as on a new database.
    load_raw_rows(db_url, (tool_calls[:100], llm[:50], points[:10]))
    assert conn.execute("SELECT sum(calls) FROM tool_calls_hourly").fetchone()[0] == 100
    assert conn.execute("SELECT sum(requests) FROM llm_usage_by_model_daily").fetchone()[0] == 50
    reset_database(db_url)
    reset_database(db_url)  # nothing held: nothing to do
    refresh_aggregates(conn)
    assert {name: n for name, n in _counts(conn).items() if n} == {}


@pytest.mark.parametrize("table", ["tool_calls", "llm_requests", "metric_points"])
def test_reset_after_rows_of_one_table(db_url, conn, table):
    """Rows in one raw table only: its aggregates are emptied, and the next rows of every table
    are aggregated in full."""
    rows = raw_rows()
    only = tuple(r if name == table else [] for name, r in zip(("tool_calls", "llm_requests", "metric_points"), rows))
    load_raw_rows(db_url, only)
    reset_database(db_url)
    assert {name: n for name, n in _counts(conn).items() if n} == {}
    load_raw_rows(db_url, rows)
    assert conn.execute("SELECT sum(calls) FROM tool_calls_totals_daily").fetchone()[0] == len(rows[0])
    assert conn.execute("SELECT sum(requests) FROM llm_usage_totals_hourly").fetchone()[0] == len(rows[1])


def _materialised(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    """Every aggregate's materialised rows (not the views, which add the raw rows not yet
    materialised), sorted; sums of floats to 6 decimals, as their order of addition varies
    from one grouping of the same rows to the next."""
    tables = {name: f'"{name}{MATERIALISED}"' for name in AGGREGATES}
    if conn.execute("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'timescaledb')").fetchone()[0]:
        tables = {view: f'"{schema}"."{table}"' for view, schema, table in conn.execute(
            "SELECT view_name, materialization_hypertable_schema, materialization_hypertable_name"
            " FROM timescaledb_information.continuous_aggregates")}
    return {name: sorted((tuple(round(v, 6) if isinstance(v, float) else v for v in r)
                          for r in conn.execute(f"SELECT * FROM {table}")), key=repr)
            for name, table in tables.items()}


def test_the_tests_refresh_materialises_what_the_services_does(db_url, conn):
    """harness_support.refresh_aggregates is the service's refresh with each TimescaleDB window in
    one batch, not TimescaleDB's batches of 10 buckets, and migrate's fill batches a day of
    buckets: every aggregate materialises the same rows."""
    t0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
    # Three hours of rows: the service's batches stay few (18 for a per-minute aggregate).
    rows = tuple([r for r in table if r[0] < t0 + timedelta(hours=3)] for table in raw_rows(t0=t0, days=1))
    load_raw_rows(db_url, rows, refresh=False, health=True)
    aggregates.refresh_aggregates(conn)
    by_the_service = _materialised(conn)
    assert set(by_the_service) == set(AGGREGATES)
    assert [name for name, held in by_the_service.items() if not held] == []
    reset_database(db_url)
    load_raw_rows(db_url, rows, refresh=False, health=True)
    refresh_aggregates(conn)
    assert _materialised(conn) == by_the_service
    # And migrate's fill of the aggregates it creates, in batches of a day's buckets.
    reset_database(db_url)
    load_raw_rows(db_url, rows, refresh=False, health=True)
    aggregates.refresh_aggregates(conn, by_day=True)
    assert _materialised(conn) == by_the_service
