"""Every telemetry source, and how a record is told to be one's: the agents, each declared once by
its normaliser (`AGENT`, ingest/agent.py), then the sources of tool calls and model calls that
follow an OpenTelemetry convention (an MCP gateway, MCP servers and clients, GenAI
instrumentation), and `other`.

ingest/normalise.py dispatches each record to a source's normaliser, and ingest/stats.py counts
it under that source, through the same functions here; the Telemetry dashboard, `agent-analytics
status` and the set-up guide name the sources from `SOURCES` and `AGENTS`.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from . import normalise_claude_code as claude_code
from . import normalise_codex as codex
from . import normalise_gateway as gateway
from . import normalise_genai as genai
from .agent import Agent, LogHandler, PointHandler
from .records import LogEvent, Point, SpanView
from .rows import Batch, Context
from .values import text

# The agents, in the order the dashboards list them (first match wins where two could claim a record).
AGENTS: tuple[Agent, ...] = (claude_code.AGENT, codex.AGENT)

OTHER = "other"
# Source id -> how people call it (the Telemetry dashboard and `agent-analytics status`).
SOURCES: dict[str, str] = {
    **{a.source: a.name for a in AGENTS},
    gateway.SOURCE: "MCP gateway", gateway.SERVER_SOURCE: "MCP server", gateway.CLIENT_SOURCE: "MCP client",
    genai.SOURCE: "GenAI SDK", OTHER: "Other",
}
# The attributes naming the agent instance of a record of each source (others: INSTANCE_KEYS).
INSTANCE_KEYS = ("agent.instance.id", "service.instance.id")
_INSTANCE_KEYS = {a.source: a.instance_keys for a in AGENTS}

SpanHandler = Callable[[SpanView, Batch, Context], bool]


def instance_keys(source: str) -> tuple[str, ...]:
    return _INSTANCE_KEYS.get(source, INSTANCE_KEYS)


def _by_service(resource: Mapping[str, Any]) -> str:
    """The agent whose service sent a record no normaliser takes, else `other`."""
    name = text(resource, "service.name") or ""
    for a in AGENTS:
        if name == a.service or (a.service_prefix and name.startswith(a.service_prefix)):
            return a.source
    return OTHER


# --- logs -----------------------------------------------------------------------------------

def owner(resource: Mapping[str, Any], scope: str) -> Agent | None:
    """The agent every log record of this resource and scope is from (by scope or service.name)."""
    service = resource.get("service.name")
    for a in AGENTS:
        if (a.scopes and scope.startswith(a.scopes)) or (a.service is not None and service == a.service):
            return a
    return None


def event_name(own: Agent | None, record: Mapping[str, Any], body: str, rec: Any) -> str:
    """A log record's event name: its body, for an agent that names events there; else
    `event.name`, completed with the prefix of the agent it is from; else the OTLP field."""
    if body and body.startswith(_BODY_PREFIXES):
        return body
    name = text(record, "event.name") or ""
    if own is not None and name and not name.startswith(own.prefix):
        return own.prefix + name
    if not name:
        event_name = rec.event_name
        if event_name and " " not in event_name:
            return event_name      # the OTLP field, when a sender puts the name there
    return name


def log_route(name: str, attrs: Mapping[str, Any], own: Agent | None,
              resource: Mapping[str, Any]) -> tuple[LogHandler | None, str]:
    """A log record's normaliser function (None: no normaliser takes it) and its source, as
    `log_handler` and `log_source` tell them; an agent's event is looked up in one table."""
    agent = _EVENT_AGENTS.get(name)
    if agent is not None:
        return agent.events.get(name), own.source if own is not None else agent.source
    handler = log_handler(name, attrs)
    return handler, log_source(name, own, handler, resource)


def log_handler(name: str, attrs: Mapping[str, Any]) -> LogHandler | None:
    for a in AGENTS:
        if name.startswith(a.prefix):
            return a.events.get(name)
    if gateway.is_gateway_event(name, attrs):
        return gateway.log_event
    return None


def log_source(name: str, own: Agent | None, handler: LogHandler | None, resource: Mapping[str, Any]) -> str:
    """As `log_handler` dispatches: records of an agent's are the agent's whether taken or not."""
    if own is not None:
        return own.source
    for a in AGENTS:
        if name.startswith(a.prefix):
            return a.source
    if handler is gateway.log_event:
        return gateway.SOURCE
    return _by_service(resource)


# Each log record runs these, so what depends only on the declarations is worked out once: the
# prefixes of agents naming events in the body, and the agent `log_handler` and `log_source` give
# each agent's event (an event under another agent's earlier prefix would never reach its own
# agent, so it is left to them). The handler itself is read from the agent's events at each call.
_BODY_PREFIXES = tuple(a.prefix for a in AGENTS if a.body_names)
_EVENT_AGENTS: dict[str, Agent] = {
    name: a for a in AGENTS for name in a.events if next((b for b in AGENTS if name.startswith(b.prefix)), None) is a}


# --- metrics --------------------------------------------------------------------------------

def point_handler(metric: str) -> PointHandler | None:
    for a in AGENTS:
        if metric in a.metrics:
            return a.metric_point
    if metric == genai.TOKEN_USAGE_METRIC:
        return genai.metric_point
    return None


def metric_source(metric: str, resource: Mapping[str, Any]) -> str:
    for a in AGENTS:
        if metric.startswith(a.prefix):
            return a.source
    if metric.startswith("gen_ai."):
        return genai.SOURCE
    return _by_service(resource)


# --- traces ---------------------------------------------------------------------------------

def span_handler(s: SpanView) -> SpanHandler | None:
    if gateway.is_gateway_span(s.name, s.attrs):
        return gateway.span
    if genai.is_llm_span(s.attrs):
        return genai.span
    return None


def span_source(attrs: Mapping[str, Any], kind: int, handler: SpanHandler | None,
                resource: Mapping[str, Any]) -> str:
    """As normalise_gateway tells who reported an MCP span: a gateway when the span names the
    server it went to (or a gateway decision), else the MCP client (a CLIENT span) or the MCP
    server itself."""
    if handler is gateway.span or "mcp.method.name" in attrs:
        if text(attrs, "mcp.server.name", "mcp.server.id", "mcp.gateway.decision"):
            return gateway.SOURCE
        return gateway.CLIENT_SOURCE if kind == gateway.SPAN_KIND_CLIENT else gateway.SERVER_SOURCE
    if handler is genai.span or "gen_ai.operation.name" in attrs:
        return genai.SOURCE
    return _by_service(resource)
