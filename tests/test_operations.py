"""Operations: retention removes only what is older than its setting, an upgrade over existing
data keeps every row, and pg_dump / pg_restore round-trip a populated database."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from agent_analytics.cluster import find_pg_bindir
from agent_analytics.sql.migrate import AGGREGATES, aggregate_definitions, load_migrations, migrate

from agent_analytics.sql.rollups import MINUTELY
from tests.harness_support import NO_TSDB, TIMESCALEDB, refresh_aggregates
from .ingest_support import assert_session_totals_match_the_rows
from .rawdata import load_raw_rows, raw_rows

FACTS = ("tool_calls", "llm_requests", "metric_points")
# The aggregates of the first release (0001-0002); those whose definition changed since are
# kept as they were in tests/legacy/aggregates_0002.
LEGACY_AGGREGATES = frozenset({
    "llm_sessions_hourly", "llm_usage_hourly", "session_metrics_hourly", "tool_calls_blocked_hourly",
    "tool_calls_by_actor_daily", "tool_calls_by_actor_hourly", "tool_calls_by_policy_hourly",
    "tool_calls_by_server_daily", "tool_calls_by_server_hourly", "tool_calls_by_tool_daily",
    "tool_calls_by_tool_hourly", "tool_calls_hourly"})
BACKEND_CHOICES = ["off", pytest.param("on", marks=pytest.mark.skipif(not TIMESCALEDB, reason=NO_TSDB))]


def _counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as c:
        return {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in FACTS}


def _aggregates(url: str) -> dict[str, list]:
    # Float sums of buckets grouped live may differ in the last bits with the rows' physical order.
    def exact(row: tuple) -> str:
        return repr(tuple(float(f"{v:.12g}") if isinstance(v, float) else v for v in row))

    with psycopg.connect(url) as c:
        return {a: sorted(map(exact, c.execute(f"SELECT * FROM {a}").fetchall())) for a in AGGREGATES}


@pytest.mark.parametrize("tsdb", BACKEND_CHOICES)
def test_upgrade_over_existing_data_keeps_every_row(fresh_database, tsdb):
    """Stop at the facts migration, load data, then run every later migration and the
    idempotent objects (hypertables are created over existing rows with migrate_data)."""
    migrate(fresh_database, timescaledb=tsdb, upto=2)
    rows = raw_rows(seed=11)
    load_raw_rows(fresh_database, rows, refresh=False)  # no aggregates yet
    before = _counts(fresh_database)
    report = migrate(fresh_database, timescaledb=tsdb, retention_days=0, compress_after_days=0)
    assert [m.name for m in load_migrations() if m.version > 2] == report.applied
    assert _counts(fresh_database) == before == {"tool_calls": 400, "llm_requests": 400, "metric_points": 400}
    with psycopg.connect(fresh_database, autocommit=True) as c:
        refresh_aggregates(c)
        calls = c.execute("SELECT sum(calls) FROM tool_calls_hourly").fetchone()[0]
    assert calls == len(rows[0])


LEGACY = Path(__file__).parent / "legacy" / "aggregates_0002"


def _create_aggregate(c: psycopg.Connection, name: str, select: str, tsdb: str) -> None:
    if tsdb == "on":
        c.execute(f"CREATE MATERIALIZED VIEW {name} WITH (timescaledb.continuous,"
                  f" timescaledb.materialized_only = false) AS {select} WITH NO DATA")
    else:
        c.execute(f"CREATE VIEW {name} AS {select}")


@pytest.mark.parametrize("tsdb", BACKEND_CHOICES)
def test_upgrade_from_the_first_release_with_its_aggregates(fresh_database, tsdb):
    """A database as the first release left it (migrations 0001-0002 and the aggregates as they
    were then, materialised over data) upgrades: later migrations replace the aggregates whose
    definitions changed, and Claude Code sessions' events stop counting where metric points do."""
    migrate(fresh_database, timescaledb=tsdb, upto=2)
    # What the aggregates stand on: hypertables, or plain PostgreSQL's time_bucket.
    prerequisite = Path(__file__).parents[1] / "sql" / (
        "timescaledb/10_hypertables.sql" if tsdb == "on" else "plain/00_time_bucket.sql")
    with psycopg.connect(fresh_database, autocommit=True) as c:
        c.execute(prerequisite.read_text())
        for name, select in aggregate_definitions().items():
            legacy = LEGACY / f"{name}.sql"
            if legacy.exists():
                _create_aggregate(c, name, legacy.read_text(), tsdb)
            elif name in LEGACY_AGGREGATES:
                _create_aggregate(c, name, select, tsdb)
    rows = raw_rows(seed=11)
    load_raw_rows(fresh_database, rows, refresh=False)
    with psycopg.connect(fresh_database, autocommit=True) as c:
        refresh_aggregates(c, sorted(LEGACY_AGGREGATES))  # materialised, as in production
    report = migrate(fresh_database, timescaledb=tsdb, retention_days=0, compress_after_days=0)
    assert [m.name for m in load_migrations() if m.version > 2] == report.applied
    assert set(report.created_aggregates) == set(AGGREGATES) - LEGACY_AGGREGATES | {
        p.stem for p in LEGACY.glob("*.sql")}
    with psycopg.connect(fresh_database, autocommit=True) as c:
        refresh_aggregates(c)
        # Every metric point in the data has a session: those sessions' events no longer count.
        sessions = {r[4] for r in rows[2]}
        counted = dict(c.execute("SELECT session_id, bool_or(counted) FROM llm_requests GROUP BY 1").fetchall())
        assert counted and all(counted[s] is (s not in sessions) for s in counted)
        tokens = c.execute("SELECT sum(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens)"
                           " FROM llm_usage_hourly WHERE counted").fetchone()[0] or 0
    assert tokens == sum(r[8] + r[9] + r[10] + r[11] for r in rows[1] if r[3] not in sessions)
    with psycopg.connect(fresh_database) as c:
        # Migration 0005 counted every session's stored rows into its totals: events' tokens
        # only for sessions without metric points, as on the rows.
        requests, points, input_tokens, tokens = c.execute(
            "SELECT sum(requests), sum(points), sum(input_tokens), sum(tokens) FROM sessions").fetchone()
    assert (requests, points) == (sum(1 for r in rows[1] if r[3]), sum(1 for r in rows[2] if r[4]))
    assert input_tokens == sum(r[8] for r in rows[1] if r[3] and r[3] not in sessions)
    assert tokens == sum(r[8] + r[9] + r[10] + r[11] for r in rows[1] if r[3] and r[3] not in sessions) + sum(
        r[10] for r in rows[2] if r[4] and r[9] == "tokens")


