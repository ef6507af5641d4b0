"""Claude Code: `api_request` / `api_error` events, MCP tool events, token and cost metrics.

How tool events become tool calls (documented in docs/ingest.md):
- only MCP tools (`mcp__<server>__<tool>`) are tool calls; built-in tools (Bash, Read...) are not;
- a `tool_result` makes the call (ok, or error when `success` is false);
- a `tool_decision` with decision `reject` from `config`, `hook` or `user_reject` makes a blocked
  call, with the policy in POLICIES (a hook's own where known); an `accept` makes no call (its
  `tool_result` follows), nor does `user_abort` (an interrupt: nothing was decided about the tool);
- a `tool_result` that carries `decision_type=reject` is skipped: the decision already counted.
So each MCP tool use is exactly one row. Every `tool_decision` (built-in tools too), the hook
events and `mcp_server_connection` are also enforcement facts (normalise_enforcement.py).
"""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Mapping

from . import normalise_enforcement as enforcement
from . import normalise_productivity as productivity
from .agent import Agent
from .content_keys import content_key
from .identity import user_id
from .pricing import priced_model
from .records import LogEvent, Point
from .rows import (MAX_COST_USD, MAX_DURATION_MS, MAX_TOKENS, Batch, Context, LlmError, LlmRequest,
                   MetricPoint, ToolCall)
from .values import BadValue, count, flag, number, stored, text

SOURCE = "claude_code"
CLAUDE_CODE = "claude-code"  # its agent id
PROVIDER = "anthropic"

# A rejection's `source` and the policy recorded for it (a hook's own, where known).
POLICIES = enforcement.CLAUDE_POLICIES

TOKEN_TYPES = {"input": "input", "output": "output", "cacheRead": "cache_read", "cacheCreation": "cache_write"}
METRICS = {"claude_code.token.usage": "tokens", "claude_code.cost.usage": "cost"}


