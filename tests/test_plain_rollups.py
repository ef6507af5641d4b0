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
from agent_analytics.sql.migrate import AGGREGATES, aggregate_definitions, migrate
from tests.harness_support import refresh_aggregates
from tests.rawdata import load_raw_rows, raw_rows

pytestmark = pytest.mark.usefixtures("plain_backend")


@pytest.fixture
def plain_backend(request):
    # The TimescaleDB path is TimescaleDB's own continuous aggregates (test_datasource_rollups).
    from tests.harness_support import backends_ran

    backends_ran.add("plain")


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
    load_raw_rows(fresh_database, raw_rows(seed=3), health=True)  # three days of March 2026, then a refresh
    with psycopg.connect(fresh_database, autocommit=True) as c:
        # Materialised through the latest row's bucket (more than an hour ago), nothing past it.
        assert {n for (n,) in c.execute("SELECT name FROM aa_rollups WHERE watermark BETWEEN '2026-03-03'"
                                        " AND '2026-03-05'")} == set(AGGREGATES)
        assert _calls_in(c, "tool_calls_hourly_mat") == 400
        assert_every_rollup_is_the_raw_grouping(c)

        # Late rows below the watermark: recorded, then re-materialised by the refresh.
        load_raw_rows(fresh_database, raw_rows(seed=4), refresh=False, health=True)
        # (tool_calls, llm_requests, metric_points, agent_enforcement, productivity_points and llm_errors)
        assert c.execute("SELECT count(DISTINCT raw) FROM aa_invalidations").fetchone()[0] == 6
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
        # Every March row: 400 of each raw_rows list, and an enforcement fact per call.
        assert c.execute("SELECT aa_apply_retention(30)").fetchone()[0] == 2000
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
            assert _calls_in(c, "tool_calls_hourly_mat") == 400
            assert_every_rollup_is_the_raw_grouping(c)
    finally:
        service.stop()


def test_deletes_and_truncate_reach_the_rollups_but_retention_does_not(fresh_database):
    migrate(fresh_database, timescaledb="off", retention_days=0)
    load_raw_rows(fresh_database, raw_rows(seed=10))
    with psycopg.connect(fresh_database, autocommit=True) as c:
        c.execute("DELETE FROM tool_calls WHERE outcome = 'ok'")  # a cleanup, say
        c.execute("DELETE FROM llm_requests WHERE user_id = 'bob@x'")  # an erasure
        refresh_aggregates(c)
        assert _calls_in(c, "tool_calls_hourly") == c.execute("SELECT count(*) FROM tool_calls").fetchone()[0] < 400
        assert_every_rollup_is_the_raw_grouping(c)
        c.execute("TRUNCATE tool_calls")
        assert _calls_in(c, "tool_calls_hourly") == _calls_in(c, "tool_calls_by_user_daily") == 0
        assert_every_rollup_is_the_raw_grouping(c)


def test_a_late_row_at_the_retention_edge_keeps_the_history_and_a_quiet_table_is_kept_whole(fresh_database):
    """A refresh never recounts a bucket retention cut into (it would count only what remains),
    and the last bucket of a table that stopped receiving rows is materialised like the rest."""
    migrate(fresh_database, timescaledb="off", retention_days=0)
    now = datetime.now(timezone.utc)
    load_raw_rows(fresh_database, raw_rows(seed=12, t0=now - timedelta(days=33), days=3))  # then nothing
    with psycopg.connect(fresh_database, autocommit=True) as c:
        daily = _rows(c, "SELECT * FROM tool_calls_by_tool_daily")
        assert _calls_in(c, "tool_calls_totals_daily") == 400
        c.execute("SELECT aa_apply_retention(31)")  # the cutoff falls inside the data
        assert 0 < c.execute("SELECT count(*) FROM tool_calls").fetchone()[0] < 400
        refresh_aggregates(c)
        assert _rows(c, "SELECT * FROM tool_calls_by_tool_daily") == daily
        # A late row just after the cutoff, in the day bucket the cutoff cuts.
        late = tuple(rows[:1] for rows in raw_rows(seed=13, t0=now - timedelta(days=31) + timedelta(minutes=1), days=1))
        late = tuple([(now - timedelta(days=31) + timedelta(minutes=1),) + r[1:] for r in rows] for rows in late)
        load_raw_rows(fresh_database, late, refresh=False)
        refresh_aggregates(c)
        assert _calls_in(c, "tool_calls_totals_daily") == 400  # the cut day keeps its count; no day lost
        assert _rows(c, "SELECT * FROM tool_calls_by_tool_daily WHERE bucket < now() - interval '32 days'") == [
            r for r in daily if r[0] < now - timedelta(days=32)]


