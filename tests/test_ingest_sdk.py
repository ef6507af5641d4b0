"""The OpenTelemetry SDK's own OTLP/HTTP protobuf exporters, sending Claude-Code-shaped events
and metrics and gateway-shaped spans to the receiver on a real port."""
from __future__ import annotations

import time
from decimal import Decimal

from genai_prices import Usage, calc_price
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

from tests.harness_support import INGEST_TOKEN
from tests.ingest_support import Server

AUTH = {"Authorization": f"Bearer {INGEST_TOKEN}"}
CLAUDE_RESOURCE = {"service.name": "claude-code", "service.version": "2.1.328", "department": "eng"}


def _logger_provider(url: str, resource: dict) -> LoggerProvider:
    provider = LoggerProvider(resource=Resource.create(resource))
    provider.add_log_record_processor(BatchLogRecordProcessor(
        OTLPLogExporter(endpoint=f"{url}/v1/logs", headers=AUTH, compression=Compression.Gzip)))
    return provider


def _claude_event(logger, name: str, **attrs) -> None:
    base = {"event.name": name, "session.id": "sess-1", "user.email": "alice@example.com",
            "user.id": "anon-hash", "event.timestamp": "2026-01-01T00:00:00Z"}
    logger.emit(body=f"claude_code.{name}", attributes={**base, **attrs}, timestamp=time.time_ns())


