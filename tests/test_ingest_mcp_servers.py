"""MCP servers' own spans (the MCP Python SDK 2.3.0's `tools/call` SERVER spans) are stored,
tied to the name agents use through the directory, and each call is counted once when the agent
reports it too; other MCP methods are ignored, not rejected; a client span is an agent-side
report. Expected values are read out of the captured payloads here."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agent_analytics.ingest import normalise
from agent_analytics.ingest.rows import Context
from tests.harness_support import INGEST_TOKEN, QUERY_TOKEN, refresh_aggregates
from tests.ingest_support import (CLAUDE_MCP_LOGS, SDK_SERVER_TRACES, claude_mcp_results, fixture_bytes, post,
                                  span_attrs, tool_call_spans, trace_spans)

DEMO_SERVER = ["demo-mcp-server-mcp-connection-failures-traces-1.pb",
               "demo-mcp-server-mcp-connection-failures-traces-2.pb"]
DIRECTORY_AUTH = {"Authorization": f"Bearer {INGEST_TOKEN}"}


def _window(names) -> dict:
    times = [sp.start_time_unix_nano for n in names for _, sp in trace_spans(n)]
    lo = datetime.fromtimestamp(min(times) / 1e9, timezone.utc) - timedelta(hours=2)
    hi = datetime.fromtimestamp(max(times) / 1e9, timezone.utc) + timedelta(hours=2)
    return {"from": int(lo.timestamp() * 1000), "to": int(hi.timestamp() * 1000)}


def _query(client, metric: str, window: dict) -> dict:
    r = client.get(f"/api/v1/query/{metric}", query_string=window,
                   headers={"Authorization": f"Bearer {QUERY_TOKEN}"})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def test_other_mcp_methods_are_ignored_not_rejected():
    spans = [sp for n in [SDK_SERVER_TRACES, *DEMO_SERVER] for _, sp in trace_spans(n)]
    others = [sp for sp in spans if span_attrs(sp).get("mcp.method.name") != "tools/call"]
    calls = [sp for sp in spans if span_attrs(sp).get("mcp.method.name") == "tools/call"]
    assert others and calls, "the fixtures hold both"
    ctx = Context(now_ns=max(sp.start_time_unix_nano for sp in spans) + 1)
    ignored = received = stored = 0
    for n in [SDK_SERVER_TRACES, *DEMO_SERVER]:
        batch = normalise.traces(ExportTraceServiceRequest.FromString(fixture_bytes(n)), ctx)
        assert batch.rejections == [], batch.rejections
        ignored, received, stored = ignored + batch.ignored, received + batch.received, stored + len(batch.tool_calls)
    assert (received, ignored, stored) == (len(spans), len(others), len(calls))


def test_the_sdk_server_span_is_stored_as_the_server_reported_it(client, conn):
    r = post(client, "/v1/traces", fixture_bytes(SDK_SERVER_TRACES))
    assert r.status_code == 200 and not r.data, r.data  # no partial success: nothing rejected
    expected = []
    for resource, sp in tool_call_spans([SDK_SERVER_TRACES]):
        a = span_attrs(sp)
        assert sp.kind == Span.SPAN_KIND_SERVER and "mcp.server.name" not in a
        expected.append(("mcp_server", resource["service.name"], a["gen_ai.tool.name"], "ok",
                         (sp.end_time_unix_nano - sp.start_time_unix_nano) / 1e6, sp.trace_id.hex(), sp.span_id.hex()))
    rows = conn.execute("SELECT source, mcp_server_id, tool_name, outcome, duration_ms, attributes->>'trace_id',"
                        " attributes->>'span_id' FROM tool_calls").fetchall()
    assert rows == expected


def test_a_call_both_the_agent_and_the_server_report_is_counted_once(client, conn):
    server_calls = tool_call_spans(DEMO_SERVER)
    agent_calls = claude_mcp_results()
    assert len(server_calls) == len(agent_calls) >= 1, "the same calls, seen from both ends"
    agent_server = json.loads(agent_calls[0]["tool_parameters"])["mcp_server_name"]
    service = server_calls[0][0]["service.name"]
    assert agent_server != service, "the agent and the server name the server differently"
    # The directory ties the server's service.name to the name the agent uses.
    r = client.post("/api/v1/directory", headers=DIRECTORY_AUTH,
                    json={"mcp_servers": [{"id": agent_server, "name": "Demo", "service_name": service}]})
    assert r.status_code == 200, r.get_json()
    for n in CLAUDE_MCP_LOGS:
        assert post(client, "/v1/logs", fixture_bytes(n)).status_code == 200
    for n in DEMO_SERVER:
        r = post(client, "/v1/traces", fixture_bytes(n))
        assert r.status_code == 200 and not r.data, r.data
    refresh_aggregates(conn)
    stored = conn.execute("SELECT source, mcp_server_id, tool_name FROM tool_calls ORDER BY source").fetchall()
    tool = span_attrs(server_calls[0][1])["gen_ai.tool.name"]
    assert stored == [("claude_code", agent_server, tool)] * len(agent_calls) + \
        [("mcp_server", agent_server, tool)] * len(server_calls)
    window = _window(DEMO_SERVER)
    executions = _query(client, "mcp_tool_executions", window)["rows"][0]["value"]
    assert executions == len(server_calls)
    tops = _query(client, "mcp_top_mcps", window)["rows"]
    assert [(t["mcp_server_id"], t["mcp"], t["executions"]) for t in tops] == [(agent_server, "Demo", len(server_calls))]
    # No MCP server named by its service name appears.
    assert conn.execute("SELECT count(*) FROM mcp_servers WHERE id = %s", [service]).fetchone() == (0,)


def test_a_client_span_is_an_agent_side_report(client, conn):
    """An MCP client's `tools/call` span (kind CLIENT) names the server by `server.address` at
    most: stored as the client's report, and counted once beside the server's own."""
    (resource, sp), = tool_call_spans([SDK_SERVER_TRACES])
    req = ExportTraceServiceRequest.FromString(fixture_bytes(SDK_SERVER_TRACES))
    client_span = req.resource_spans[0].scope_spans[0].spans[0]
    client_span.kind = Span.SPAN_KIND_CLIENT
    client_span.span_id = bytes(8 * [7])
    kv = client_span.attributes.add()
    kv.key, kv.value.string_value = "server.address", resource["service.name"]
    req.resource_spans[0].resource.attributes[-1].value.string_value = "some-agent"
    r = post(client, "/v1/traces", req.SerializeToString())
    assert r.status_code == 200 and not r.data, r.data
    assert post(client, "/v1/traces", fixture_bytes(SDK_SERVER_TRACES)).status_code == 200
    refresh_aggregates(conn)
    rows = conn.execute("SELECT source, mcp_server_id FROM tool_calls ORDER BY source").fetchall()
    assert rows == [("mcp_client", resource["service.name"]), ("mcp_server", resource["service.name"])]
    window = _window([SDK_SERVER_TRACES])
    assert _query(client, "mcp_tool_executions", window)["rows"][0]["value"] == 1
