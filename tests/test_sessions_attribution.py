"""Sessions and attribution, from the captured Claude Code and Codex payloads: a session that sent
metric points only has an unknown number of requests (not 0); usage without a user, agent
instance or MCP server is a row of its own in every top list, so the lists add up to the
headline; every session of the table is reachable. Expected values are read out of the payloads
here."""
from __future__ import annotations

import statistics
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from agent_analytics.config import Config
from agent_analytics.sql.migrate import refresh_aggregates
from tests import conftest
from tests.conftest import LLM_TOKEN
from tests.ingest_support import fixture_bytes, log_events, logs_fixture, metrics_fixture, plain, post

WITH_EVENTS = {
    "permissions-rules": ([1, 2, 3], [1, 2]),
    "hook-block": ([1, 2], [1]),
    "edits-commit-pr": ([1, 2], [1, 2]),
}
METRICS_ONLY = {"permissions-acceptedits-cliarg": [1, 2], "subagents": [1, 2]}
AUTH = {"Authorization": f"Bearer {LLM_TOKEN}"}


def _logs(scenario: str, n: int) -> str:
    return f"claude-code-2.1.332-{scenario}-logs-{n}.pb"


def _metrics(scenario: str, n: int) -> str:
    return f"claude-code-2.1.332-{scenario}-metrics-{n}.pb"


def _metric_sessions(name: str) -> set[str]:
    req = metrics_fixture(name)
    return {plain(kv.value) for rm in req.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
            for dp in m.sum.data_points for kv in dp.attributes if kv.key == "session.id"}


def _metric_times(name: str) -> list[int]:
    req = metrics_fixture(name)
    return [dp.time_unix_nano for rm in req.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
            for dp in m.sum.data_points]


def _window(times_ns: list[int]) -> dict:
    lo = datetime.fromtimestamp(min(times_ns) / 1e9, timezone.utc) - timedelta(hours=1)
    hi = datetime.fromtimestamp(max(times_ns) / 1e9, timezone.utc) + timedelta(hours=1)
    return {"from": int(lo.timestamp() * 1000), "to": int(hi.timestamp() * 1000)}


def _query(client, metric: str, window: dict, **params) -> dict:
    r = client.get(f"/api/v1/query/{metric}", query_string={**window, **params}, headers=AUTH)
    assert r.status_code == 200, r.get_json()
    return r.get_json()


@pytest.fixture(params=[True, False], ids=["aggregates", "raw"])
def config(db_url, request) -> Config:
    """The tests' configuration, reading the aggregates and the kept session totals, or only the
    raw rows (AA_READ_AGGREGATES=0): both answer the same."""
    return Config(database_url=db_url, ingest_tokens=(conftest.INGEST_TOKEN,), query_tokens=(conftest.QUERY_TOKEN,),
                  llm_query_tokens=(LLM_TOKEN,), db_timeout_s=5, db_pool_size=4, retention_days=0,
                  compress_after_days=0, read_aggregates=request.param)


@pytest.fixture
def sessions_loaded(client, conn) -> dict:
    """Three sessions with events and metrics, two with metrics only; what the payloads say."""
    requests: Counter = Counter()
    times: list[int] = []
    for scenario, (logs, metrics) in WITH_EVENTS.items():
        for n in logs:
            assert post(client, "/v1/logs", fixture_bytes(_logs(scenario, n))).status_code == 200
            for a, rec in log_events(logs_fixture(_logs(scenario, n))):
                times.append(rec.time_unix_nano)
                if a.get("event.name") == "api_request":
                    requests[a["session.id"]] += 1
        for n in metrics:
            assert post(client, "/v1/metrics", fixture_bytes(_metrics(scenario, n))).status_code == 200
            times += _metric_times(_metrics(scenario, n))
    metrics_only: set[str] = set()
    for scenario, metrics in METRICS_ONLY.items():
        for n in metrics:
            assert post(client, "/v1/metrics", fixture_bytes(_metrics(scenario, n))).status_code == 200
            metrics_only |= _metric_sessions(_metrics(scenario, n))
            times += _metric_times(_metrics(scenario, n))
    assert len(requests) == len(WITH_EVENTS) and len(metrics_only) == len(METRICS_ONLY)
    assert not metrics_only & set(requests)
    refresh_aggregates(conn)
    return {"requests": dict(requests), "metrics_only": metrics_only, "window": _window(times)}


def test_a_metrics_only_session_has_unknown_requests(client, sessions_loaded):
    known, unknown, window = sessions_loaded["requests"], sessions_loaded["metrics_only"], sessions_loaded["window"]
    [m] = _query(client, "session_metrics", window)["rows"]
    assert m["sessions"] == len(known) + len(unknown)
    # The statistics are over the sessions whose requests are known.
    assert m["requests_p50"] == pytest.approx(statistics.median(known.values()))
    assert m["requests_avg"] == pytest.approx(statistics.mean(known.values()))
    table = _query(client, "sessions_table", window, page_size=100)["rows"]
    by_id = {r["session_id"]: r for r in table}
    assert set(by_id) == set(known) | unknown
    for sid in unknown:
        assert by_id[sid]["requests"] is None and by_id[sid]["requests_ratio"] is None
        assert by_id[sid]["requests_top_5pct"] is False
        [totals] = _query(client, "session_totals", window, session=sid)["rows"]
        assert totals["requests"] is None and totals["tokens"] > 0
        chips = {r["dimension"]: r for r in _query(client, "session_comparison", window, session=sid)["rows"]}
        assert chips["requests"]["value"] is None and chips["requests"]["ratio"] is None  # the chip is hidden
        assert chips["requests"]["baseline_sessions"] == len(known)
        assert chips["tokens"]["ratio"] is not None
        models = _query(client, "session_models", window, session=sid)["rows"]
        assert models and all(r["requests"] is None for r in models)
    median = statistics.median(known.values())
    for sid, n in known.items():
        assert by_id[sid]["requests"] == n
        assert by_id[sid]["requests_ratio"] == pytest.approx(n / median)