def test_sdk_logs_claude_code_events(app, conn):
    with Server(app) as server:
        provider = _logger_provider(server.url, CLAUDE_RESOURCE)
        log = provider.get_logger("com.anthropic.claude_code.events")
        # Numbers as strings, ints and doubles, as Claude Code sends them.
        _claude_event(log, "api_request", model="claude-sonnet-4-5", input_tokens="120", output_tokens=30,
                      cache_read_tokens=1000.0, cache_creation_tokens=0, cost_usd="0.0123", duration_ms=900)
        _claude_event(log, "api_request", model="claude-imaginary-9-9", input_tokens=10, output_tokens=5,
                      cache_read_tokens=0, cache_creation_tokens=0, cost_usd=0.001, duration_ms=50)
        _claude_event(log, "api_error", model="claude-sonnet-4-5", error="overloaded", status_code="529",
                      duration_ms=100, attempt=1)
        _claude_event(log, "user_prompt", prompt_length="9", prompt="<REDACTED>")
        _claude_event(log, "tool_decision", tool_name="mcp__github__create_issue", decision="accept",
                      source="config")
        _claude_event(log, "tool_result", tool_name="mcp__github__create_issue", success="true", duration_ms=120)
        _claude_event(log, "tool_result", tool_name="mcp__github__get_issue", success="false", duration_ms=80,
                      error_type="timeout")
        _claude_event(log, "tool_result", tool_name="Bash", success="true", duration_ms=5)
        _claude_event(log, "tool_decision", tool_name="mcp__github__delete_repo", decision="reject", source="config")
        _claude_event(log, "tool_result", tool_name="mcp__github__delete_repo", success="false",
                      decision_type="reject", decision_source="config")
        _claude_event(log, "tool_decision", tool_name="mcp__slack__post", decision="reject", source="hook")
        _claude_event(log, "tool_decision", tool_name="mcp__slack__post", decision="reject", source="user_reject")
        assert provider.force_flush(10_000)
        provider.shutdown()

    req = conn.execute("SELECT user_id, input_tokens, output_tokens, cache_read_tokens, reported_cost_usd,"
                       " estimated_cost_usd, cost_basis, attributes->>'department' FROM llm_requests"
                       " ORDER BY model DESC").fetchall()
    usage = Usage(input_tokens=1120, cache_read_tokens=1000, output_tokens=30)
    expected = calc_price(usage, "claude-sonnet-4-5", provider_id="anthropic").total_price
    assert req[0] == ("alice@example.com", 120, 30, 1000, Decimal("0.0123"), expected, "list_price", "eng")
    # An unknown model keeps its tokens and is unpriced: NULL, never 0.
    assert req[1][1:4] == (10, 5, 0) and req[1][5] is None and req[1][6] == "unpriced"
    assert conn.execute("SELECT error, status_code FROM llm_errors").fetchall() == [("overloaded", 529)]
    calls = conn.execute("SELECT mcp_server_id, tool_name, outcome, error_type, policy_id, policy_name, source,"
                         " agent_id, user_id, session_id FROM tool_calls ORDER BY tool_name, policy_id").fetchall()
    assert [c[:5] for c in calls] == [
        ("github", "create_issue", "ok", None, None),
        ("github", "delete_repo", "blocked", None, "claude_code:config"),
        ("github", "get_issue", "error", "timeout", None),
        ("slack", "post", "blocked", None, "claude_code:hook"),
        ("slack", "post", "blocked", None, "claude_code:user_reject"),
    ]
    assert {c[6:] for c in calls} == {("claude_code", "claude-code", "alice@example.com", "sess-1")}
    # The install hash is the agent instance, owned by the signed-in user.
    assert conn.execute("SELECT DISTINCT agent_instance_id FROM tool_calls").fetchall() == [("anon-hash",)]
    assert conn.execute("SELECT id, agent_id, user_id FROM agent_instances").fetchall() == [
        ("anon-hash", "claude-code", "alice@example.com")]
    assert calls[1][5] == "Claude Code permission rule or not allowed (config)"
    assert {r[0] for r in conn.execute("SELECT id FROM policies")} == {"claude_code:config", "claude_code:hook",
                                                                       "claude_code:user_reject"}
    assert {r for r in conn.execute("SELECT mcp_server_id, name FROM tools")} == {
        ("github", "create_issue"), ("github", "get_issue"), ("github", "delete_repo"), ("slack", "post")}
    assert conn.execute("SELECT id, email FROM users").fetchall() == [("alice@example.com", "alice@example.com")]
    metrics = app.extensions["aa_registry"]
    assert metrics.get_sample_value("aa_ingest_unpriced_total", {"kind": "request", "provider": "anthropic",
                                                                  "model": "claude-imaginary-9-9"}) == 1
    # user_prompt, Bash, the rejected tool_result (the accept is a permission decision: stored)
    assert metrics.get_sample_value("aa_ingest_records_ignored_total", {"signal": "logs"}) == 3
    assert conn.execute("SELECT tool_name, outcome, decision_source, blocked FROM agent_enforcement"
                        " ORDER BY tool_name, decision_source").fetchall() == [
        ("create_issue", "accept", "config", False), ("delete_repo", "reject", "config", True),
        ("post", "reject", "hook", True), ("post", "reject", "user_reject", True)]


def test_sdk_cumulative_metrics_are_differenced_with_resets(app, conn):
    attrs = {"session.id": "sess-2", "user.email": "bob@example.com", "model": "claude-haiku-4-5", "type": "input"}

    def provider(url):
        exporter = OTLPMetricExporter(endpoint=f"{url}/v1/metrics", headers=AUTH,
                                      preferred_temporality={Counter: AggregationTemporality.CUMULATIVE})
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        mp = MeterProvider(metric_readers=[reader], resource=Resource.create(CLAUDE_RESOURCE))
        return mp, mp.get_meter("com.anthropic.claude_code").create_counter("claude_code.token.usage")

    with Server(app) as server:
        mp, counter = provider(server.url)
        counter.add(100, attrs)
        assert mp.force_flush(10_000)      # cumulative 100
        counter.add(50, attrs)
        assert mp.force_flush(10_000)      # cumulative 150: +50
        assert mp.force_flush(10_000)      # cumulative 150 again: +0
        mp.shutdown()
        # A restarted process: a new start time and a lower value is a reset, not a negative delta.
        mp2, counter2 = provider(server.url)
        counter2.add(20, attrs)
        assert mp2.force_flush(10_000)     # cumulative 20 from a new start: +20
        mp2.shutdown()
    values = [v for (v,) in conn.execute("SELECT value FROM metric_points ORDER BY time")]
    # shutdown() exports a last unchanged cumulative value: a zero delta each time.
    assert [v for v in values if v] == [100, 50, 20] and len(values) == 6
    assert conn.execute("SELECT sum(value) FROM metric_points").fetchone()[0] == 170
    unit = calc_price(Usage(input_tokens=170), "claude-haiku-4-5", provider_id="anthropic").total_price
    assert conn.execute("SELECT sum(estimated_cost_usd) FROM metric_points").fetchone()[0] == unit


