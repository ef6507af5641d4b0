"""The demo's agent enforcement signals (Security, "Agent enforcement"): each session's permission
decisions (Claude Code's `tool_decision` with its `permission_mode`, a PreToolUse hook's block as
`hook_execution_complete` then the rejection; Codex's `codex.tool_decision` and
`codex.sandbox_outcome`) and Claude Code's MCP server connections (`mcp_server_connection`),
sent as the agents send them, through the OTLP log exporters of `demo.send`.

Drawn from a generator seeded by the session's id, so the rest of the plan (demo.py's own
generator) is the same with or without them.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

# Claude Code's built-in tools and how often a session uses each.
CLAUDE_TOOLS = {"Bash": 6, "Read": 8, "Edit": 5, "Write": 2, "WebFetch": 1}
# MCP tools whose use Claude Code allowed (its refusals of MCP tools would be blocked calls of the
# gateway's servers too, which the demo's plan of tool calls already holds).
CLAUDE_MCP_TOOLS = ["mcp__github__search_code", "mcp__jira__search_issues", "mcp__filesystem__read_file"]
# How Claude Code's decisions are made in a session that asks (default mode): (decision, source).
CLAUDE_SOURCES = [(("accept", "config"), 0.55), (("accept", "user_temporary"), 0.15),
                  (("accept", "user_permanent"), 0.08), (("reject", "config"), 0.08),
                  (("reject", "user_reject"), 0.05), (("reject", "user_abort"), 0.04), (("reject", "hook"), 0.05)]
PERMISSION_MODES = [("default", 0.8), ("acceptEdits", 0.14), ("bypassPermissions", 0.06)]
# The hook a team configured in its project settings: no `rm -rf` through Bash.
HOOK = ("PreToolUse", "Bash", "projectSettings")
# MCP servers the agents are configured with, and how each fails when it does.
MCP_CONNECTIONS = {"github": ("http", None, 0.01), "jira": ("http", "ECONNREFUSED", 0.06),
                   "filesystem": ("stdio", None, 0.0), "legacy-docs": ("stdio", "ENOENT", 0.9)}


@dataclass
class Decision:
    time: datetime
    tool: str
    decision: str              # Claude Code: accept | reject; Codex: approved | denied
    source: str                # as the agent names it (config, hook, user_...; Codex: Config, User)
    sandbox_denied: bool = False  # Codex: the sandbox refused what the approved command tried


@dataclass
class Connection:
    time: datetime
    server: str
    status: str                # connected | failed
    error_code: str | None = None


@dataclass
class SessionEnforcement:
    permission_mode: str = "default"
    decisions: list[Decision] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)


def _weighted(rng: random.Random, pairs: list[tuple[Any, float]]) -> Any:
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def plan_session(session_id: str, agent: str, start: datetime, end: datetime) -> SessionEnforcement:
    """A session's decisions and connections, drawn from its id."""
    rng = random.Random(f"enforcement:{session_id}")
    span = max(1.0, (end - start).total_seconds())
    out = SessionEnforcement()
    at = [start + timedelta(seconds=rng.uniform(0, span)) for _ in range(max(1, int(rng.gauss(8, 4))))]
    if agent == "claude-code":
        out.permission_mode = _weighted(rng, PERMISSION_MODES)
        for t in sorted(at):
            tool = _weighted(rng, list(CLAUDE_TOOLS.items()))
            if out.permission_mode == "bypassPermissions":
                decision, source = ("reject", "config") if rng.random() < 0.03 else ("accept", "config")
            else:
                decision, source = _weighted(rng, CLAUDE_SOURCES)
                if source == "hook":
                    tool = HOOK[1]
            if decision == "accept" and rng.random() < 0.2:
                tool = rng.choice(CLAUDE_MCP_TOOLS)
            out.decisions.append(Decision(t, tool, decision, source))
        for server, (_, error, p_fail) in MCP_CONNECTIONS.items():
            if server == "legacy-docs" and rng.random() < 0.7:
                continue  # configured in some projects only
            failed = error is not None and rng.random() < p_fail
            out.connections.append(Connection(start + timedelta(seconds=rng.uniform(0.2, 3)), server,
                                              "failed" if failed else "connected", error if failed else None))
    else:
        for t in sorted(at):
            denied = rng.random() < 0.05
            out.decisions.append(Decision(t, "exec_command", "denied" if denied else "approved",
                                          "User" if denied else "Config",
                                          sandbox_denied=not denied and rng.random() < 0.07))
    return out