def _name(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def mcp_tool(attrs: Mapping[str, Any]) -> tuple[str | None, str] | None:
    """(MCP server, tool) for an MCP tool, None for a built-in tool."""
    name = text(attrs, "tool_name")
    if name is None:
        raise BadValue("tool event without tool_name")
    if name.startswith("mcp__"):
        server, sep, tool = name[len("mcp__"):].partition("__")
        if sep and server and tool:
            return server, tool
        raise BadValue(f"malformed MCP tool name {name[:80]!r}")
    if name == "mcp_tool":
        # Without OTEL_LOG_TOOL_DETAILS=1 Claude Code hides which MCP tool it was.
        params = attrs.get("tool_parameters")
        try:
            parsed = json.loads(params) if isinstance(params, str) else None
        except (ValueError, RecursionError):  # not JSON, or nested too deep to parse
            parsed = None
        if not isinstance(parsed, dict):
            return None, "mcp_tool"
        # JSON the agent wrote: only strings are names.
        return _name(parsed.get("mcp_server_name")), _name(parsed.get("mcp_tool_name")) or "mcp_tool"
    return None


def _common(ev: LogEvent, batch: Batch) -> tuple[str | None, str | None]:
    batch.agents[CLAUDE_CODE] = AGENT.name
    return user_id(ev.attrs), text(ev.attrs, "session.id")


def _instance(ev: LogEvent, batch: Batch, user: str | None) -> str | None:
    """Claude Code's `user.id` is a hash of one installation: the agent instance."""
    install = text(ev.attrs, "user.id")
    if install:
        batch.agent_instances.setdefault(install, (CLAUDE_CODE, user))
    return install


# Claude Code's `query_source` on events names the thread ('sdk', 'repl_main_thread', ...) or, for
# a subagent, starts with "agent:" ('agent:builtin:Explore', 'agent:custom'); its metric points say
# 'main' or 'subagent'. Both are stored as 'main' or 'subagent' (migration 0013 says the same).
SUBAGENT_PREFIX = "agent:"
MAX_LABEL = 200


def query_source(attrs: Mapping[str, Any]) -> str | None:
    if "query_source" not in attrs:  # (the common case, read without text())
        return None
    raw = text(attrs, "query_source")
    if not raw:
        return None
    return "subagent" if raw.startswith(SUBAGENT_PREFIX) or raw == "subagent" else "main"


def _label(attrs: Mapping[str, Any], key: str) -> str | None:
    if key not in attrs:  # (the common case, read without text())
        return None
    value = text(attrs, key)
    return value[:MAX_LABEL] if value else None


def _decimal(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(repr(value))


def api_request(ev: LogEvent, batch: Batch, ctx: Context) -> bool:
    a = ev.attrs
    time_ns = ctx.check_time(ev.time_ns)
    model = text(a, "model")
    if not model:
        raise BadValue("api_request without model")
    tokens_in = count(a, "input_tokens", maximum=MAX_TOKENS)
    tokens_out = count(a, "output_tokens", maximum=MAX_TOKENS)
    cache_read = count(a, "cache_read_tokens", maximum=MAX_TOKENS)
    cache_write = count(a, "cache_creation_tokens", maximum=MAX_TOKENS)
    # Since 2.1.3xx also split by lifetime: 5-minute and 1-hour writes have different prices.
    write_5m = count(a, "cache_creation_5m_tokens", maximum=MAX_TOKENS)
    write_1h = count(a, "cache_creation_1h_tokens", maximum=MAX_TOKENS)
    if cache_write is None and (write_5m is not None or write_1h is not None):
        cache_write = (write_5m or 0) + (write_1h or 0)
    # More 1-hour writes than writes: one of the agent's figures is wrong, and which one decides
    # the price. The request is kept with the total as reported (its session's token metric says
    # the same), and left unpriced (pricing.INCONSISTENT_SPLIT): counted in every cost figure's
    # unpriced tokens, where dropping it lost its cost silently.
    inconsistent = bool(write_1h and write_1h > (cache_write or 0))
    if tokens_in is None and tokens_out is None and cache_read is None and cache_write is None:
        raise BadValue("api_request without token counts")
    cost = number(a, "cost_usd", maximum=MAX_COST_USD)
    latency = number(a, "duration_ms", maximum=MAX_DURATION_MS)
    ttft = number(a, "ttft_ms", maximum=MAX_DURATION_MS)
    user, session = _common(ev, batch)
    batch.llm_requests.append(LlmRequest(
        time_ns=time_ns, source=SOURCE, session_id=session, user_id=user, agent_id=CLAUDE_CODE,
        provider=PROVIDER, model=model,
        input_tokens=tokens_in or 0,  # Claude Code's input already excludes cache
        output_tokens=tokens_out or 0, cache_read_tokens=cache_read or 0, cache_write_tokens=cache_write or 0,
        reported_cost_usd=_decimal(cost), latency_ms=latency, attributes=stored(a),
        cache_write_1h_tokens=0 if inconsistent else write_1h or 0, split_inconsistent=inconsistent,
        ttft_ms=ttft, query_source=query_source(a), agent_name=_label(a, "agent.name"), effort=_label(a, "effort"),
        speed=_label(a, "speed")))
    return True


def _http_status(value: Any) -> int | None:
    """An HTTP status, or None: Claude Code sends "undefined" when the request never got an
    answer, and anything else that is no status (a huge or infinite number) is not one either."""
    try:
        status = int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
    return status if 100 <= status <= 999 else None


def _attempt(value: Any) -> int | None:
    try:
        attempt = int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
    return attempt if 0 <= attempt <= 1_000_000 else None


def _failure(ev: LogEvent, batch: Batch, ctx: Context, kind: str, attempt_key: str, duration_key: str) -> bool:
    a = ev.attrs
    time_ns = ctx.check_time(ev.time_ns)
    user, session = _common(ev, batch)
    batch.llm_errors.append(LlmError(
        time_ns=time_ns, source=SOURCE, session_id=session, user_id=user, agent_id=CLAUDE_CODE,
        provider=PROVIDER, model=text(a, "model") or "unknown", error=(text(a, "error") or "")[:500] or None,
        status_code=_http_status(a.get("status_code")),
        duration_ms=number(a, duration_key, maximum=MAX_DURATION_MS),
        attributes=stored(a), kind=kind, attempt=_attempt(a.get(attempt_key)), query_source=query_source(a),
        agent_name=_label(a, "agent.name")))
    return True


def api_error(ev: LogEvent, batch: Batch, ctx: Context) -> bool:
    """A request that failed for good: retried failures that then succeed send no event."""
    return _failure(ev, batch, ctx, "error", "attempt", "duration_ms")


def api_retries_exhausted(ev: LogEvent, batch: Batch, ctx: Context) -> bool:
    """Claude Code gave up retrying (after the last attempt's api_error): `total_attempts`, and
    the time spent retrying as its duration."""
    return _failure(ev, batch, ctx, "retries_exhausted", "total_attempts", "total_retry_duration_ms")


def tool_result(ev: LogEvent, batch: Batch, ctx: Context) -> bool:
    a = ev.attrs
    tool = mcp_tool(a)
    if tool is None or text(a, "decision_type") == "reject":
        return False
    time_ns = ctx.check_time(ev.time_ns)
    success = flag(a, "success")
    duration = number(a, "duration_ms", maximum=MAX_DURATION_MS)
    user, session = _common(ev, batch)
    error_type = None if success is not False else (text(a, "error_type", "error") or "error")[:200]
    batch.tool_calls.append(ToolCall(
        time_ns=time_ns, source=SOURCE, user_id=user, agent_id=CLAUDE_CODE, agent_instance_id=_instance(ev, batch, user),
        session_id=session, mcp_server_id=tool[0], tool_name=tool[1],
        outcome="error" if success is False else "ok", duration_ms=duration, error_type=error_type,
        policy_id=None, policy_name=None, policy_description=None, attributes=stored(a)))
    return True


def tool_decision(ev: LogEvent, batch: Batch, ctx: Context) -> bool:
    """Every decision is an enforcement fact; a block of an MCP tool is also its blocked call."""
    a = ev.attrs
    tool = mcp_tool(a)
    who = _who(ev, batch)
    policy = enforcement.claude_decision(ev, batch, ctx, tool, who)
    if tool is None or policy is None:
        return True
    time_ns = ctx.check_time(ev.time_ns)
    policy_id, name, description = policy
    batch.tool_calls.append(ToolCall(
        time_ns=time_ns, source=SOURCE, user_id=who.user_id, agent_id=CLAUDE_CODE,
        agent_instance_id=who.agent_instance_id, session_id=who.session_id, mcp_server_id=tool[0],
        tool_name=tool[1], outcome="blocked", duration_ms=None, error_type=None, policy_id=policy_id,
        policy_name=name, policy_description=description, attributes=stored(a)))
    return True


def _who(ev: LogEvent, batch: Batch) -> enforcement.Who:
    user, session = _common(ev, batch)
    return enforcement.Who(SOURCE, CLAUDE_CODE, user, _instance(ev, batch, user), session)


def mcp_server_connection(ev: LogEvent, batch: Batch, ctx: Context) -> bool:
    return enforcement.mcp_server_connection(ev, batch, ctx, _who(ev, batch))


EVENTS = {
    "claude_code.api_request": api_request,
    "claude_code.api_error": api_error,
    "claude_code.api_retries_exhausted": api_retries_exhausted,
    "claude_code.tool_result": tool_result,
    "claude_code.tool_decision": tool_decision,
    "claude_code.mcp_server_connection": mcp_server_connection,
    "claude_code.hook_registered": enforcement.hook_registered,
    "claude_code.hook_execution_complete": enforcement.hook_execution_complete,
}


def metric_point(p: Point, batch: Batch, ctx: Context) -> bool:
    """`token.usage` and `cost.usage`: the session totals, as metric points."""
    if p.kind != "sum":
        raise BadValue(f"{p.metric} must be a sum, got a {p.kind or 'metric without data'}")
    if p.value is None:
        raise BadValue(f"{p.metric} point without a value")
    metric = METRICS[p.metric]
    a = p.attrs
    time_ns = ctx.check_time(p.time_ns)
    value = number({"value": p.value}, "value", maximum=MAX_TOKENS * 1000 if metric == "tokens" else MAX_COST_USD)
    token_type = ""
    if metric == "tokens":
        raw = text(a, "type")
        if raw not in TOKEN_TYPES:
            raise BadValue(f"token.usage point with unknown type {raw!r}")
        token_type = TOKEN_TYPES[raw]
    batch.agents[CLAUDE_CODE] = AGENT.name
    # The model as the session's events name it (`claude-sonnet-4-5[1m]` -> `claude-sonnet-4-5`):
    # the points give a session's tokens and its events its cost, so both must name one model.
    # A series is the metric plus every attribute (resource and point), as OTLP defines it.
    series = content_key("series", raw=True, m=p.metric, r=p.resource, a=p.record)
    batch.metric_points.append(MetricPoint(
        time_ns=time_ns, start_time_ns=p.start_time_ns or None, source=SOURCE,
        session_id=text(a, "session.id"), user_id=user_id(a), agent_id=CLAUDE_CODE, provider=PROVIDER,
        model=priced_model(text(a, "model") or "unknown"), metric=metric, token_type=token_type, value=value or 0.0,
        cumulative=p.cumulative, series_key=series, query_source=query_source(a), agent_name=_label(a, "agent.name"),
        effort=_label(a, "effort")))
    return True


def any_metric_point(p: Point, batch: Batch, ctx: Context) -> bool:
    """Token and cost points (metric_point), or what the session bought (normalise_productivity)."""
    if p.metric in productivity.METRICS:
        batch.agents[CLAUDE_CODE] = AGENT.name
        return productivity.metric_point(p, batch, ctx, SOURCE, CLAUDE_CODE)
    return metric_point(p, batch, ctx)


# Claude Code's log records come from its own scope and service; each names its event in its body.
# Its `user.id` hashes one installation: the agent instance.
AGENT = Agent(source=SOURCE, agent_id=CLAUDE_CODE, name="Claude Code", prefix="claude_code.", events=EVENTS,
              metrics=frozenset(METRICS) | frozenset(productivity.METRICS), metric_point=any_metric_point,
              scopes=("com.anthropic.claude_code",),
              service="claude-code", body_names=True, instance_keys=("user.id",))
