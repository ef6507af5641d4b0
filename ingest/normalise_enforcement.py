"""The agents' own enforcement and health events, as `Enforcement` facts (migration 0012):

- every permission decision on a tool use, built-in and MCP tools alike: Claude Code's
  `tool_decision` (decision, `source`, `permission_mode`) and Codex's `codex.tool_decision`;
- Codex's `codex.sandbox_outcome`: the sandbox refused what a tool tried, while the tool's own
  `codex.tool_result` may still say success;
- Claude Code's `mcp_server_connection`: each connection attempt to an MCP server and its status.

A decision is `blocked` when the agent's enforcement stopped the tool: a Claude Code rejection by
its permission rules (`config`), a hook or the user when asked (`user_reject`); a Codex denial; a
sandbox denial. A `user_abort` (an interrupt) decides nothing about the tool and is no block.

A hook's rejection is one block, counted from the `tool_decision` (source `hook`), with the hook
as its policy: the blocking `hook_execution_complete` just before it (same session and prompt,
`num_blocking` > 0) names it (`hook_name`, "PreToolUse:Bash": the hook event and its matcher),
and `hook_registered` says where it was configured (`hook_source`: projectSettings...), recorded
as the policy's description in the directory. A rejection whose hook run arrived in an earlier
request than the decision is recorded under the generic hook policy.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from .records import LogEvent
from .rows import Batch, Context, Enforcement
from .values import BadValue, count, stored, text


class Who(NamedTuple):
    """Who an event is about, as the agent's normaliser reads it."""
    source: str                 # the fact's source (claude_code, codex)
    agent_id: str
    user_id: str | None
    agent_instance_id: str | None
    session_id: str | None


# A Claude Code rejection's `source` and the policy recorded for it. `config` is a deny rule, but
# equally a tool no allow rule permits where Claude Code cannot ask (`-p`): the event does not tell.
CLAUDE_POLICIES = {
    "config": ("claude_code:config", "Claude Code permission rule or not allowed (config)",
               "Refused by Claude Code's permission settings: a deny rule, or no allow rule for the tool"
               " where Claude Code could not ask (non-interactive -p)"),
    "hook": ("claude_code:hook", "Claude Code hook",
             "Refused by a Claude Code PreToolUse hook"),
    "user_reject": ("claude_code:user_reject", "Claude Code user rejected",
                    "Rejected when Claude Code asked: by the user, or by the --permission-prompt-tool answering"
                    " for them"),
}
CODEX_POLICIES = {
    "config": ("codex:config", "Codex approval policy", "Denied by Codex's configured approval or sandbox policy"),
    "user": ("codex:user", "Codex user denied", "Denied by the user when Codex asked for approval"),
    "sandbox": ("codex:sandbox", "Codex sandbox",
                "Refused by Codex's sandbox (read-only or workspace-write): the command ran and the sandbox"
                " stopped what it tried"),
}
# Codex's review decisions: approved, approved_for_session... are accepts.
_CODEX_DECISIONS = {"denied": "reject", "abort": "abort"}
_SHORT = 80  # the longest decision, source, mode, status or error code kept


def _short(value: str | None) -> str | None:
    return value.lower()[:_SHORT] if value else None


def _hook_policy(hook_name: str) -> tuple[str, str, str]:
    event, _, matcher = hook_name.partition(":")
    return (f"claude_code:hook:{hook_name}", f"Claude Code hook {hook_name}",
            f"Refused by a Claude Code {event or 'PreToolUse'} hook" + (f" matching {matcher}" if matcher else ""))


def _record(batch: Batch, who: Who, kind: str, time_ns: int, attrs: Any, *, server: str | None,
            tool: str | None, outcome: str, decision_source: str | None = None, permission_mode: str | None = None,
            error_code: str | None = None, policy: tuple[str, str, str] | None = None) -> None:
    """One enforcement fact of `who`; `policy` (id, name, description): the block's, which the
    directory learns (first sight wins)."""
    if policy:
        batch.policies.setdefault(policy[0], (policy[1], policy[2]))
    batch.enforcement.append(Enforcement(
        time_ns=time_ns, source=who.source, kind=kind, user_id=who.user_id, agent_id=who.agent_id,
        agent_instance_id=who.agent_instance_id, session_id=who.session_id, mcp_server_id=server, tool_name=tool,
        outcome=outcome, decision_source=decision_source, permission_mode=permission_mode, error_code=error_code,
        blocked=policy is not None, policy_id=policy and policy[0], policy_name=policy and policy[1],
        attributes=stored(attrs)))


