"""Unfiltered duration and time-to-first-token percentiles go through the bands of 100 ms
(datasource/llm_health.py): the band holding the rank, then that band's milliseconds. Rows
placed where that can go wrong (a rank on the last request of a band, many requests in one
millisecond, spread over the daily, hourly, per-minute and raw pieces of a window), the answers
against PostgreSQL's percentile_disc over the raw rows."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from agent_analytics.sql.migrate import migrate
from tests.datasource_support import api
from tests.harness_support import NO_TSDB, TIMESCALEDB, refresh_aggregates

UTC = timezone.utc

# (model, duration ms, time to first token ms or None, how many): "edge" puts P50's rank on the
# last request of band 1 (10 of 20 at 199 ms, after rounding) and P95's on the last of band 2
# (19 of 20 at or below 200 ms); "crowd" puts a thousand requests in one millisecond.
_ROWS = (("edge", 199.4, 99.6, 10), ("edge", 200.0, 100.0, 9), ("edge", 5000.0, None, 1),
         ("crowd", 50.0, 10.0, 3), ("crowd", 1234.0, 300.0, 1000), ("crowd", 1299.0, 399.5, 2),
         ("crowd", 1300.0, 400.0, 1))


def _insert(conn, now: datetime) -> None:
    # Each group of rows spread over yesterday, today's settled hours, the last minutes and the
    # current minute: every piece of the window holds some.
    ages = (timedelta(hours=30), timedelta(hours=20), timedelta(minutes=90), timedelta(minutes=3),
            timedelta(seconds=1))
    k = 0
    for model, latency, ttft, n in _ROWS:
        for i in range(n):
            k += 1
            conn.execute("INSERT INTO llm_requests (time, source_key, source, provider, model, latency_ms, ttft_ms)"
                         " VALUES (%s, %s, 'claude_code', 'anthropic', %s, %s, %s)",
                         (now - ages[i % len(ages)], k.to_bytes(4, "big"), model, latency, ttft))


# (duration ms, how many, hours before the window's start): the previous period's own requests,
# on the day before the window (its daily piece) and in its last hour (an hourly one), so that the
# stat's previous value differs from the current one.
_BEFORE = ((777.0, 19, 1), (3333.0, 1, 26), (4444.0, 2, 1))


def _insert_before(conn, start: datetime) -> None:
    k = 10_000
    for latency, n, hours in _BEFORE:
        for _ in range(n):
            k += 1
            conn.execute("INSERT INTO llm_requests (time, source_key, source, provider, model, latency_ms)"
                         " VALUES (%s, %s, 'claude_code', 'anthropic', 'before', %s)",
                         (start - timedelta(hours=hours), k.to_bytes(4, "big"), latency))


def _p95(conn, start: datetime, end: datetime) -> float | None:
    return conn.execute("SELECT percentile_disc(0.95) WITHIN GROUP (ORDER BY round(latency_ms)) FROM llm_requests"
                        " WHERE time >= %s AND time < %s", (start, end)).fetchone()[0]


def _oracle(conn, column: str, start: datetime, end: datetime) -> dict:
    rows = conn.execute(
        f"SELECT model, count(*), percentile_disc(0.5) WITHIN GROUP (ORDER BY round({column})),"
        f" percentile_disc(0.95) WITHIN GROUP (ORDER BY round({column})) FROM llm_requests"
        f" WHERE time >= %s AND time < %s AND {column} IS NOT NULL GROUP BY model", (start, end)).fetchall()
    return {m: (n, p50, p95) for m, n, p50, p95 in rows}


def test_percentiles_through_the_bands_match_percentile_disc(client, conn):
    now = datetime.now(UTC)
    _insert(conn, now)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    _insert_before(conn, start)
    refresh_aggregates(conn)
    end = now + timedelta(seconds=1)  # past the last row, inside a minute: a raw edge
    durations, ttfts = _oracle(conn, "latency_ms", start, end), _oracle(conn, "ttft_ms", start, end)
    assert durations["edge"] == (20, 199, 200) and durations["crowd"] == (1006, 1234, 1234)

    body = api(client, "llm_latency_by_model", start, end)
    assert {"llm_latency_bands_daily", "llm_ttft_bands_daily"} <= set(body["meta"]["relations"])
    got = {r["model"]: r for r in body["rows"]}
    assert set(got) == set(durations)
    for model, r in got.items():
        assert (r["requests"], r["p50_ms"], r["p95_ms"]) == durations[model], model
        assert (r["ttft_requests"], r["ttft_p50_ms"], r["ttft_p95_ms"]) == ttfts[model], model

    # The stat: both periods in one statement, through the bands over every model.
    stat = api(client, "llm_latency_p95", start, end)
    assert "llm_latency_totals_bands_daily" in stat["meta"]["relations"]
    before, after = (datetime.fromtimestamp(stat["meta"][k] / 1000, UTC) for k in ("previous_from", "previous_to"))
    assert after == start and before < start - timedelta(hours=26)
    assert stat["rows"][0]["value"] == _p95(conn, start, end) == 1234
    assert stat["rows"][0]["previous"] == _p95(conn, before, after) == 4444


# The per-model millisecond rollups' indexes, on either backend (TimescaleDB's on the continuous
# aggregate's materialisation, plain PostgreSQL's on the rollup's table of buckets, `_mat`).
_BY_MODEL_INDEXES = r"^llm_(latency|ttft)_by_model_(minutely|hourly|daily)(_mat)?_value$"


def _by_model_indexes(c) -> dict[str, str]:
    return dict(c.execute("SELECT indexname, indexdef FROM pg_indexes WHERE indexname ~ %s",
                          (_BY_MODEL_INDEXES,)).fetchall())


@pytest.mark.parametrize("tsdb", ["off", pytest.param("on", marks=pytest.mark.skipif(not TIMESCALEDB, reason=NO_TSDB))])
def test_upgrade_gives_the_per_model_index_the_request_count(fresh_database, tsdb):
    """A database migrated before 0020, whose per-model millisecond rollups are indexed on
    (provider, model, milliseconds, bucket), upgrades in place to the index holding the request
    count too (the probe of a band reads the index alone)."""
    migrate(fresh_database, timescaledb=tsdb, retention_days=0)
    with psycopg.connect(fresh_database, autocommit=True) as c:
        declared = _by_model_indexes(c)
        assert len(declared) == 6 and all(d.endswith(", bucket, requests)") for d in declared.values()), declared
        for name, definition in declared.items():  # the shape before 0020, under the same name
            [(schema,)] = c.execute("SELECT schemaname FROM pg_indexes WHERE indexname = %s", (name,)).fetchall()
            c.execute(f'DROP INDEX "{schema}"."{name}"')
            c.execute(definition.replace(", requests)", ")"))
        assert all(d.endswith(", bucket)") for d in _by_model_indexes(c).values())
        c.execute("DELETE FROM schema_migrations WHERE version = 20")
    report = migrate(fresh_database, timescaledb=tsdb, retention_days=0)
    assert [m for m in report.applied if "0020" in str(m)], report.applied
    with psycopg.connect(fresh_database, autocommit=True) as c:
        assert _by_model_indexes(c) == declared