def test_sdk_gateway_and_genai_spans(app, conn):
    with Server(app) as server:
        provider = TracerProvider(resource=Resource.create({"service.name": "mcp-gateway"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{server.url}/v1/traces",
                                                                        headers=AUTH)))
        tracer = provider.get_tracer("gateway")
        common = {"mcp.method.name": "tools/call", "gen_ai.operation.name": "execute_tool",
                  "mcp.server.name": "jira", "user.email": "carol@example.com", "agent.id": "claude-code",
                  "gen_ai.agent.name": "Claude Code", "agent.instance.id": "carol-laptop"}
        with tracer.start_as_current_span("tools/call search", attributes={**common, "gen_ai.tool.name": "search",
                                                                          "mcp.gateway.decision": "allow"}) as ok:
            trace_id = format(ok.get_span_context().trace_id, "032x")
        with tracer.start_as_current_span("tools/call update", attributes={**common, "gen_ai.tool.name": "update",
                                                                          "error.type": "tool_error"}) as span:
            span.set_status(Status(StatusCode.ERROR))
        with tracer.start_as_current_span("tools/call delete", attributes={
                **common, "gen_ai.tool.name": "delete", "mcp.gateway.decision": "block", "policy.id": "pol-7",
                "policy.name": "No deletes", "policy.description": "Deleting issues is not allowed"}):
            pass
        with tracer.start_as_current_span("chat gpt-4o", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100,
                "gen_ai.usage.cache_read.input_tokens": 400, "user.email": "carol@example.com"}):
            pass
        with tracer.start_as_current_span("unrelated"):
            pass
        assert provider.force_flush(10_000)
        provider.shutdown()
    calls = conn.execute("SELECT tool_name, outcome, error_type, policy_id, policy_name, policy_description,"
                         " source, agent_id, agent_instance_id, user_id, mcp_server_id, attributes->>'trace_id'"
                         " FROM tool_calls ORDER BY tool_name").fetchall()
    assert [c[:6] for c in calls] == [
        ("delete", "blocked", None, "pol-7", "No deletes", "Deleting issues is not allowed"),
        ("search", "ok", None, None, None, None),
        ("update", "error", "tool_error", None, None, None),
    ]
    assert {c[6:11] for c in calls} == {("gateway", "claude-code", "carol-laptop", "carol@example.com", "jira")}
    assert calls[1][11] == trace_id
    assert conn.execute("SELECT agent_id, user_id FROM agent_instances").fetchall() == [
        ("claude-code", "carol@example.com")]
    assert conn.execute("SELECT name, description FROM policies WHERE id = 'pol-7'").fetchone() == (
        "No deletes", "Deleting issues is not allowed")
    req = conn.execute("SELECT source, provider, model, input_tokens, cache_read_tokens, output_tokens,"
                       " estimated_cost_usd, latency_ms >= 0 FROM llm_requests").fetchall()
    usage = Usage(input_tokens=1000, cache_read_tokens=400, output_tokens=100)
    assert req == [("genai", "openai", "gpt-4o", 600, 400, 100,
                    calc_price(usage, "gpt-4o", provider_id="openai").total_price, True)]
