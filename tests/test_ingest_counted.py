"""Claude Code reports each request twice, as an api_request event and in its session's
token.usage and cost.usage metrics. The receiver decides per session which one counts: once a
session has sent a metric point its events no longer count (`counted`), whatever order the two
exports arrive in, even at the same moment at two receivers."""
from __future__ import annotations

import threading

import requests

from agent_analytics.app import create_app
from tests.harness_support import LLM_TOKEN, refresh_aggregates
from tests.ingest_support import (CLAUDE_LOGS, Server, assert_session_totals_match_the_rows, fixture_bytes, headers,
                                  log_events, logs_fixture, many_api_requests, post)

CLAUDE_METRICS = ("claude-code-2.1.328-metrics-1.pb", "claude-code-2.1.328-metrics-2.pb")
CODEX_LOGS = "codex-0.169.0-logs-1.pb"
SESSION = "e1b48cd1-b356-4a0a-bd69-750d6a4e3594"  # the captured Claude Code session


def _counted(conn) -> dict[str, list[bool]]:
    rows = conn.execute("SELECT source, counted FROM llm_requests ORDER BY source, counted").fetchall()
    out: dict[str, list[bool]] = {}
    for source, counted in rows:
        out.setdefault(source, []).append(counted)
    return out


def test_events_then_metrics(client, conn):
    for name in CLAUDE_LOGS:
        assert post(client, "/v1/logs", fixture_bytes(name)).status_code == 200
    assert post(client, "/v1/logs", fixture_bytes(CODEX_LOGS)).status_code == 200
    before = _counted(conn)
    assert before["claude_code"] and all(before["claude_code"]) and all(before["codex"])
    assert conn.execute("SELECT has_metrics FROM sessions WHERE id = %s", (SESSION,)).fetchone() == (False,)

    for name in CLAUDE_METRICS:
        assert post(client, "/v1/metrics", fixture_bytes(name)).status_code == 200
    after = _counted(conn)
    assert not any(after["claude_code"]) and all(after["codex"])
    assert conn.execute("SELECT has_metrics FROM sessions WHERE id = %s", (SESSION,)).fetchone() == (True,)
    assert_session_totals_match_the_rows(conn)


def test_metrics_then_events(client, conn):
    for name in CLAUDE_METRICS:
        assert post(client, "/v1/metrics", fixture_bytes(name)).status_code == 200
    for name in CLAUDE_LOGS:
        assert post(client, "/v1/logs", fixture_bytes(name)).status_code == 200
    counted = _counted(conn)
    assert counted["claude_code"] and not any(counted["claude_code"])
    assert_session_totals_match_the_rows(conn)


def test_llm_usage_counts_the_metric_points_once(client, conn):
    """Through the query API: total tokens are the session's metric points plus Codex's
    events, and the Claude Code events still count as requests."""
    for name in (*CLAUDE_LOGS, CODEX_LOGS):
        post(client, "/v1/logs", fixture_bytes(name))
    for name in CLAUDE_METRICS:
        post(client, "/v1/metrics", fixture_bytes(name))
    refresh_aggregates(conn)  # as the refresh policy would (the test must not race it)
    (points,) = conn.execute("SELECT sum(value) FROM metric_points WHERE metric = 'tokens'"
                             " AND session_id IS NOT NULL").fetchone()
    (codex,) = conn.execute("SELECT sum(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens)"
                            " FROM llm_requests WHERE source = 'codex'").fetchone()
    (events,) = conn.execute("SELECT count(*) FROM llm_requests").fetchone()
    auth = {"Authorization": f"Bearer {LLM_TOKEN}"}
    window = {"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}
    total = client.get("/api/v1/query/llm_total_tokens", query_string=window, headers=auth).get_json()
    assert total["rows"][0]["value"] == points + float(codex)
    models = client.get("/api/v1/query/llm_top_models_by_tokens", query_string=window, headers=auth).get_json()
    assert sum(r["requests"] for r in models["rows"]) == events


def test_concurrent_events_and_metrics_never_double_count(config, conn):
    """Events and the first metric points of one session posted at the same moment to two
    receivers, many times: afterwards no event of the session counts."""
    apps = [create_app(config, role="ingest") for _ in range(2)]
    logs = many_api_requests(200)
    metrics = fixture_bytes(CLAUDE_METRICS[0])
    try:
        with Server(apps[0]) as a, Server(apps[1]) as b:
            for attempt in range(6):
                conn.execute("TRUNCATE llm_requests, metric_points, metric_series_state, sessions")
                barrier = threading.Barrier(2)
                errors: list = []

                def send(url, path, body):
                    try:
                        barrier.wait(timeout=10)
                        r = requests.post(url + path, data=body, headers=headers(), timeout=60)
                        if r.status_code != 200:
                            errors.append(r.status_code)
                    except Exception as exc:  # surfaced below
                        errors.append(exc)

                order = [(a.url, "/v1/logs", logs), (b.url, "/v1/metrics", metrics)]
                if attempt % 2:
                    order.reverse()
                threads = [threading.Thread(target=send, args=args) for args in order]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                assert not errors
                n, still_counted = conn.execute(
                    "SELECT count(*), count(*) FILTER (WHERE counted) FROM llm_requests WHERE session_id = %s",
                    (SESSION,)).fetchone()
                assert n > 200 and still_counted == 0, (attempt, n, still_counted)
                assert_session_totals_match_the_rows(conn)
    finally:
        for app in apps:
            app.extensions["aa_db"].close()


def test_api_request_events_are_found():
    # The helper above relies on the capture holding api_request events of the session.
    events = [a for a, _ in log_events(logs_fixture(CLAUDE_LOGS[0])) if a.get("event.name") == "api_request"]
    assert events and all(a["session.id"] == SESSION for a in events)
