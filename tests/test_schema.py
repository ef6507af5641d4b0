"""The schema: migrations are idempotent, concurrent-safe and immutable; aggregates are continuous
aggregates with real-time aggregation on TimescaleDB and the same made by hand on plain PostgreSQL
(materialised buckets and a view adding the raw rows after the watermark), with the same numbers
on both."""
from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import psycopg
import pytest

from agent_analytics.sql.migrate import AGGREGATES, MigrationError, load_migrations, migrate
from agent_analytics.sql.rollups import MINUTELY

from tests.harness_support import NO_TSDB, TIMESCALEDB
from .rawdata import enforcement_rows as _enforcement_rows, load_raw_rows as _load, productivity_rows
from .rawdata import raw_rows as _raw_rows


def _catalog(url: str) -> list[tuple]:
    with psycopg.connect(url) as c:
        return c.execute(
            "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1, 2").fetchall()


@pytest.mark.parametrize("wanted", ["off", pytest.param("on", marks=pytest.mark.skipif(not TIMESCALEDB, reason=NO_TSDB))])
def test_migrate_twice_changes_nothing(fresh_database, wanted):
    first = migrate(fresh_database, timescaledb=wanted)
    assert first.backend == ("timescaledb" if wanted == "on" else "plain")
    assert [m.name for m in load_migrations()] == first.applied
    assert set(first.created_aggregates) == set(AGGREGATES)
    before = _catalog(fresh_database)
    second = migrate(fresh_database, timescaledb=wanted)
    assert not second.changed
    assert second.applied == [] and second.created_aggregates == []
    assert _catalog(fresh_database) == before
    # Aggregates it filled are analysed: the planner does not take them for empty meanwhile.
    with psycopg.connect(fresh_database) as c:
        if wanted == "on":
            tables = [r[0] for r in c.execute(
                "SELECT materialization_hypertable_name FROM timescaledb_information.continuous_aggregates")]
        else:
            tables = [a + "_mat" for a in AGGREGATES]
        analysed = {r[0] for r in c.execute("SELECT relname FROM pg_stat_user_tables"
                                            " WHERE last_analyze IS NOT NULL AND relname = ANY(%s)", (tables,))}
        assert analysed == set(tables) and len(tables) == len(AGGREGATES)