def hook_surge(start: datetime, blocks: int) -> list[Decision]:
    """An agent retrying what the team's hook refuses, once every 70 seconds."""
    return [Decision(start + timedelta(seconds=70 * i), HOOK[1], "reject", "hook") for i in range(blocks)]


def records(s: SessionEnforcement) -> int:
    """At most how many log records `emit_claude` or `emit_codex` sends for the session."""
    hooks = any(d.source == "hook" for d in s.decisions or ())
    return (len(s.decisions or ()) * 2 + len(s.connections or ()) + hooks)


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ns(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000_000)


def emit_claude(s: SessionEnforcement, start: datetime, base: dict[str, Any], emit: Callable[..., None]) -> None:
    """Claude Code's events for the session: `emit(body=, attributes=, timestamp=)` sends one."""
    def event(name: str, t: datetime, **attrs: Any) -> None:
        emit(body=f"claude_code.{name}", timestamp=_ns(t),
             attributes={**base, "event.name": name, "event.timestamp": _iso(t), **attrs})

    if any(d.source == "hook" for d in s.decisions or ()):
        event("hook_registered", start, hook_event=HOOK[0], hook_type="command", hook_source=HOOK[2],
              hook_matcher=HOOK[1], safe_mode="false")
    for c in s.connections or ():
        attrs: dict[str, Any] = {"status": c.status, "server_name": c.server,
                                 "transport_type": MCP_CONNECTIONS.get(c.server, ("stdio",))[0],
                                 "server_scope": "project", "duration_ms": 40}
        if c.error_code:
            attrs.update(error_code=c.error_code, error=f"{c.error_code}: could not start or reach {c.server}")
        event("mcp_server_connection", c.time, **attrs)
    for i, d in enumerate(s.decisions or ()):
        prompt = f"{base['session.id'][:8]}-p{i}"
        if d.source == "hook":
            event("hook_execution_complete", d.time - timedelta(milliseconds=30), **{
                "prompt.id": prompt, "hook_event": HOOK[0], "hook_name": f"{HOOK[0]}:{HOOK[1]}", "num_hooks": 1,
                "num_success": 0, "num_blocking": 1, "hook_source": "merged", "total_duration_ms": 25})
        event("tool_decision", d.time, **{
            "prompt.id": prompt, "decision": d.decision, "source": d.source, "tool_name": d.tool,
            "tool_source": "mcp" if d.tool.startswith("mcp__") else "builtin", "tool_use_id": f"toolu_{base['session.id'][:8]}{i:04d}",
            "permission_mode": s.permission_mode})


def emit_codex(s: SessionEnforcement, base: dict[str, Any], emit: Callable[..., None]) -> None:
    """Codex's events for the session."""
    for i, d in enumerate(s.decisions or ()):
        call = f"call_{base['conversation.id'][:8]}{i:04d}"
        emit(body="codex.tool_decision", timestamp=_ns(d.time), attributes={
            **base, "event.name": "codex.tool_decision", "event.timestamp": _iso(d.time), "tool_name": d.tool,
            "call_id": call, "decision": d.decision, "source": d.source})
        if d.sandbox_denied:
            t = d.time + timedelta(milliseconds=80)
            emit(body="codex.sandbox_outcome", timestamp=_ns(t), attributes={
                **base, "event.name": "codex.sandbox_outcome", "event.timestamp": _iso(t), "tool_name": d.tool,
                "call_id": call, "outcome": "denied"})