def _fresh_rows(now: datetime, ages_days: list[float]):
    """One fact per table per age."""
    tool_calls, llm, points = raw_rows(seed=5)
    out = ([], [], [])
    for i, age in enumerate(ages_days):
        t = now - timedelta(days=age)
        out[0].append((t,) + tool_calls[i][1:])
        out[1].append((t,) + llm[i][1:])
        out[2].append((t, t - timedelta(minutes=1)) + points[i][2:])
    return out


@pytest.mark.parametrize("tsdb", BACKEND_CHOICES)
def test_retention_removes_only_older_data(fresh_database, tsdb):
    now = datetime.now(timezone.utc)
    ages = [45, 40, 33, 20, 5, 0.5]  # retention 30 days: the first three go
    migrate(fresh_database, timescaledb=tsdb, retention_days=30, compress_after_days=0)
    load_raw_rows(fresh_database, _fresh_rows(now, ages))
    with psycopg.connect(fresh_database, autocommit=True) as c:
        if tsdb == "on":
            jobs = [r[0] for r in c.execute("SELECT job_id FROM timescaledb_information.jobs"
                                            " WHERE proc_name = 'policy_retention'")]
            # The six raw tables, ingest_stats and the per-minute aggregates (going with the raw rows).
            assert len(jobs) == 7 + len(MINUTELY)
            for job in jobs:
                c.execute("CALL run_job(%s)", (job,))
        else:
            c.execute("SELECT aa_apply_retention(30)")
        for table in (*FACTS, "agent_enforcement"):  # (an enforcement fact per call: rawdata.py)
            kept = sorted(round((now - r[0]).total_seconds() / 86400, 1)
                          for r in c.execute(f"SELECT time FROM {table}"))
            # TimescaleDB drops whole one-day chunks, so a row up to a day past the limit may stay.
            assert kept[:3] == [0.5, 5.0, 20.0], table
            assert all(age <= 31 for age in kept), (table, kept)
        # The aggregates keep what the raw tables no longer hold, on both backends, through the
        # refreshes the service runs every minute (TimescaleDB's policies; plain: its own).
        if tsdb == "on":
            for (job,) in c.execute("SELECT job_id FROM timescaledb_information.jobs"
                                    " WHERE proc_name = 'policy_refresh_continuous_aggregate'").fetchall():
                c.execute("CALL run_job(%s)", (job,))
        else:
            refresh_aggregates(c)
        assert c.execute("SELECT sum(calls) FROM tool_calls_hourly").fetchone()[0] == len(ages)
        if tsdb == "on":
            # So do the session totals (the sessions panels read both).
            assert c.execute("SELECT sum(requests) FROM sessions").fetchone()[0] == len(ages)
        else:
            # Plain PostgreSQL's retention recounts the session totals from what remains.
            assert c.execute("SELECT sum(requests) FROM sessions").fetchone()[0] == 3
            assert_session_totals_match_the_rows(c)


