"""Sessions and attribution, from the captured Claude Code and Codex payloads: a session that sent
metric points only has an unknown number of requests (not 0); usage without a user, agent
instance or MCP server is a row of its own in every top list, so the lists add up to the
headline; every session of the table is reachable. Expected values are read out of the payloads
here."""
from __future__ import annotations

import json
import statistics
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from agent_analytics.config import Config
from tests.harness_support import INGEST_TOKEN, LLM_TOKEN, QUERY_TOKEN, refresh_aggregates
from tests.ingest_support import (CLAUDE_MCP_LOGS, PERMISSION_LOGS, SDK_SERVER_TRACES, as_mcp, claude_mcp_results,
                                  fixture_bytes, log_events, logs_fixture, metrics_fixture, plain, post,
                                  tool_call_spans, trace_spans)

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
    return Config(database_url=db_url, ingest_tokens=(INGEST_TOKEN,), query_tokens=(QUERY_TOKEN,),
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


# ---- usage without a user, agent instance or MCP server ---------------------------------------

CODEX = ["codex-0.169.0-logs-1.pb", "codex-0.171.0-shell-500-then-ok-logs-1.pb"]
CLAUDE_328 = (["claude-code-2.1.328-logs-1.pb", "claude-code-2.1.328-logs-2.pb"],
              ["claude-code-2.1.328-metrics-1.pb", "claude-code-2.1.328-metrics-2.pb"])


def _codex_requests() -> list[dict]:
    return [a for n in CODEX for a, _ in log_events(logs_fixture(n))
            if a.get("event.name") == "codex.sse_event" and a.get("event.kind") == "response.completed"
            and (a.get("input_token_count") is not None or a.get("output_token_count") is not None)]


def _sum_rows(rows: list[dict], measure: str) -> float:
    return sum(r[measure] for r in rows)


def test_llm_usage_without_a_user_is_its_own_row(client, conn):
    codex = _codex_requests()
    assert codex and not any(k.startswith("user.") for a in codex for k in a), "Codex with an API key names no user"
    # Codex's input count includes its cached tokens: input + output is the request's total.
    codex_tokens = sum(int(a.get("input_token_count") or 0) + int(a.get("output_token_count") or 0) for a in codex)
    times = []
    for n in CODEX + CLAUDE_328[0]:
        assert post(client, "/v1/logs", fixture_bytes(n)).status_code == 200
        times += [rec.time_unix_nano or 0 for _, rec in log_events(logs_fixture(n))]
    claude_tokens = 0.0
    for n in CLAUDE_328[1]:
        assert post(client, "/v1/metrics", fixture_bytes(n)).status_code == 200
        req = metrics_fixture(n)
        claude_tokens += sum(dp.as_double or dp.as_int for rm in req.resource_metrics for sm in rm.scope_metrics
                             for m in sm.metrics if m.name == "claude_code.token.usage" for dp in m.sum.data_points)
        times += _metric_times(n)
    times += [int(datetime.fromisoformat(a["event.timestamp"].replace("Z", "+00:00")).timestamp() * 1e9)
              for a in codex]
    refresh_aggregates(conn)
    window = _window([t for t in times if t])
    total = _query(client, "llm_total_tokens", window)["rows"][0]["value"]
    assert total == codex_tokens + claude_tokens
    for metric in ("llm_top_users_by_tokens", "llm_top_users_by_cost"):
        rows = _query(client, metric, window, page_size=100)["rows"]
        assert _sum_rows(rows, "tokens") == total, metric
        [nobody] = [r for r in rows if r["user_id"] is None]
        assert nobody["user"] == "(no user)" and nobody["tokens"] == codex_tokens
        assert nobody["requests"] == len(codex)
    # A user filter selects named users: the row without one is not among them.
    named = next(r for r in _query(client, "llm_top_users_by_tokens", window)["rows"] if r["user_id"])
    only = _query(client, "llm_top_users_by_tokens", window, user=named["user_id"])["rows"]
    assert [r["user_id"] for r in only] == [named["user_id"]]
    assert _query(client, "llm_total_tokens", window, user=named["user_id"])["rows"][0]["value"] == named["tokens"]


def _without_tool_details(name: str) -> bytes:
    """Claude Code without OTEL_LOG_TOOL_DETAILS=1: the MCP tool events name no server or tool."""
    req = ExportLogsServiceRequest.FromString(fixture_bytes(name))
    for rl in req.resource_logs:
        for sl in rl.scope_logs:
            for rec in sl.log_records:
                keep = [kv for kv in rec.attributes if kv.key not in ("tool_parameters", "tool_input")]
                del rec.attributes[:]
                rec.attributes.extend(keep)
                rec.time_unix_nano += 1_000_000  # a later use of the tool
    return req.SerializeToString()


def test_tool_calls_without_a_user_instance_or_server_are_rows_of_their_own(client, conn):
    server_calls = tool_call_spans([SDK_SERVER_TRACES])
    agent_calls = claude_mcp_results()
    assert all("enduser.id" not in {kv.key for kv in sp.attributes} for _, sp in server_calls)
    for n in CLAUDE_MCP_LOGS:
        assert post(client, "/v1/logs", fixture_bytes(n)).status_code == 200
    assert post(client, "/v1/logs", _without_tool_details(CLAUDE_MCP_LOGS[2])).status_code == 200
    assert post(client, "/v1/traces", fixture_bytes(SDK_SERVER_TRACES)).status_code == 200
    refresh_aggregates(conn)
    times = [sp.start_time_unix_nano for _, sp in trace_spans(SDK_SERVER_TRACES)] + [
        rec.time_unix_nano for n in CLAUDE_MCP_LOGS for _, rec in log_events(logs_fixture(n))]
    window = _window(times)
    # The server's own span names no user nor instance; the agent's events without tool details no server.
    calls = len(server_calls) + 2 * len(agent_calls)
    headline = _query(client, "mcp_tool_executions", window)["rows"][0]["value"]
    assert headline == calls
    expected_unnamed = {"mcp_top_users": ("user_id", "user", "(no user)", len(server_calls)),
                        "mcp_top_agent_instances": ("agent_instance_id", "agent_instance", "(no agent instance)",
                                                    len(server_calls)),
                        "mcp_top_mcps": ("mcp_server_id", "mcp", "(no MCP server)", len(agent_calls))}
    for metric, (key, label, text, n) in expected_unnamed.items():
        rows = _query(client, metric, window, page_size=100)["rows"]
        assert _sum_rows(rows, "executions") == headline, metric
        [unnamed] = [r for r in rows if r[key] is None]
        assert (unnamed[label], unnamed["executions"]) == (text, n), metric
    tools = _query(client, "mcp_top_tools", window, page_size=100)["rows"]
    assert _sum_rows(tools, "executions") == headline
    assert [r["mcp"] for r in tools if r["mcp_server_id"] is None] == ["(no MCP server)"]


def test_blocked_calls_without_a_user_are_a_row_of_their_own(client, conn):
    for n in PERMISSION_LOGS:
        assert post(client, "/v1/logs", as_mcp(n, [])).status_code == 200
    blocks = conn.execute("SELECT count(*), min(time) FROM tool_calls WHERE outcome = 'blocked'").fetchone()
    # A gateway's block of a call that names no user or agent instance.
    span = {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "tools/call wipe",
            "kind": 2, "startTimeUnixNano": str(int(blocks[1].timestamp() * 1e9)),
            "endTimeUnixNano": str(int(blocks[1].timestamp() * 1e9) + 1_000_000),
            "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in {
                "mcp.method.name": "tools/call", "gen_ai.tool.name": "wipe", "mcp.server.name": "crm",
                "mcp.gateway.decision": "block", "policy.id": "no-wipe"}.items()]}
    r = client.post("/v1/traces", data=json.dumps({"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": [span]}]}]}),
                    headers={"Authorization": f"Bearer {INGEST_TOKEN}", "Content-Type": "application/json"})
    assert r.status_code == 200, r.data
    refresh_aggregates(conn)
    t = int(blocks[1].timestamp() * 1e9)
    window = _window([t - 3600 * 10**9, t + 3600 * 10**9])
    headline = _query(client, "security_blocked_calls", window)["rows"][0]["value"]
    assert headline == blocks[0] + 1
    for metric, key, label, text in (("security_top_blocked_users", "user_id", "user", "(no user)"),
                                     ("security_top_blocked_agent_instances", "agent_instance_id", "agent_instance",
                                      "(no agent instance)")):
        rows = _query(client, metric, window, page_size=100)["rows"]
        assert _sum_rows(rows, "blocked") == headline, metric
        [unnamed] = [r for r in rows if r[key] is None]
        assert (unnamed[label], unnamed["blocked"]) == (text, 1)
    assert _sum_rows(_query(client, "security_top_blocked_mcps", window, page_size=100)["rows"], "blocked") == headline


