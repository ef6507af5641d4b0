"""Normalisation as pure functions: OTLP messages in, rows and rejections out (no database)."""
from __future__ import annotations

import time

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from agent_analytics.ingest import normalise, pricing
from agent_analytics.ingest.rows import Context, LlmRequest, ToolCall
from tests.ingest_support import set_value

NOW = time.time_ns()
CTX = Context(now_ns=NOW, retention_days=30)


def _set(kv, key, value):
    kv.key = key
    set_value(kv.value, value)


def logs(resource: dict, *records: tuple[int, dict], scope: str = "") -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    for k, v in resource.items():
        _set(rl.resource.attributes.add(), k, v)
    sl = rl.scope_logs.add()
    sl.scope.name = scope
    for t, attrs in records:
        rec = sl.log_records.add()
        rec.time_unix_nano = t
        rec.observed_time_unix_nano = NOW
        for k, v in attrs.items():
            _set(rec.attributes.add(), k, v)
    return req


def test_gateway_log_events():
    req = logs({"service.name": "gw", "agent.id": "codex"},
               (NOW, {"event.name": "mcp.tool.call", "gen_ai.tool.name": "query", "mcp.server.name": "db",
                      "user.email": "x@example.com", "duration_ms": "12.5", "agent.instance.id": "i-1"}),
               (NOW, {"event.name": "mcp.tool.call", "gen_ai.tool.name": "drop", "mcp.server.name": "db",
                      "mcp.gateway.decision": "block", "policy.id": "p9", "policy.name": "No DDL"}),
               (NOW, {"event.name": "mcp.tool.call", "gen_ai.tool.name": "q2", "mcp.server.name": "db",
                      "error.type": "-32603"}),
               (NOW, {"event.name": "mcp.tool.call", "mcp.server.name": "db"}))
    b = normalise.logs(req, CTX)
    assert [(c.tool_name, c.outcome, c.agent_id, c.policy_id, c.error_type) for c in b.tool_calls] == [
        ("query", "ok", "codex", None, None), ("drop", "blocked", "codex", "p9", None),
        ("q2", "error", "codex", None, "-32603")]
    assert b.tool_calls[0].duration_ms == 12.5 and b.tool_calls[0].agent_instance_id == "i-1"
    assert b.tool_calls[0].source == "gateway" and b.tool_calls[0].user_id == "x@example.com"
    assert [(r.index, r.reason) for r in b.rejections] == [(3, "tool call without gen_ai.tool.name")]
    assert b.policies == {"p9": ("No DDL", None)}


def test_codex_tool_events_and_errors():
    base = {"conversation.id": "c1", "model": "gpt-5", "user.account_id": "acct-1",
            "event.timestamp": "2026-01-01T00:00:00Z"}
    req = logs({"service.name": "codex_cli_rs"},
               (NOW, {**base, "event.name": "codex.tool_result", "tool_name": "lookup", "mcp_server": "docs",
                      "success": "true", "duration_ms": "30"}),
               (NOW, {**base, "event.name": "codex.tool_result", "tool_name": "shell", "success": "true"}),
               (NOW, {**base, "event.name": "codex.tool_decision", "tool_name": "mcp__docs__write",
                      "decision": "denied", "source": "config"}),
               (NOW, {**base, "event.name": "codex.api_request", "http.response.status_code": 429,
                      "duration_ms": "3"}),
               (NOW, {**base, "event.name": "codex.api_request", "http.response.status_code": 200}))
    b = normalise.logs(req, CTX)
    assert [(c.mcp_server_id, c.tool_name, c.outcome, c.policy_id, c.agent_id, c.session_id, c.user_id)
            for c in b.tool_calls] == [("docs", "lookup", "ok", None, "codex", "c1", "acct-1"),
                                       ("docs", "write", "blocked", "codex:config", "codex", "c1", "acct-1")]
    assert [(e.status_code, e.model, e.provider) for e in b.llm_errors] == [(429, "gpt-5", "openai")]
    assert b.ignored == 2 and not b.rejections