def _stats_ages(c: psycopg.Connection, now: datetime) -> list[float]:
    return sorted(round((now - b).total_seconds() / 86400, 1) for (b,) in c.execute("SELECT bucket FROM ingest_stats"))


def _run_retention(c: psycopg.Connection, tsdb: str, days: int) -> None:
    """As the service does: TimescaleDB's retention jobs, or plain PostgreSQL's routine."""
    if tsdb == "on":
        for (job,) in c.execute("SELECT job_id FROM timescaledb_information.jobs"
                                " WHERE proc_name = 'policy_retention'").fetchall():
            c.execute("CALL run_job(%s)", (job,))
    else:
        c.execute("SELECT aa_apply_retention(%s)", (days,))


@pytest.mark.parametrize("tsdb", BACKEND_CHOICES)
@pytest.mark.parametrize("days", [30, 0])
def test_retention_removes_older_ingest_stats(fresh_database, tsdb, days):
    """The receiver's counts go with the raw facts: hours older than AA_RETENTION_DAYS are
    removed, the others kept; with 0 every hour is kept. The rows are written before the last
    migrations (the hypertable on TimescaleDB is made over them), so an upgrade keeps them."""
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    ages = [45, 40, 33, 20, 5, 0.5, 0]
    migrate(fresh_database, timescaledb=tsdb, upto=max(m.version for m in load_migrations()))
    with psycopg.connect(fresh_database, autocommit=True) as c:
        for i, age in enumerate(ages):
            c.execute("INSERT INTO ingest_stats VALUES (%s, 'codex', 'logs', 'codex', '1', 'pc', %s, 'rejected',"
                      " 'bad', 3, %s)", (now - timedelta(days=age), f"user{i}", now - timedelta(days=age)))
    migrate(fresh_database, timescaledb=tsdb, retention_days=days, compress_after_days=0)
    with psycopg.connect(fresh_database, autocommit=True) as c:
        if tsdb == "on":
            assert c.execute("SELECT count(*) FROM timescaledb_information.hypertables"
                             " WHERE hypertable_name = 'ingest_stats'").fetchone()[0] == 1
        assert _stats_ages(c, now) == sorted(ages)
        _run_retention(c, tsdb, days)
        kept = _stats_ages(c, now)
        if days == 0:
            assert kept == sorted(ages)
        else:
            # TimescaleDB drops whole one-day chunks, so an hour up to a day past the limit may stay.
            assert kept == [0, 0.5, 5, 20], kept
        assert c.execute("SELECT sum(records) FROM ingest_stats").fetchone()[0] == 3 * len(kept)


def _pg_tool(name: str) -> str:
    return os.path.join(find_pg_bindir(), name)


@pytest.mark.parametrize("tsdb", BACKEND_CHOICES)
def test_backup_and_restore_round_trip(fresh_database, pg_cluster, tsdb, tmp_path):
    migrate(fresh_database, timescaledb=tsdb, retention_days=0, compress_after_days=0)
    load_raw_rows(fresh_database, raw_rows(seed=3))
    with psycopg.connect(fresh_database, autocommit=True) as c:
        c.execute("INSERT INTO users (id, email) VALUES ('ann@x', 'ann@x')")
        refresh_aggregates(c)
    counts, aggregates = _counts(fresh_database), _aggregates(fresh_database)

    dump = tmp_path / "backup.dump"
    subprocess.run([_pg_tool("pg_dump"), "-Fc", "-f", str(dump), fresh_database], check=True,
                   capture_output=True)
    target_name = f"aa_restored_{tsdb}"
    with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{target_name}"')
    target = pg_cluster.create_database(target_name)
    # The documented procedure (docs/operations.md).
    if tsdb == "on":
        with psycopg.connect(target, autocommit=True) as c:
            c.execute("CREATE EXTENSION timescaledb")
            c.execute("SELECT timescaledb_pre_restore()")
    proc = subprocess.run([_pg_tool("pg_restore"), "--no-owner", "-d", target, str(dump)], capture_output=True,
                          text=True)
    if tsdb == "on":
        with psycopg.connect(target, autocommit=True) as c:
            c.execute("SELECT timescaledb_post_restore()")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _counts(target) == counts
    assert _aggregates(target) == aggregates
    report = migrate(target, timescaledb=tsdb)
    assert not report.changed