def _raw_rows_read(plan: dict, raw: str) -> int:
    """Rows the plan's scans of `raw` produced or filtered out (0: never read a row)."""
    read = 0
    if plan.get("Relation Name") == raw:
        read += sum(plan.get(k, 0) for k in ("Actual Rows", "Rows Removed by Filter", "Rows Removed by Index Recheck"))
    return read + sum(_raw_rows_read(p, raw) for p in plan.get("Plans", []))


def test_a_question_before_the_watermark_reads_no_raw_rows(fresh_database):
    """The raw rows after a watermark are grouped live, but a query that ends before the
    watermark's bucket skips them: PostgreSQL cannot see that `bucket < X` rules them out, so the
    watermark's own bucket is grouped under a bucket value it tests once."""
    migrate(fresh_database, timescaledb="off", retention_days=0)
    load_raw_rows(fresh_database, raw_rows(seed=5), refresh=False)  # 1-3 March 2026
    with psycopg.connect(fresh_database, autocommit=True) as c:
        # Refreshed to midday, the daily rollups' watermark is that day's start; to late evening,
        # the hourly ones' is its last hour (nothing after either but the watermark's bucket).
        for up_to, name, mark in (("2026-03-03 12:30", "tool_calls_by_user_daily", "2026-03-03"),
                                  ("2026-03-03 12:30", "llm_usage_totals_daily", "2026-03-03"),
                                  ("2026-03-03 23:30", "tool_calls_by_user_hourly", "2026-03-03 23:00"),
                                  ("2026-03-03 23:30", "llm_usage_totals_hourly", "2026-03-03 23:00")):
            c.execute("SELECT aa_refresh_rollups(%s::timestamptz)", (up_to + "+00",))
            assert c.execute("SELECT watermark = %s::timestamptz FROM aa_rollups WHERE name = %s",
                             (mark + "+00", name)).fetchone()[0], name
            # Live rows in the watermark's bucket: every rollup still answers exactly.
            assert_every_rollup_is_the_raw_grouping(c)
            raw = "llm_requests" if name.startswith("llm") else "tool_calls"
            [[plan]] = c.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT sum(1) FROM {name}"
                                 " WHERE bucket >= '2026-03-01' AND bucket < %s::timestamptz", (mark + "+00",)).fetchone()
            assert _raw_rows_read(plan["Plan"], raw) == 0, name
            # The same question reaching into the watermark's bucket reads them.
            [[plan]] = c.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT sum(1) FROM {name}"
                                 " WHERE bucket >= '2026-03-01'").fetchone()
            assert _raw_rows_read(plan["Plan"], raw) > 0, name


def test_buckets_stay_utc_across_a_dst_change_in_the_session_zone(fresh_database):
    """New York leaves daylight time on 1 November 2026: in a session in that zone, '1 day' added
    to a timestamp is 25 hours there. Watermarks stay on UTC bucket boundaries and the live
    parts group every row into its own bucket."""
    migrate(fresh_database, timescaledb="off", retention_days=0)
    # Rows until 1 November 23:59 UTC; refreshed to midday, then as far as they go (the bucket
    # after the latest row's: 1 November + 1 day, 25 hours later in New York).
    rows = raw_rows(seed=6, t0=datetime(2026, 10, 31, tzinfo=timezone.utc), days=2)
    load_raw_rows(fresh_database, rows, refresh=False, health=True)
    with psycopg.connect(fresh_database, autocommit=True, options="-c TimeZone=America/New_York") as c:
        for up_to in ("2026-11-01 12:30+00", None):
            c.execute("SELECT aa_refresh_rollups(%s::timestamptz)", (up_to,))
            for name, mark in c.execute("SELECT name, watermark FROM aa_rollups").fetchall():
                utc = mark.astimezone(timezone.utc)
                assert utc.second == 0 and (utc.minute == 0 or name.endswith("_minutely")) \
                    and (utc.hour == 0 or not name.endswith("_daily")), (name, utc)
            assert_every_rollup_is_the_raw_grouping(c)