def test_codex_time_from_event_timestamp_and_cache_check():
    tokens = {"event.name": "codex.sse_event", "event.kind": "response.completed", "model": "gpt-5",
              "conversation.id": "c2", "event.timestamp": "2026-11-24T21:32:20.766Z"}
    req = logs({"service.name": "codex_exec"},
               (0, {**tokens, "input_token_count": "100", "cached_token_count": 40, "output_token_count": 5}),
               (0, {**tokens, "input_token_count": "10", "cached_token_count": 40, "output_token_count": 5}))
    b = normalise.logs(req, Context(now_ns=NOW))
    (r,) = b.llm_requests
    assert (r.input_tokens, r.cache_read_tokens, r.output_tokens) == (60, 40, 5)
    assert r.time_ns == 1795555940766000000
    assert b.rejections[0].index == 1 and "exceed" in b.rejections[0].reason


def test_claude_code_identity_and_time_bounds():
    ev = {"event.name": "api_request", "model": "claude-haiku-4-5", "input_tokens": 1, "output_tokens": 1,
          "session.id": "s"}
    req = logs({"service.name": "claude-code", "user.email": "res@example.com"},
               (NOW, {**ev, "user.account_uuid": "uuid-1", "user.id": "hash"}),
               (NOW, {**ev, "user.email": "rec@example.com"}),
               (NOW - 40 * 86_400 * 10**9, ev),
               (NOW + 2 * 86_400 * 10**9, ev),
               scope="com.anthropic.claude_code.events")
    b = normalise.logs(req, CTX)
    # The resource's user.email (OTEL_RESOURCE_ATTRIBUTES) counts; the record's own wins over it.
    assert [r.user_id for r in b.llm_requests] == ["res@example.com", "rec@example.com"]
    assert [r.index for r in b.rejections] == [2, 3]
    assert "retention" in b.rejections[0].reason and "future" in b.rejections[1].reason
    req = logs({"service.name": "claude-code"}, (NOW, {**ev, "user.account_uuid": "uuid-1", "user.id": "hash"}),
               (NOW, {**ev, "user.id": "hash"}), scope="com.anthropic.claude_code.events")
    assert [r.user_id for r in normalise.logs(req, CTX).llm_requests] == ["uuid-1", "hash"]


def _metrics(name: str, kind: str, points: list[tuple[dict, float]], cumulative=False) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    m = req.resource_metrics.add().scope_metrics.add().metrics.add()
    m.name = name
    data = getattr(m, kind)
    if kind != "gauge":
        data.aggregation_temporality = (AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE if cumulative
                                        else AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA)
    for attrs, value in points:
        dp = data.data_points.add()
        dp.time_unix_nano, dp.start_time_unix_nano = NOW, NOW - 10**9
        if kind == "histogram":
            dp.sum, dp.count = value, 1
        else:
            dp.as_double = value
        for k, v in attrs.items():
            _set(dp.attributes.add(), k, v)
    return req


def test_genai_token_usage_histogram_and_unknown_models():
    attrs = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"}
    b = normalise.metrics(_metrics("gen_ai.client.token.usage", "histogram", [
        ({**attrs, "gen_ai.token.type": "input"}, 500), ({**attrs, "gen_ai.token.type": "output"}, 50),
        ({**attrs, "gen_ai.request.model": "made-up-model-77", "gen_ai.token.type": "input"}, 10)]), CTX)
    pricing.price(b)
    assert [(p.token_type, p.value, p.source, p.model) for p in b.metric_points] == [
        ("input", 500, "genai", "gpt-4o"), ("output", 50, "genai", "gpt-4o"), ("input", 10, "genai", "made-up-model-77")]
    assert [p.estimated_cost_usd is not None for p in b.metric_points] == [True, True, False]


@pytest.mark.parametrize("kind,value,reason", [
    ("gauge", 1.0, "must be a sum"),
    ("sum", -3.0, "negative"),
    ("sum", float("inf"), "not finite"),
])
def test_claude_metric_rejections(kind, value, reason):
    b = normalise.metrics(_metrics("claude_code.token.usage", kind, [({"type": "input"}, value)]), CTX)
    assert len(b.rejections) == 1 and reason in b.rejections[0].reason


def test_irrelevant_metrics_are_ignored_not_rejected():
    b = normalise.metrics(_metrics("claude_code.session.count", "sum", [({}, 3.0), ({}, 4.0)]), CTX)
    assert (b.received, b.ignored, b.rejections, b.facts) == (2, 2, [], 0)


