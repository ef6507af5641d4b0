"""The demo's data, planned before anything is sent: 30 days (by default) of users, sessions of
Claude Code and Codex with their LLM requests, and MCP tool calls through a gateway, some blocked
by a policy, with the directory (groups, tags, policies) that describes them.

`plan()` is pure: seeded, anchored on the start of the current hour, so a rerun within the hour
plans the same records (and the receiver deduplicates them). agent_analytics/demo.py sends it.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

from agent_analytics import demo_budgets
from agent_analytics import demo_enforcement as enforcement
from agent_analytics import demo_health

UTC = timezone.utc
NS = 1_000_000_000

GROUPS = {"platform": "Platform", "data": "Data", "web": "Web"}
# What each team's machines set in OTEL_RESOURCE_ATTRIBUTES (department, team.id, cost_center):
# a user's team is their group's, but every fifth user is in the SRE team (mapped onto the
# Platform group by the directory's rule) and every sixth sets no attributes (unattributed).
TEAMS = {"platform": ("engineering", "cc-100"), "data": ("engineering", "cc-200"), "web": ("product", "cc-300"),
         "sre": ("engineering", "cc-100")}
TEAM_GROUPS = {"platform": ["platform", "sre"], "data": ["data"], "web": ["web"]}
FIRST_NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
               "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yolanda"]
DOMAIN = "example.com"

AGENTS = {
    "claude-code": {"name": "Claude Code", "tags": ["coding-agent", "anthropic"]},
    "codex": {"name": "Codex", "tags": ["coding-agent", "openai"]},
}
MODELS = {  # agent -> [(model, weight)]
    "claude-code": [("claude-sonnet-4-5", 0.7), ("claude-haiku-4-5", 0.2), ("claude-opus-4-1", 0.1)],
    "codex": [("gpt-5", 0.6), ("gpt-5-mini", 0.4)],
}
PROVIDERS = {"claude-code": "anthropic", "codex": "openai"}

MCP_SERVERS: dict[str, dict[str, Any]] = {
    "github": {"name": "GitHub", "tags": ["scm", "internal"], "tools": {
        "search_code": [], "get_issue": [], "create_issue": ["write"], "create_pull_request": ["write"],
        "delete_repository": ["destructive"]}},
    "jira": {"name": "Jira", "tags": ["ticketing", "internal"], "tools": {
        "search_issues": [], "get_issue": [], "create_issue": ["write"], "transition_issue": ["write"]}},
    "slack": {"name": "Slack", "tags": ["chat", "external"], "tools": {
        "search_messages": [], "post_message": ["write"]}},
    "postgres": {"name": "Production Postgres", "tags": ["database", "production"], "tools": {
        "query": ["read"], "execute": ["write", "destructive"]}},
    "filesystem": {"name": "Filesystem", "tags": ["local"], "tools": {
        "read_file": [], "write_file": ["write"], "list_directory": []}},
}
# Relative popularity of each tool in a session.
TOOL_WEIGHTS = {
    ("github", "search_code"): 12, ("github", "get_issue"): 6, ("github", "create_issue"): 2,
    ("github", "create_pull_request"): 2, ("github", "delete_repository"): 0.15,
    ("jira", "search_issues"): 5, ("jira", "get_issue"): 5, ("jira", "create_issue"): 1.5,
    ("jira", "transition_issue"): 2, ("slack", "search_messages"): 3, ("slack", "post_message"): 2,
    ("postgres", "query"): 6, ("postgres", "execute"): 1.2,
    ("filesystem", "read_file"): 14, ("filesystem", "write_file"): 6, ("filesystem", "list_directory"): 8,
}
POLICIES = {
    "pol-no-destructive": ("No destructive repository actions", "Deleting repositories is never allowed to agents"),
    "pol-readonly-prod-db": ("Read-only production database", "Agents may query production but not write to it"),
    "pol-external-chat": ("No posting to external channels", "Agents may not post to channels shared with customers"),
    "pol-secrets": ("Secret files", "Agents may not read .env files or key material"),
}
# (server, tool) -> (policy, probability that policy blocks the call)
BLOCK_RULES = {
    ("github", "delete_repository"): ("pol-no-destructive", 1.0),
    ("postgres", "execute"): ("pol-readonly-prod-db", 0.7),
    ("slack", "post_message"): ("pol-external-chat", 0.25),
    ("filesystem", "read_file"): ("pol-secrets", 0.02),
}
ERROR_RATE = 0.04


@dataclass
class User:
    id: str           # the email: what the agents send as user.email
    name: str
    group: str
    anon_id: str      # Claude Code's user.id (install hash)
    agents: list[str]
    utc_offset_h: int  # working hours in the user's own day
    # The resource attributes the user's agents are started with (none: unattributed).
    resource: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    time: datetime
    model: str
    input_tokens: int   # excluding cache (Claude Code's meaning); Codex adds the cached back
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    duration_ms: int
    # Who made it and how (Claude Code says; demo_health.py plans them): a subagent's name (None:
    # the main thread), the effort asked for, the speed, the time to first token.
    subagent: str | None = None
    effort: str | None = None
    speed: str | None = None
    ttft_ms: int | None = None


@dataclass
class ApiError:
    """A model API request that failed for good (after `attempt` attempts); `exhausted`: the
    agent gave up retrying it (Claude Code's api_retries_exhausted)."""
    time: datetime
    model: str
    status: int
    attempt: int
    exhausted: bool = False


@dataclass
class ToolCall:
    start: datetime
    duration_ms: int
    server: str
    tool: str
    outcome: str                 # ok | error | blocked
    policy: str | None = None


@dataclass
class Session:
    id: str
    user: User
    agent: str
    instance: str
    start: datetime
    end: datetime
    requests: list[Request] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    # Permission decisions and MCP server connections (demo_enforcement.py).
    enforcement: enforcement.SessionEnforcement = field(default_factory=enforcement.SessionEnforcement)
    errors: list[ApiError] = field(default_factory=list)


@dataclass
class Plan:
    now: datetime
    users: list[User]
    directory: dict[str, Any]
    sessions: list[Session]
    seed: int = 0

    def counts(self) -> dict[str, int]:
        return {"users": len(self.users), "sessions": len(self.sessions),
                "llm_requests": sum(len(s.requests) for s in self.sessions),
                "tool_calls": sum(len(s.tool_calls) for s in self.sessions),
                "blocked_calls": sum(c.outcome == "blocked" for s in self.sessions for c in s.tool_calls),
                "decisions": sum(len(s.enforcement.decisions or ()) for s in self.sessions),
                "api_errors": sum(len(s.errors) for s in self.sessions)}


def _weighted(rng: random.Random, pairs: Sequence[tuple[Any, float]]) -> Any:
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def _users(rng: random.Random, n: int) -> list[User]:
    groups = list(GROUPS)
    users = []
    for i in range(n):
        first = FIRST_NAMES[i % len(FIRST_NAMES)] + ("" if i < len(FIRST_NAMES) else str(i // len(FIRST_NAMES)))
        agents = _weighted(rng, [(["claude-code"], 0.5), (["codex"], 0.2), (["claude-code", "codex"], 0.3)])
        users.append(User(id=f"{first}@{DOMAIN}", name=first.capitalize(), group=groups[i % len(groups)],
                          anon_id=f"{rng.getrandbits(128):032x}", agents=agents,
                          utc_offset_h=rng.choice([-5, 0, 1, 2]), resource=_resource(i, groups[i % len(groups)])))
    return users


def _resource(i: int, group: str) -> dict[str, str]:
    """User i's OTEL_RESOURCE_ATTRIBUTES (see TEAMS)."""
    if i % 6 == 5:
        return {}
    team = "sre" if i % 5 == 4 else group
    department, cost_center = TEAMS[team]
    return {"department": department, "team.id": team, "cost_center": cost_center}


def _instance(user: User, agent: str) -> str:
    return f"{user.id.split('@')[0]}-{'laptop' if agent == 'claude-code' else 'codex-cli'}"


def directory_document(users: list[User]) -> dict[str, Any]:
    """Users, groups and members, agents and their tags, agent instances, MCP servers, tools
    and their resource tags, policies: what a team would curate through the directory API
    (plan() adds the budgets, sized against the plan's spending: demo_budgets.py)."""
    return {
        "users": [{"id": u.id, "email": u.id, "display_name": u.name} for u in users],
        "groups": [{"id": g, "name": name, "members": [u.id for u in users if u.group == g],
                    "attribution": {"team": TEAM_GROUPS[g]}} for g, name in GROUPS.items()],
        "agents": [{"id": a, "name": spec["name"], "tags": spec["tags"]} for a, spec in AGENTS.items()],
        "agent_instances": [{"id": _instance(u, a), "agent_id": a, "user_id": u.id,
                             "name": f"{u.name}'s {AGENTS[a]['name']}"} for u in users for a in u.agents],
        "mcp_servers": [{"id": s, "name": spec["name"], "tags": spec["tags"]} for s, spec in MCP_SERVERS.items()],
        "tools": [{"mcp_server_id": s, "name": t, "tags": tags} for s, spec in MCP_SERVERS.items()
                  for t, tags in spec["tools"].items()],
        "policies": [{"id": p, "name": n, "description": d} for p, (n, d) in POLICIES.items()],
    }


def _session(rng: random.Random, user: User, agent: str, start: datetime, now: datetime, idx: int) -> Session:
    minutes = max(3, int(rng.lognormvariate(3.3, 0.7)))          # median ~27 min, a long tail
    end = min(start + timedelta(minutes=minutes), now - timedelta(minutes=1))
    sid = f"{rng.getrandbits(128):032x}"
    sid = f"{sid[:8]}-{sid[8:12]}-{sid[12:16]}-{sid[16:20]}-{sid[20:]}"
    s = Session(sid, user, agent, _instance(user, agent), start, end)
    span = max(1.0, (end - start).total_seconds())
    model = _weighted(rng, MODELS[agent])
    heavy = rng.random() < 0.08  # a few sessions burn far more than the rest (the top 5%)
    for _ in range(max(1, int(rng.gauss(14, 6)) * (4 if heavy else 1))):
        t = start + timedelta(seconds=rng.uniform(0, span))
        m = model if rng.random() > 0.1 else _weighted(rng, MODELS[agent])
        cache_read = int(rng.uniform(5_000, 60_000) * (1 if agent == "claude-code" else 0.6))
        s.requests.append(Request(t, m, input_tokens=int(rng.uniform(200, 4_000)),
                                  output_tokens=int(rng.uniform(80, 2_500)), cache_read_tokens=cache_read,
                                  cache_write_tokens=int(rng.uniform(0, 3_000)) if agent == "claude-code" else 0,
                                  duration_ms=int(rng.uniform(800, 25_000))))
    tools = list(TOOL_WEIGHTS.items())
    for _ in range(max(0, int(rng.gauss(9, 5)))):
        (server, tool), _w = _weighted(rng, [(x, x[1]) for x in tools])
        t = start + timedelta(seconds=rng.uniform(0, span))
        outcome, policy = "ok", None
        rule = BLOCK_RULES.get((server, tool))
        if rule and rng.random() < rule[1]:
            outcome, policy = "blocked", rule[0]
        elif rng.random() < ERROR_RATE:
            outcome = "error"
        s.tool_calls.append(ToolCall(t, 2 if outcome == "blocked" else int(rng.uniform(30, 3_000)),
                                     server, tool, outcome, policy))
    s.requests.sort(key=lambda r: r.time)
    s.tool_calls.sort(key=lambda c: c.start)
    s.enforcement = enforcement.plan_session(s.id, agent, start, end)
    return s


def plan(days: int = 30, users: int = 12, seed: int = 7, now: datetime | None = None) -> Plan:
    """The whole demo dataset, deterministic for (days, users, seed, hour of `now`)."""
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    rng = random.Random(seed)
    people = _users(rng, users)
    sessions: list[Session] = []
    first_day = (now - timedelta(days=days)).date()
    for d in range(days + 1):
        day = first_day + timedelta(days=d)
        weekend = day.weekday() >= 5
        for u in people:
            n = rng.choices([0, 1, 2, 3], weights=[0.8, 0.15, 0.05, 0] if weekend else [0.2, 0.4, 0.3, 0.1])[0]
            for _ in range(n):
                local_hour = rng.uniform(8, 18.5)
                start = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
                    hours=local_hour - u.utc_offset_h)
                if start < now - timedelta(days=days) or start >= now - timedelta(minutes=10):
                    continue
                sessions.append(_session(rng, u, rng.choice(u.agents), start, now, len(sessions)))
    # An incident two days ago: one agent instance keeps trying to write to production for an
    # hour, the kind of surge the "Blocked tool calls surge" alert rule is there for.
    culprit = next((u for u in people if "claude-code" in u.agents), people[0])
    agent = "claude-code" if "claude-code" in culprit.agents else culprit.agents[0]
    start = now - timedelta(days=2, hours=3)
    incident = _session(rng, culprit, agent, start, now, len(sessions))
    incident.end = start + timedelta(hours=1)
    incident.tool_calls += [ToolCall(start + timedelta(seconds=70 * i), 2, "postgres", "execute", "blocked",
                                     "pol-readonly-prod-db") for i in range(45)]
    incident.tool_calls.sort(key=lambda c: c.start)
    if agent == "claude-code":  # and its hook refusing the same cleanup command again and again
        incident.enforcement.decisions = sorted(
            (incident.enforcement.decisions or []) + enforcement.hook_surge(start + timedelta(minutes=5), 30),
            key=lambda d: d.time)
    sessions.append(incident)
    sessions.sort(key=lambda s: s.start)
    for s in sessions:
        demo_health.plan_session(s)
    demo_health.overload(incident)
    document = directory_document(people)
    document["budgets"] = demo_budgets.budgets(people, GROUPS, sessions, now)
    return Plan(now, people, document, sessions, seed)