def test_plain_aggregates_are_views_over_materialised_rollups(fresh_database):
    migrate(fresh_database, timescaledb="off")
    with psycopg.connect(fresh_database) as c:
        views = {r[0] for r in c.execute("SELECT viewname FROM pg_views WHERE schemaname = 'public'")}
        assert set(AGGREGATES) <= views
        tables = {r[0] for r in c.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {a + "_mat" for a in AGGREGATES} <= tables
        assert {r[0] for r in c.execute("SELECT name FROM aa_rollups")} == set(AGGREGATES)
        assert c.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()[0] == 0


@pytest.mark.skipif(not TIMESCALEDB, reason=NO_TSDB)
@pytest.mark.parametrize("days", [1, 2, 3, 30])
def test_timescaledb_refresh_windows_stop_at_retention(fresh_database, days):
    """Refreshing where retention dropped the raw chunks would empty the aggregates' old buckets:
    the windows reach back as far as raw rows are kept (daily ones at least the 3 days a window of
    two buckets needs)."""
    migrate(fresh_database, timescaledb="on", retention_days=days, compress_after_days=0)
    with psycopg.connect(fresh_database) as c:
        offsets = dict(c.execute(
            "SELECT hypertable_name, (config->>'start_offset')::interval FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_refresh_continuous_aggregate'").fetchall())
    assert set(offsets) == set(AGGREGATES)
    for name, offset in offsets.items():
        assert offset == timedelta(days=max(days, 3) if name.endswith("_daily") else days), name


@pytest.mark.skipif(not TIMESCALEDB, reason=NO_TSDB)
def test_timescaledb_aggregates_are_realtime_continuous_aggregates(fresh_database):
    migrate(fresh_database, timescaledb="on", retention_days=30, compress_after_days=7)
    with psycopg.connect(fresh_database) as c:
        rows = dict(c.execute(
            "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates").fetchall())
        assert set(rows) == set(AGGREGATES)
        assert not any(rows.values()), "real-time aggregation must be on (materialized_only = false)"
        hypertables = {r[0] for r in c.execute("SELECT hypertable_name FROM timescaledb_information.hypertables"
                                               " WHERE hypertable_schema = 'public'")}
        assert {"tool_calls", "llm_requests", "llm_errors", "metric_points", "ingest_stats",
                "agent_enforcement", "productivity_points"} <= hypertables
        chunks = dict(c.execute("SELECT hypertable_name, time_interval FROM timescaledb_information.dimensions"
                                " WHERE hypertable_schema = 'public'").fetchall())
        day = timedelta(days=1)
        assert {t: chunks[t] for t in ("tool_calls", "llm_requests", "llm_errors", "metric_points", "ingest_stats",
                                       "agent_enforcement", "productivity_points")} == {
            "tool_calls": day, "llm_requests": day, "llm_errors": 7 * day, "metric_points": day,
            "ingest_stats": day, "agent_enforcement": day, "productivity_points": 7 * day}
        jobs = c.execute("SELECT proc_name, hypertable_name FROM timescaledb_information.jobs"
                         " WHERE proc_name IN ('policy_refresh_continuous_aggregate', 'policy_retention',"
                         " 'policy_compression')").fetchall()
        kinds = {p for p, _ in jobs}
        assert kinds == {"policy_refresh_continuous_aggregate", "policy_retention", "policy_compression"}
        # The raw rows and, going with them, the per-minute aggregates (the edges of windows).
        assert sorted(h for p, h in jobs if p == "policy_retention") == sorted([
            "agent_enforcement", "ingest_stats", "llm_errors", "llm_requests", "metric_points", "productivity_points",
            "tool_calls", *(a for a in AGGREGATES if a.endswith("_minutely"))])
        assert sorted(h for p, h in jobs if p == "policy_compression") == [
            "agent_enforcement", "llm_errors", "llm_requests", "metric_points", "productivity_points", "tool_calls"]
        offsets = dict(c.execute(
            "SELECT hypertable_name, config->>'end_offset' FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_refresh_continuous_aggregate'").fetchall())
        assert offsets == {a: "00:00:00" if a.endswith("_minutely") else "00:01:00" for a in AGGREGATES}
        # The per-minute ones run 2 seconds past each minute, on a fixed schedule.
        starts = c.execute("SELECT hypertable_name, fixed_schedule, extract(second FROM initial_start)"
                           " FROM timescaledb_information.jobs WHERE proc_name = 'policy_refresh_continuous_aggregate'"
                           " AND hypertable_name LIKE '%%\\_minutely'").fetchall()
        assert len(starts) == len(MINUTELY) and all(fixed and second == 2 for _, fixed, second in starts), starts


def test_concurrent_migrations_apply_once(fresh_database):
    errors: list[BaseException] = []

    def run():
        try:
            migrate(fresh_database, timescaledb="auto")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with psycopg.connect(fresh_database) as c:
        versions = [r[0] for r in c.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [m.version for m in load_migrations()]


def test_changed_migration_is_refused(fresh_database):
    migrate(fresh_database, timescaledb="off")
    with psycopg.connect(fresh_database, autocommit=True) as c:
        c.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    with pytest.raises(MigrationError, match="immutable"):
        migrate(fresh_database, timescaledb="off")


def test_backend_is_kept_once_chosen(fresh_database):
    migrate(fresh_database, timescaledb="off")
    report = migrate(fresh_database, timescaledb="auto")
    assert report.backend == "plain"
    if TIMESCALEDB:
        assert any("stays so" in n for n in report.notes)
        with pytest.raises(MigrationError):
            migrate(fresh_database, timescaledb="on")


def _aggregate_contents(url: str) -> dict[str, list]:
    out = {}
    with psycopg.connect(url) as c:
        for name in AGGREGATES:
            cur = c.execute(f"SELECT * FROM {name}")
            cols = [d.name for d in cur.description]
            rows = [tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in cur.fetchall()]
            out[name] = (cols, sorted(rows, key=repr))
    return out


@pytest.mark.skipif(not TIMESCALEDB, reason=NO_TSDB)
def test_same_rows_give_same_aggregates_on_both_backends(pg_cluster):
    from tests.harness_support import migrated_database, reset_database

    urls = {b: migrated_database(pg_cluster, b) for b in ("plain", "timescaledb")}
    for url in urls.values():
        reset_database(url)
        _load(url, health=True)
    plain, tsdb = (_aggregate_contents(urls[b]) for b in ("plain", "timescaledb"))
    for name in AGGREGATES:
        assert plain[name][0] == tsdb[name][0], f"{name}: columns differ"
        assert len(plain[name][1]) >= (3 if name.endswith("_daily") else 10)  # the data spans three days
        assert plain[name][1] == tsdb[name][1], f"{name}: contents differ between backends"
    for url in urls.values():
        reset_database(url)


def test_aggregates_match_raw_rows(db_url):
    """Independent check: totals recomputed in Python from the rows we loaded."""
    _load(db_url)
    tool_calls, llm, points = _raw_rows()
    with psycopg.connect(db_url) as c:
        by_outcome = dict(c.execute("SELECT outcome, sum(calls) FROM tool_calls_hourly GROUP BY 1").fetchall())
        tokens, cost, requests = c.execute(
            "SELECT sum(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens),"
            " sum(estimated_cost_usd), sum(requests) FROM llm_usage_hourly").fetchone()
        sess = c.execute("SELECT sum(requests) FROM llm_sessions_hourly WHERE session_id = 's3'").fetchone()[0]
        mp = c.execute("SELECT sum(tokens) FROM session_metrics_hourly").fetchone()[0]
        # Every rollup of the same rows holds the same totals.
        rollup_tokens = [c.execute(f"SELECT sum(input_tokens + output_tokens + cache_read_tokens"
                                   f" + cache_write_tokens) FROM {name}").fetchone()[0]
                         for name in ("llm_usage_by_model_hourly", "llm_usage_by_model_daily", "llm_usage_by_user_daily",
                                      "llm_sessions_daily", "llm_usage_totals_hourly", "llm_usage_totals_daily",
                                      "llm_usage_per_user_hourly", "llm_usage_per_user_daily",
                                      *(f"llm_usage_by_agent{k}_{w}" for k in ("", "_user") for w in ("hourly", "daily")))]
        rollup_points = [c.execute(f"SELECT sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0)"
                                   f" + coalesce(cache_read_tokens, 0) + coalesce(cache_write_tokens, 0)"
                                   f" + coalesce(other_tokens, 0)) FROM {name}").fetchone()[0]
                         for name in ("llm_metric_usage_hourly", "llm_metric_usage_by_model_hourly",
                                      "llm_metric_usage_by_model_daily", "llm_metric_usage_by_user_daily",
                                      "llm_metric_usage_totals_hourly", "llm_metric_usage_totals_daily",
                                      "llm_metric_usage_per_user_hourly", "llm_metric_usage_per_user_daily",
                                      *(f"llm_metric_usage_by_agent{k}_{w}" for k in ("", "_user")
                                        for w in ("hourly", "daily")))]
        daily_points = c.execute("SELECT sum(tokens) FROM session_metrics_daily").fetchone()[0]
        call_totals = [c.execute(f"SELECT sum(calls) FROM {name}").fetchone()[0]
                       for name in ("tool_calls_totals_hourly", "tool_calls_totals_daily",
                                    "tool_calls_by_user_hourly", "tool_calls_by_user_daily")]
        decisions = dict(c.execute("SELECT (outcome, decision_source, blocked)::text, sum(events)"
                                   " FROM agent_decisions_hourly GROUP BY 1").fetchall())
        modes = dict(c.execute("SELECT permission_mode, count(DISTINCT session_id)"
                               " FROM agent_permission_modes_hourly GROUP BY 1").fetchall())
        daily_modes = dict(c.execute("SELECT permission_mode, count(DISTINCT session_id)"
                                     " FROM agent_permission_modes_daily GROUP BY 1").fetchall())
        failures = dict(c.execute("SELECT (mcp_server_id, error_code)::text, sum(events) FROM mcp_connections_hourly"
                                  " WHERE outcome = 'failed' GROUP BY 1").fetchall())
    enforcement = _enforcement_rows(tool_calls)
    # (outcome, decision source, blocked) as PostgreSQL writes a row: (accept,config,f)
    assert decisions == dict(Counter(f"({r[9]},{r[10]},{'t' if r[13] else 'f'})" for r in enforcement
                                     if r[3] != "mcp_connection"))
    assert modes == {m: len({r[6] for r in enforcement if r[3] == "decision" and r[11] == m})
                     for m in {r[11] for r in enforcement if r[3] == "decision" and r[11]}} == daily_modes
    assert failures == dict(Counter(f"({r[7]},{r[12]})" for r in enforcement
                                    if r[3] == "mcp_connection" and r[9] == "failed"))
    for outcome in ("ok", "error", "blocked"):
        assert by_outcome[outcome] == sum(1 for r in tool_calls if r[8] == outcome)
    assert tokens == sum(r[8] + r[9] + r[10] + r[11] for r in llm)
    assert cost == sum(r[13] for r in llm if r[13] is not None)
    assert requests == len(llm)
    assert sess == sum(1 for r in llm if r[3] == "s3")
    assert mp == sum(r[10] for r in points if r[9] == "tokens")
    assert rollup_tokens == [tokens] * 12
    assert rollup_points == [mp] * 12 and daily_points == mp
    assert call_totals == [len(tool_calls)] * 4


PRODUCTIVITY = ("lines_added", "lines_removed", "commits", "pull_requests", "edits_accepted", "edits_rejected",
                "active_seconds")


def test_productivity_aggregates_match_raw_rows(db_url):
    """Each productivity rollup holds, per metric, the sum of the raw points (computed here)."""
    _load(db_url)
    rows = productivity_rows(_raw_rows()[1])
    want = [sum(r[13] for r in rows if r[8] == m) for m in PRODUCTIVITY]
    assert all(want)
    with psycopg.connect(db_url) as c:
        for name in ("productivity_hourly", "productivity_per_user_hourly", "productivity_per_user_daily",
                     "productivity_totals_hourly", "productivity_totals_daily"):
            got = c.execute(f"SELECT {', '.join(f'sum({m})' for m in PRODUCTIVITY)} FROM {name}").fetchone()
            assert list(got) == want, name
        by_model = dict(c.execute("SELECT model, sum(lines_added) FROM productivity_per_user_daily"
                                  " WHERE lines_added IS NOT NULL GROUP BY 1").fetchall())
        assert by_model == {m: sum(r[13] for r in rows if r[8] == "lines_added" and r[7] == m)
                            for m in {r[7] for r in rows if r[8] == "lines_added"}}


def test_serve_refuses_a_schema_that_is_behind(fresh_database):
    import subprocess
    import sys

    from agent_analytics.sql.migrate import pending

    migrate(fresh_database, timescaledb="off", upto=1)
    missing = pending(fresh_database)
    assert "0002_facts.sql" in missing and any(m.startswith("aggregate ") for m in missing)
    proc = subprocess.run([sys.executable, "-m", "agent_analytics.cli", "serve"], capture_output=True, text=True,
                          env={"DATABASE_URL": fresh_database, "PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.returncode != 0 and "run `agent-analytics migrate` first" in proc.stderr
    migrate(fresh_database, timescaledb="off")
    assert pending(fresh_database) == []