def test_genai_spans_without_operation_name_and_agent_spans():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    _set(rs.resource.attributes.add(), "service.name", "support-bot")
    spans = rs.scope_spans.add().spans
    for attrs in ({"gen_ai.system": "anthropic", "gen_ai.request.model": "claude-haiku-4-5",
                   "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 7},
                  {"gen_ai.operation.name": "invoke_agent", "gen_ai.usage.input_tokens": 100},
                  {"http.method": "GET"}):
        sp = spans.add()
        sp.start_time_unix_nano, sp.end_time_unix_nano = NOW, NOW + 5_000_000
        for k, v in attrs.items():
            _set(sp.attributes.add(), k, v)
    b = normalise.traces(req, CTX)
    assert [(r.provider, r.model, r.input_tokens, r.output_tokens, r.agent_id, r.latency_ms)
            for r in b.llm_requests] == [("anthropic", "claude-haiku-4-5", 100, 7, "support-bot", 5.0)]
    assert (b.received, b.ignored, b.rejections) == (3, 2, [])


@pytest.mark.parametrize("fact, reason", [
    (LlmRequest(time_ns=1, source="claude_code", session_id="s\x00", user_id="u", agent_id="a", provider="p", model="m",
                input_tokens=1, output_tokens=0, cache_read_tokens=0, cache_write_tokens=0, reported_cost_usd=None,
                latency_ms=None, attributes={}), "session_id contains a NUL character"),
    (ToolCall(time_ns=1, source="gateway", user_id="u", agent_id="a", agent_instance_id=None, session_id=None,
              mcp_server_id="srv", tool_name="t", outcome="blocked", duration_ms=None, error_type=None, policy_id="p",
              policy_name="n", policy_description="d\x00", attributes={}), "policy_description contains a NUL character"),
    (ToolCall(time_ns=1, source="gateway", user_id="u", agent_id="a", agent_instance_id=None, session_id=None,
              mcp_server_id="srv", tool_name="t" * 1025, outcome="ok", duration_ms=None, error_type=None,
              policy_id=None, policy_name=None, policy_description=None, attributes={}),
     "tool_name is longer than 1024 bytes"),
    (LlmRequest(time_ns=1, source="claude_code", session_id="s", user_id="u", agent_id="a", provider="p", model="m",
                input_tokens=1, output_tokens=0, cache_read_tokens=0, cache_write_tokens=0, reported_cost_usd=None,
                latency_ms=None, attributes={"k": ["x\x00"]}), "attributes contains a NUL character"),
])
def test_every_text_field_of_a_fact_is_checked_not_only_its_attributes(fact, reason):
    assert normalise._unstorable(fact) == reason


@pytest.mark.parametrize("params, expected", [
    ('{"mcp_server_name": "db", "mcp_tool_name": "query"}', ("db", "query")),
    ('{"mcp_server_name": ["db"], "mcp_tool_name": 5}', (None, "mcp_tool")),
    ('{"mcp_server_name": {"n": 1}, "mcp_tool_name": "query"}', (None, "query")),
    ('{"mcp_server_name": true, "mcp_tool_name": null}', (None, "mcp_tool")),
    ('["db", "query"]', (None, "mcp_tool")),
    ("[" * 100_000, (None, "mcp_tool")),  # json.loads raises RecursionError, not ValueError
])
def test_claude_code_hidden_mcp_tool_names_must_be_text(params, expected):
    """`tool_parameters` is JSON the agent wrote: a name in it that is not a string is not a name
    (unchecked, it would reach the NUL check as a list and fail the whole batch with a TypeError), nor is
    JSON nested too deep to parse."""
    ev = {"event.name": "tool_result", "tool_name": "mcp_tool", "success": "true", "session.id": "s",
          "tool_parameters": params}
    req = logs({"service.name": "claude-code"}, (NOW, ev), (NOW, {**ev, "tool_parameters": "{}"}),
               scope="com.anthropic.claude_code.events")
    b = normalise.logs(req, CTX)
    assert b.rejections == []
    assert [(c.mcp_server_id, c.tool_name) for c in b.tool_calls] == [expected, (None, "mcp_tool")]
