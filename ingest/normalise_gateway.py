"""MCP tool calls as spans (OpenTelemetry's MCP conventions, `tools/call`) or as log events named
`mcp.tool.call`: from a gateway, carrying the attributes in docs/gateway-contract.md, and from
MCP servers and clients instrumented by their SDK (the MCP Python SDK's `tools/call` spans).

Who reported a span (its `source`):
- `mcp.server.name` (or a gateway decision) on it: a gateway (`gateway`);
- else a SERVER (or unspecified-kind) span is the MCP server's own (`mcp_server`): the server is
  its resource `service.name`, which the store ties to the name agents use through the
  directory (`mcp_servers.service_name`, ingest/store.py);
- else a CLIENT span is an MCP client's (`mcp_client`): the server is `server.address` when the
  span names one, else unknown.
The gateway and the server see every call the server answers (SERVER_SIDE): a call that an agent
reports too is counted once, from them (datasource/engine.py). Other MCP methods (`tools/list`,
`server/discover`, ...) are not tool calls: ignored, not rejected.

Outcome: `mcp.gateway.decision=block` is a blocked call (and needs `policy.id`); otherwise a
span with status ERROR or an `error.type` is an error; everything else is ok.
"""
from __future__ import annotations

from typing import Any, Mapping

from .identity import user_id
from .records import LogEvent, SpanView
from .rows import MAX_DURATION_MS, Batch, Context, ToolCall
from .values import BadValue, number, stored, text

SOURCE = "gateway"
SERVER_SOURCE = "mcp_server"
CLIENT_SOURCE = "mcp_client"
# Reports made where the call is answered: every call to that server passes them.
SERVER_SIDE = (SOURCE, SERVER_SOURCE)
SPAN_KIND_CLIENT = 3
EVENT_NAME = "mcp.tool.call"
BLOCK = frozenset({"block", "blocked", "deny", "denied"})
ALLOW = frozenset({"allow", "allowed", "accept", "permit"})


def is_gateway_event(name: str, attrs: Mapping[str, Any]) -> bool:
    return name == EVENT_NAME or (not name and text(attrs, "mcp.method.name") == "tools/call")


def is_gateway_span(name: str, attrs: Mapping[str, Any]) -> bool:
    method = text(attrs, "mcp.method.name")
    return method == "tools/call" or (method is None and name.startswith("tools/call"))


def _reporter(s: SpanView) -> tuple[str, str | None]:
    """Who reported a `tools/call` span, and the MCP server as that reporter names it."""
    a = s.attrs
    server = text(a, "mcp.server.name", "mcp.server.id")
    if server or text(a, "mcp.gateway.decision"):
        if not server:
            raise BadValue("tool call without mcp.server.name")
        return SOURCE, server
    if s.kind == SPAN_KIND_CLIENT:
        return CLIENT_SOURCE, text(a, "server.address")
    service = text(a, "service.name")
    if not service or service.startswith("unknown_service"):
        raise BadValue("MCP server span without mcp.server.name or resource service.name")
    return SERVER_SOURCE, service


def _tool_call(a: Mapping[str, Any], time_ns: int, duration_ms: float | None, error: bool, span_name: str,
               batch: Batch, extra: dict[str, Any], source: str = SOURCE, server: str | None = None) -> ToolCall:
    tool = text(a, "gen_ai.tool.name", "mcp.tool.name")
    if not tool and span_name.startswith("tools/call "):
        tool = span_name[len("tools/call "):].strip() or None
    if not tool:
        raise BadValue("tool call without gen_ai.tool.name")
    if source == SOURCE:
        server = text(a, "mcp.server.name", "mcp.server.id")
        if not server:
            raise BadValue("tool call without mcp.server.name")
    decision = (text(a, "mcp.gateway.decision") or "allow").lower()
    if decision not in BLOCK | ALLOW:
        raise BadValue(f"mcp.gateway.decision must be allow or block, got {decision[:40]!r}")
    policy_id = policy_name = policy_description = None
    error_type = text(a, "error.type")
    if decision in BLOCK:
        outcome = "blocked"
        policy_id = text(a, "policy.id")
        if not policy_id:
            raise BadValue("blocked tool call without policy.id")
        policy_name = text(a, "policy.name") or policy_id
        policy_description = text(a, "policy.description")
        batch.policies.setdefault(policy_id, (policy_name, policy_description))
        error_type = None
    elif error or error_type:
        outcome = "error"
        error_type = (error_type or "error")[:200]
    else:
        outcome = "ok"
    agent = text(a, "agent.id", "gen_ai.agent.id", "gen_ai.agent.name")
    if agent:
        batch.agents.setdefault(agent, text(a, "gen_ai.agent.name", "agent.name") or agent)
    user = user_id(a, "enduser.id")
    instance = text(a, "agent.instance.id")
    if instance:
        batch.agent_instances.setdefault(instance, (agent, user))
    attrs = stored(a)
    attrs.update(extra)
    return ToolCall(
        time_ns=time_ns, source=source, user_id=user, agent_id=agent, agent_instance_id=instance,
        session_id=text(a, "session.id", "gen_ai.conversation.id", "mcp.session.id"), mcp_server_id=server,
        tool_name=tool, outcome=outcome, duration_ms=duration_ms, error_type=error_type, policy_id=policy_id,
        policy_name=policy_name, policy_description=policy_description, attributes=attrs)


def span(s: SpanView, batch: Batch, ctx: Context) -> bool:
    source, server = _reporter(s)
    start = ctx.check_time(s.start_ns, "span start time")
    if s.end_ns and s.end_ns < s.start_ns:
        raise BadValue("span ends before it starts")
    duration = (s.end_ns - s.start_ns) / 1e6 if s.end_ns else None
    if duration is not None and duration > MAX_DURATION_MS:
        raise BadValue("span lasts more than a week")
    batch.tool_calls.append(_tool_call(s.attrs, start, duration, s.error, s.name, batch,
                                       {"trace_id": s.trace_id, "span_id": s.span_id}, source, server))
    return True


def log_event(ev: LogEvent, batch: Batch, ctx: Context) -> bool:
    time_ns = ctx.check_time(ev.time_ns)
    duration = number(ev.attrs, "duration_ms", maximum=MAX_DURATION_MS)
    batch.tool_calls.append(_tool_call(ev.attrs, time_ns, duration, False, "", batch, {}))
    return True
