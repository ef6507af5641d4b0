"""Unfiltered duration and time-to-first-token percentiles go through the bands of 100 ms
(datasource/llm_health.py): the band holding the rank, then that band's milliseconds. Rows
placed where that can go wrong (a rank on the last request of a band, many requests in one
millisecond, spread over the daily, hourly, per-minute and raw pieces of a window), the answers
against PostgreSQL's percentile_disc over the raw rows."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.datasource_support import api
from tests.harness_support import refresh_aggregates

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


def _oracle(conn, column: str, start: datetime, end: datetime) -> dict:
    rows = conn.execute(
        f"SELECT model, count(*), percentile_disc(0.5) WITHIN GROUP (ORDER BY round({column})),"
        f" percentile_disc(0.95) WITHIN GROUP (ORDER BY round({column})) FROM llm_requests"
        f" WHERE time >= %s AND time < %s AND {column} IS NOT NULL GROUP BY model", (start, end)).fetchall()
    return {m: (n, p50, p95) for m, n, p50, p95 in rows}


def test_percentiles_through_the_bands_match_percentile_disc(client, conn):
    now = datetime.now(UTC)
    _insert(conn, now)
    refresh_aggregates(conn)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
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

    [every] = conn.execute("SELECT percentile_disc(0.95) WITHIN GROUP (ORDER BY round(latency_ms)) FROM llm_requests"
                           " WHERE time >= %s AND time < %s", (start, end)).fetchone()
    stat = api(client, "llm_latency_p95", start, end)
    assert "llm_latency_bands_daily" in stat["meta"]["relations"]
    assert stat["rows"][0]["value"] == every
