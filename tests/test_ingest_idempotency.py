"""A retried batch changes nothing; two receivers given the same batch at once store it once;
cumulative series stay exact whatever order their points arrive in."""
from __future__ import annotations

import threading
import time

import requests

from agent_analytics.app import create_app
from tests.ingest_support import (Server, assert_session_totals_match_the_rows, cumulative_token_usage, fixture_bytes,
                                  headers, logs_fixture, post)

FIXTURES = [("/v1/logs", "claude-code-2.1.328-logs-1.pb"), ("/v1/logs", "claude-code-2.1.328-logs-2.pb"),
            ("/v1/logs", "codex-0.169.0-logs-1.pb"), ("/v1/metrics", "claude-code-2.1.328-metrics-1.pb"),
            ("/v1/metrics", "claude-code-2.1.328-metrics-2.pb")]

SNAPSHOT = {
    "llm_requests": "SELECT count(*), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens),"
                    " sum(reported_cost_usd), sum(estimated_cost_usd) FROM llm_requests",
    "metric_points": "SELECT count(*), sum(value) FROM metric_points",
    "sessions": "SELECT count(*), min(first_seen), max(last_seen) FROM sessions",
    "users": "SELECT count(*) FROM users",
    "agents": "SELECT count(*) FROM agents",
}


def _snapshot(conn):
    return {k: conn.execute(q).fetchone() for k, q in SNAPSHOT.items()}


def test_retried_batches_change_nothing(client, conn, app):
    for path, name in FIXTURES:
        assert post(client, path, fixture_bytes(name)).status_code == 200
    first = _snapshot(conn)
    assert first["llm_requests"][0] == 3 and first["metric_points"][0] == 10
    for path, name in FIXTURES:
        assert post(client, path, fixture_bytes(name), gzipped=True).status_code == 200
    assert _snapshot(conn) == first
    assert_session_totals_match_the_rows(conn)
    dup = app.extensions["aa_registry"].get_sample_value("aa_ingest_rows_duplicate_total", {"signal": "logs"})
    assert dup == 3


def test_partly_retried_batch_adds_only_its_new_rows(client, conn):
    """A batch holding rows already stored and new ones: only the new reach the session totals."""
    assert post(client, "/v1/logs", fixture_bytes(FIXTURES[0][1])).status_code == 200
    merged = logs_fixture(FIXTURES[0][1])
    merged.resource_logs.extend(logs_fixture(FIXTURES[1][1]).resource_logs)
    assert post(client, "/v1/logs", merged.SerializeToString()).status_code == 200
    (stored,) = conn.execute("SELECT count(*) FROM llm_requests").fetchone()
    assert stored == 2
    assert conn.execute("SELECT sum(requests) FROM sessions").fetchone() == (stored,)
    assert_session_totals_match_the_rows(conn)


def test_cumulative_differencing_with_resets_retries_and_disorder(client, conn):
    s = time.time_ns() - 3_600 * 10**9
    sec = 10**9
    batches = [
        cumulative_token_usage([(s, s + 10 * sec, 100), (s, s + 20 * sec, 160)]),   # +100, +60
        cumulative_token_usage([(s, s + 20 * sec, 160)]),                            # a retry: nothing
        cumulative_token_usage([(s, s + 15 * sec, 130)]),                            # late, already covered: nothing
        cumulative_token_usage([(s, s + 30 * sec, 40)]),                             # value fell: reset, +40
        cumulative_token_usage([(s + 40 * sec, s + 50 * sec, 70)]),                  # new start time, higher value: reset, +70
        cumulative_token_usage([(s + 40 * sec, s + 60 * sec, 75)]),                  # +5
    ]
    for body in batches:
        assert post(client, "/v1/metrics", body).status_code == 200
    rows = conn.execute("SELECT value, extract(epoch FROM time - %s::timestamptz)::int FROM metric_points"
                        " ORDER BY time", (_ts(s),)).fetchall()
    assert rows == [(100, 10), (60, 20), (40, 30), (70, 50), (5, 60)]
    assert conn.execute("SELECT points, tokens, output_tokens FROM sessions WHERE id = 'cum-1'").fetchone() == (
        5, 275.0, 275.0)
    assert_session_totals_match_the_rows(conn)


def _ts(ns: int):
    from agent_analytics.ingest.rows import to_datetime

    return to_datetime(ns)


def test_concurrent_duplicates_from_two_receivers(config, conn):
    """Two receiver processes (two apps, two pools) given the same batches at the same moment."""
    apps = [create_app(config, role="ingest") for _ in range(2)]
    s = time.time_ns() - 3_600 * 10**9
    bodies = [("/v1/logs", fixture_bytes(name)) for _, name in FIXTURES[:3]]
    bodies += [("/v1/metrics", fixture_bytes(name)) for _, name in FIXTURES[3:]]
    # Cumulative points of one series split across batches, sent in both orders at once.
    bodies += [("/v1/metrics", cumulative_token_usage([(s, s + 10**9 * i, 10.0 * i)])) for i in range(1, 9)]
    try:
        with Server(apps[0]) as a, Server(apps[1]) as b:
            errors: list = []

            def send(url, path, body, barrier):
                try:
                    barrier.wait(timeout=10)
                    r = requests.post(url + path, data=body, headers=headers(), timeout=30)
                    if r.status_code != 200:
                        errors.append(r.status_code)
                except Exception as exc:  # surfaced below
                    errors.append(exc)

            for path, body in bodies:
                barrier = threading.Barrier(2)
                threads = [threading.Thread(target=send, args=(srv.url, path, body, barrier)) for srv in (a, b)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            assert not errors
    finally:
        for app in apps:
            app.extensions["aa_db"].close()
    snap = _snapshot(conn)
    assert snap["llm_requests"][0] == 3
    # 10 delta points from the fixtures, and the cumulative series' deltas summing to its last value.
    assert conn.execute("SELECT count(*) FROM metric_points WHERE session_id <> 'cum-1'").fetchone()[0] == 10
    assert conn.execute("SELECT sum(value), count(*) FROM metric_points WHERE session_id = 'cum-1'").fetchone() == (
        80.0, 8)
    assert_session_totals_match_the_rows(conn)