# ---- every session reachable; the picker newest first ----------------------------------------

def _many_sessions(n: int) -> tuple[bytes, list[str]]:
    """A captured api_request event, as n sessions each one second apart (the last newest)."""
    req = ExportLogsServiceRequest.FromString(fixture_bytes("claude-code-2.1.328-logs-1.pb"))
    sl = req.resource_logs[0].scope_logs[0]
    template = next(r for r in sl.log_records if r.body.string_value == "claude_code.api_request")
    del sl.log_records[:]
    ids = []
    for i in range(n):
        rec = sl.log_records.add()
        rec.CopyFrom(template)
        rec.time_unix_nano = template.time_unix_nano + i * 1_000_000_000
        ids.append(f"many-{i:05d}")
        for kv in rec.attributes:
            if kv.key == "session.id":
                kv.value.string_value = ids[-1]
    return req.SerializeToString(), ids


def test_every_session_is_reachable_by_paging(client, conn):
    from agent_analytics.datasource.query import MAX_ROWS

    body, ids = _many_sessions(MAX_ROWS + 5)
    r = post(client, "/v1/logs", body)
    assert r.status_code == 200 and not r.data, r.data
    refresh_aggregates(conn)
    req = ExportLogsServiceRequest.FromString(body)
    window = _window([rec.time_unix_nano for rec in req.resource_logs[0].scope_logs[0].log_records])
    first = _query(client, "sessions_table", window, order_by="recency", page_size=MAX_ROWS)
    assert first["total"] == len(ids) and len(first["rows"]) == MAX_ROWS
    second = _query(client, "sessions_table", window, order_by="recency", page_size=MAX_ROWS, page=2)
    seen = [r["session_id"] for r in first["rows"] + second["rows"]]
    assert seen == ids[::-1]  # every session once, newest first


def test_the_session_picker_lists_sessions_newest_first(client, conn):
    body, ids = _many_sessions(25)
    assert post(client, "/v1/logs", body).status_code == 200
    req = ExportLogsServiceRequest.FromString(body)
    window = _window([rec.time_unix_nano for rec in req.resource_logs[0].scope_logs[0].log_records])
    rows = client.get("/api/v1/variables/session", query_string=window, headers=AUTH).get_json()["rows"]
    assert [r["value"] for r in rows] == ids[::-1]
    grafana = client.post("/grafana/variable", headers=AUTH, json={
        "payload": {"target": "session"},
        "range": {"from": datetime.fromtimestamp(window["from"] / 1000, timezone.utc).isoformat(),
                  "to": datetime.fromtimestamp(window["to"] / 1000, timezone.utc).isoformat()}}).get_json()
    assert [r["value"] for r in grafana] == ids[::-1]