def claude_policy(ev: LogEvent, batch: Batch, source: str) -> tuple[str, str, str] | None:
    """The policy recorded for a rejection from `source`: for a hook, the blocking hook run just
    before it in this request when there is one."""
    if source == "hook":
        hook = batch.blocking_hooks.pop((text(ev.attrs, "session.id"), text(ev.attrs, "prompt.id")), None)
        if hook:
            return _hook_policy(hook)
    return CLAUDE_POLICIES.get(source)


def claude_decision(ev: LogEvent, batch: Batch, ctx: Context, tool: tuple[str | None, str] | None,
                    who: Who) -> tuple[str, str, str] | None:
    """Record a Claude Code `tool_decision` (`tool`: its MCP server and tool, None for a built-in
    tool); returns the policy of a block, else None."""
    a = ev.attrs
    decision = _short(text(a, "decision"))
    if not decision:
        raise BadValue("tool_decision without decision")
    source = _short(text(a, "source"))
    time_ns = ctx.check_time(ev.time_ns)
    policy = claude_policy(ev, batch, source) if decision == "reject" and source else None
    server, name = tool if tool else (None, text(a, "tool_name"))
    _record(batch, who, "decision", time_ns, a, server=server, tool=name, outcome=decision, decision_source=source,
            permission_mode=(text(a, "permission_mode") or "")[:_SHORT] or None, policy=policy)
    return policy


def hook_registered(ev: LogEvent, batch: Batch, ctx: Context) -> bool:
    """A configured hook: the directory learns where it was configured (first sight wins there)."""
    a = ev.attrs
    event, matcher = text(a, "hook_event"), text(a, "hook_matcher")
    if not event:
        return False
    hook_id, name, description = _hook_policy(f"{event}:{matcher}" if matcher else event)
    where = text(a, "hook_source")
    kind = text(a, "hook_type")
    batch.policies.setdefault(hook_id, (name, description + (f" ({kind} hook from {where})" if where else "")))
    return False


def hook_execution_complete(ev: LogEvent, batch: Batch, ctx: Context) -> bool:
    """A hook run that blocked names the policy of the rejection that follows it."""
    a = ev.attrs
    blocking = count(a, "num_blocking", maximum=1_000_000)
    hook = text(a, "hook_name")
    if blocking and hook:
        batch.blocking_hooks[(text(a, "session.id"), text(a, "prompt.id"))] = hook
    return False


def mcp_server_connection(ev: LogEvent, batch: Batch, ctx: Context, who: Who) -> bool:
    a = ev.attrs
    status = _short(text(a, "status"))
    if not status:
        raise BadValue("mcp_server_connection without status")
    time_ns = ctx.check_time(ev.time_ns)
    _record(batch, who, "mcp_connection", time_ns, a, server=text(a, "server_name") or None, tool=None, outcome=status,
            error_code=(text(a, "error_code") or "")[:_SHORT] or None)
    return True


def codex_decision(ev: LogEvent, batch: Batch, ctx: Context, tool: tuple[str, str] | None, who: Who) -> None:
    """Record a `codex.tool_decision` (`tool`: its MCP server and tool, None for a built-in tool)."""
    a = ev.attrs
    raw = _short(text(a, "decision"))
    if not raw:
        raise BadValue("codex.tool_decision without decision")
    decision = "accept" if raw.startswith("approved") else _CODEX_DECISIONS.get(raw, raw)
    source = _short(text(a, "source"))
    time_ns = ctx.check_time(ev.time_ns)
    policy = CODEX_POLICIES["config" if source == "config" else "user"] if decision == "reject" else None
    server, name = tool if tool else (None, text(a, "tool_name"))
    _record(batch, who, "decision", time_ns, a, server=server, tool=name, outcome=decision, decision_source=source,
            policy=policy)


def codex_sandbox_outcome(ev: LogEvent, batch: Batch, ctx: Context, who: Who) -> bool:
    a = ev.attrs
    outcome = _short(text(a, "outcome"))
    if not outcome:
        raise BadValue("codex.sandbox_outcome without outcome")
    time_ns = ctx.check_time(ev.time_ns)
    policy = CODEX_POLICIES["sandbox"] if outcome == "denied" else None
    _record(batch, who, "sandbox", time_ns, a, server=text(a, "mcp_server") or None, tool=text(a, "tool_name"),
            outcome=outcome, decision_source="sandbox", policy=policy)
    return True
