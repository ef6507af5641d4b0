"""Codex CLI: `codex.sse_event` of kind `response.completed` carries a request's tokens;
`conversation.id` is the session; log records have time 0, so `event.timestamp` is the time.

Codex's `input_token_count` INCLUDES cached tokens, while llm_requests.input_tokens excludes
them: input_tokens = input - cached (- cache writes, should Codex ever report any).
Tool events follow Claude Code's rule: `tool_result` of an MCP tool is the call; a
`tool_decision` denied by `config` is a blocked call with policy `codex:config`. Every
`tool_decision` and `sandbox_outcome` is also an enforcement fact (normalise_enforcement.py).
"""
from __future__ import annotations

from typing import Any

from . import normalise_enforcement as enforcement
from .agent import Agent
from .identity import user_id
from .records import LogEvent
from .rows import MAX_DURATION_MS, MAX_TOKENS, Batch, Context, LlmError, LlmRequest, ToolCall
from .values import BadValue, count, flag, number, stored, text

SOURCE = "codex"
CODEX = "codex"  # its agent id
PROVIDER = "openai"
TOKEN_KEYS = ("input_token_count", "output_token_count", "cached_token_count", "cache_write_token_count")
CONFIG_POLICY = enforcement.CODEX_POLICIES["config"]


def _common(ev: LogEvent, batch: Batch) -> tuple[str | None, str | None]:
    batch.agents[CODEX] = AGENT.name
    return user_id(ev.attrs), text(ev.attrs, "conversation.id")


def sse_event(ev: LogEvent, batch: Batch, ctx: Context) -> bool:
    a = ev.attrs
    if text(a, "event.kind") != "response.completed":
        return False
    tokens = {k: count(a, k, maximum=MAX_TOKENS) for k in TOKEN_KEYS}
    if tokens["input_token_count"] is None and tokens["output_token_count"] is None:
        return False  # Codex also logs a token-less response.completed per stream: not a request
    time_ns = ctx.check_time(ev.time_ns)
    model = text(a, "model")
    if not model:
        raise BadValue("codex.sse_event response.completed without model")
    total_in = tokens["input_token_count"] or 0
    cached = tokens["cached_token_count"] or 0
    written = tokens["cache_write_token_count"] or 0
    if cached + written > total_in:
        raise BadValue(f"cached tokens ({cached + written}) exceed input_token_count ({total_in})")
    user, session = _common(ev, batch)
    batch.llm_requests.append(LlmRequest(
        time_ns=time_ns, source=SOURCE, session_id=session, user_id=user, agent_id=CODEX, provider=PROVIDER,
        model=model, input_tokens=total_in - cached - written, output_tokens=tokens["output_token_count"] or 0,
        cache_read_tokens=cached, cache_write_tokens=written, reported_cost_usd=None,
        latency_ms=number(a, "duration_ms", maximum=MAX_DURATION_MS) or None, attributes=stored(a)))
    return True


def api_request(ev: LogEvent, batch: Batch, ctx: Context) -> bool:
    """Successful API requests are counted by their sse_event; failed ones become errors. Codex
    sends one per attempt, the retried ones too, and nothing when it gives up retrying."""
    a = ev.attrs
    status = number(a, "http.response.status_code", maximum=999)
    error = text(a, "error.message", "error")
    if (status is None or status < 400) and not error:
        return False
    time_ns = ctx.check_time(ev.time_ns)
    user, session = _common(ev, batch)
    batch.llm_errors.append(LlmError(
        time_ns=time_ns, source=SOURCE, session_id=session, user_id=user, agent_id=CODEX, provider=PROVIDER,
        model=text(a, "model") or "unknown", error=(error or "")[:500] or None,
        status_code=None if status is None else int(status),
        duration_ms=number(a, "duration_ms", maximum=MAX_DURATION_MS), attributes=stored(a),
        attempt=_attempt(a.get("attempt"))))
    return True


def _attempt(value: Any) -> int | None:
    """Codex counts attempts from 0 (its first try); stored as Claude Code counts them, from 1.
    Not a count (absent, negative, huge, not a number): unknown, the error still stored."""
    try:
        attempt = int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
    return attempt + 1 if 0 <= attempt < 1_000_000 else None


def _mcp_tool(a) -> tuple[str, str] | None:
    name = text(a, "tool_name")
    if name is None:
        raise BadValue("tool event without tool_name")
    server = text(a, "mcp_server")
    if server:
        prefix = f"mcp__{server}__"
        return server, name[len(prefix):] if name.startswith(prefix) else name
    if name.startswith("mcp__"):
        srv, sep, tool = name[5:].partition("__")
        if sep and srv and tool:
            return srv, tool
    return None  # a built-in tool (shell, apply_patch...)


def tool_result(ev: LogEvent, batch: Batch, ctx: Context) -> bool:
    a = ev.attrs
    tool = _mcp_tool(a)
    if tool is None:
        return False
    time_ns = ctx.check_time(ev.time_ns)
    success = flag(a, "success")
    user, session = _common(ev, batch)
    batch.tool_calls.append(ToolCall(
        time_ns=time_ns, source=SOURCE, user_id=user, agent_id=CODEX, agent_instance_id=None, session_id=session,
        mcp_server_id=tool[0], tool_name=tool[1], outcome="error" if success is False else "ok",
        duration_ms=number(a, "duration_ms", maximum=MAX_DURATION_MS),
        error_type="tool_error" if success is False else None,
        policy_id=None, policy_name=None, policy_description=None, attributes=stored(a)))
    return True


def _who(ev: LogEvent, batch: Batch) -> enforcement.Who:
    user, session = _common(ev, batch)
    return enforcement.Who(SOURCE, CODEX, user, None, session)


def tool_decision(ev: LogEvent, batch: Batch, ctx: Context) -> bool:
    """Every decision is an enforcement fact; a denial of an MCP tool by config is also its
    blocked call."""
    a = ev.attrs
    tool = _mcp_tool(a)
    enforcement.codex_decision(ev, batch, ctx, tool, _who(ev, batch))
    if tool is None or (text(a, "decision") or "").lower() != "denied" or (text(a, "source") or "").lower() != "config":
        return True
    time_ns = ctx.check_time(ev.time_ns)
    policy_id, name, description = CONFIG_POLICY
    batch.policies[policy_id] = (name, description)
    user, session = _common(ev, batch)
    batch.tool_calls.append(ToolCall(
        time_ns=time_ns, source=SOURCE, user_id=user, agent_id=CODEX, agent_instance_id=None, session_id=session,
        mcp_server_id=tool[0], tool_name=tool[1], outcome="blocked", duration_ms=None, error_type=None,
        policy_id=policy_id, policy_name=name, policy_description=description, attributes=stored(a)))
    return True


def sandbox_outcome(ev: LogEvent, batch: Batch, ctx: Context) -> bool:
    return enforcement.codex_sandbox_outcome(ev, batch, ctx, _who(ev, batch))


EVENTS = {
    "codex.sse_event": sse_event,
    "codex.api_request": api_request,
    "codex.tool_result": tool_result,
    "codex.tool_decision": tool_decision,
    "codex.sandbox_outcome": sandbox_outcome,
}

# Its records name no scope of its own; its service.name starts with `codex` (codex_cli_rs).
AGENT = Agent(source=SOURCE, agent_id=CODEX, name="Codex", prefix="codex.", events=EVENTS, service_prefix="codex")
