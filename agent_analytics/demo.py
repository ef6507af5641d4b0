"""`agent-analytics demo`: fill an empty installation with 30 days of realistic activity.

The data travels the real path: the directory (groups, tags, policies) through the directory
API, and the telemetry as OTLP/HTTP protobuf made by the OpenTelemetry SDK's own exporters:
- Claude Code sessions: `claude_code.api_request` events (logs) and the session's
  `claude_code.token.usage` / `claude_code.cost.usage` metrics (delta sums);
- Codex sessions: `codex.conversation_starts` and `codex.sse_event` (response.completed) events;
- MCP tool calls through a gateway: `tools/call {tool}` spans with the user, agent, agent
  instance, MCP server and, for blocked calls, the policy.

`plan()` is pure (seeded, anchored on the start of the current hour, so a rerun within the hour
sends the same records and the receiver deduplicates them); `send()` does the I/O.
"""
from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Sequence

UTC = timezone.utc
NS = 1_000_000_000

GROUPS = {"platform": "Platform", "data": "Data", "web": "Web"}
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


@dataclass
class Request:
    time: datetime
    model: str
    input_tokens: int   # excluding cache (Claude Code's meaning); Codex adds the cached back
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    duration_ms: int


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
                "blocked_calls": sum(c.outcome == "blocked" for s in self.sessions for c in s.tool_calls)}


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
                          utc_offset_h=rng.choice([-5, 0, 1, 2])))
    return users


def _instance(user: User, agent: str) -> str:
    return f"{user.id.split('@')[0]}-{'laptop' if agent == 'claude-code' else 'codex-cli'}"


def directory_document(users: list[User]) -> dict[str, Any]:
    """Users, groups and members, agents and their tags, agent instances, MCP servers, tools
    and their resource tags, policies: what a team would curate through the directory API."""
    return {
        "users": [{"id": u.id, "email": u.id, "display_name": u.name} for u in users],
        "groups": [{"id": g, "name": name, "members": [u.id for u in users if u.group == g]}
                   for g, name in GROUPS.items()],
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
    sessions.append(incident)
    sessions.sort(key=lambda s: s.start)
    return Plan(now, people, directory_document(people), sessions, seed)


# --- sending -----------------------------------------------------------------------------------

class DemoError(RuntimeError):
    pass


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ns(t: datetime) -> int:
    return int(t.timestamp() * NS)


def _tally(exporter: Any, results: dict[str, int], kind: str) -> Any:
    """Wrap an SDK exporter so that the demo knows how many exports the endpoint refused."""
    inner_export = exporter.export

    def export(batch, *args, **kwargs):
        result = inner_export(batch, *args, **kwargs)
        ok = getattr(result, "name", str(result)) == "SUCCESS"
        results[f"{kind}_{'ok' if ok else 'failed'}"] = results.get(f"{kind}_{'ok' if ok else 'failed'}", 0) + 1
        return result

    exporter.export = export
    return exporter


def _seeded_ids(p: Plan):
    """Trace and span ids drawn from the plan's seed and hour: a rerun sends the same spans
    (and the receiver, keyed on content, keeps them once) instead of fresh random ids."""
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class SeededIds(IdGenerator):
        def __init__(self) -> None:
            self.rng = random.Random(f"{p.seed}:{p.now.isoformat()}")

        def generate_span_id(self) -> int:
            return self.rng.getrandbits(64) or 1

        def generate_trace_id(self) -> int:
            return self.rng.getrandbits(128) or 1

    return SeededIds()


def _price(model: str, provider: str, r: Request) -> float | None:
    from genai_prices import Usage, calc_price

    try:
        usage = Usage(input_tokens=r.input_tokens + r.cache_read_tokens + r.cache_write_tokens,
                      cache_read_tokens=r.cache_read_tokens, cache_write_tokens=r.cache_write_tokens,
                      output_tokens=r.output_tokens)
        return float(calc_price(usage, model, provider_id=provider).total_price)
    except LookupError:
        return None


def send(p: Plan, endpoint: str, token: str, say: Callable[[str], None] = print, timeout_s: int = 60) -> dict[str, int]:
    """Directory through the API, then every session through the OTLP endpoint."""
    import requests
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics.export import (AggregationTemporality, Metric, MetricExportResult,
                                                  MetricsData, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum)
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanKind, Status, StatusCode

    endpoint = endpoint.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"} if token else {}  # none: AA_ALLOW_NO_AUTH
    resp = requests.post(f"{endpoint}/api/v1/directory", json=p.directory, headers=headers, timeout=timeout_s)
    if resp.status_code != 200:
        raise DemoError(f"directory API answered {resp.status_code}: {resp.text[:300]}")
    say("directory: " + ", ".join(f"{len(v)} {k}" for k, v in p.directory.items()))

    results: dict[str, int] = {}
    # Queues that hold everything: the batch processors drop records when their queue is full.
    total_records = max(1000, sum(len(s.requests) + len(s.tool_calls) + 1 for s in p.sessions) + 16)

    def log_provider(resource: dict[str, str]) -> LoggerProvider:
        lp = LoggerProvider(resource=Resource.create(resource))
        exporter = _tally(OTLPLogExporter(endpoint=f"{endpoint}/v1/logs", headers=headers,
                                          compression=Compression.Gzip, timeout=timeout_s), results, "logs")
        lp.add_log_record_processor(BatchLogRecordProcessor(exporter, max_queue_size=total_records,
                                                            max_export_batch_size=500, schedule_delay_millis=60_000))
        return lp

    claude_logs = log_provider({"service.name": "claude-code", "service.version": "2.1.328", "os.type": "darwin",
                                "host.arch": "arm64"})
    codex_logs = log_provider({"service.name": "codex_cli_rs", "service.version": "0.169.0", "env": "prod"})
    claude_log = claude_logs.get_logger("com.anthropic.claude_code.events")
    codex_log = codex_logs.get_logger("codex_otel")
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": "mcp-gateway",
                                                               "service.version": "1.4.0"}),
                                     id_generator=_seeded_ids(p))
    span_exporter = _tally(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", headers=headers,
                                            compression=Compression.Gzip, timeout=timeout_s), results, "traces")
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter, max_queue_size=total_records,
                                                          max_export_batch_size=500, schedule_delay_millis=60_000))
    tracer = tracer_provider.get_tracer("agent-analytics-demo-gateway")
    metric_exporter = OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics", headers=headers,
                                         compression=Compression.Gzip, timeout=timeout_s)
    claude_resource = Resource.create({"service.name": "claude-code", "service.version": "2.1.328"})
    scope = InstrumentationScope("com.anthropic.claude_code", "2.1.328")
    token_points: list[NumberDataPoint] = []
    cost_points: list[NumberDataPoint] = []

    def flush_metrics() -> None:
        if not token_points:
            return
        delta = AggregationTemporality.DELTA
        data = MetricsData([ResourceMetrics(claude_resource, [ScopeMetrics(scope, [
            Metric("claude_code.token.usage", "Number of tokens used", "tokens", Sum(list(token_points), delta, True)),
            Metric("claude_code.cost.usage", "Cost of the session", "USD", Sum(list(cost_points), delta, True)),
        ], "")], "")])
        result = metric_exporter.export(data)
        key = "metrics_ok" if result == MetricExportResult.SUCCESS else "metrics_failed"
        results[key] = results.get(key, 0) + 1
        token_points.clear()
        cost_points.clear()

    for s in p.sessions:
        u = s.user
        provider = PROVIDERS[s.agent]
        if s.agent == "claude-code":
            base = {"session.id": s.id, "user.email": u.id, "user.id": u.anon_id, "organization.id": "org-demo",
                    "terminal.type": "vscode", "app.version": "2.1.328"}
            per_model: dict[tuple[str, str], float] = {}
            cost_by_model: dict[str, float] = {}
            for i, r in enumerate(s.requests):
                cost = _price(r.model, provider, r)
                attrs: dict[str, Any] = {
                    **base, "event.name": "api_request", "event.timestamp": _iso(r.time), "event.sequence": i,
                    "model": r.model, "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
                    "cache_read_tokens": r.cache_read_tokens, "cache_creation_tokens": r.cache_write_tokens,
                    "duration_ms": r.duration_ms, "ttft_ms": min(r.duration_ms, 900),
                    "request_id": f"req_{s.id[:8]}_{i}", "query_source": "repl_main_thread"}
                if cost is not None:
                    attrs["cost_usd"] = cost
                    cost_by_model[r.model] = cost_by_model.get(r.model, 0.0) + cost
                claude_log.emit(body="claude_code.api_request", attributes=attrs, timestamp=_ns(r.time))
                for kind, n in (("input", r.input_tokens), ("output", r.output_tokens),
                                ("cacheRead", r.cache_read_tokens), ("cacheCreation", r.cache_write_tokens)):
                    per_model[(r.model, kind)] = per_model.get((r.model, kind), 0) + n
            # The session's metrics: one delta point per model and token type over the session.
            start_ns, end_ns = _ns(s.start), _ns(s.end)
            for (model, kind), tokens in per_model.items():
                token_points.append(NumberDataPoint({**base, "model": model, "type": kind}, start_ns, end_ns, tokens))
            for model, model_cost in cost_by_model.items():
                cost_points.append(NumberDataPoint({**base, "model": model}, start_ns, end_ns, model_cost))
            if len(token_points) >= 400:
                flush_metrics()
        else:
            base = {"conversation.id": s.id, "user.email": u.id, "user.account_id": u.anon_id[:16],
                    "app.version": "0.169.0", "originator": "codex_cli_rs", "terminal.type": "iterm"}
            codex_log.emit(body="codex.conversation_starts", timestamp=_ns(s.start), attributes={
                **base, "event.name": "codex.conversation_starts", "event.timestamp": _iso(s.start),
                "model": s.requests[0].model, "approval_policy": "on-request", "sandbox_policy": "workspace-write"})
            for r in s.requests:
                codex_log.emit(body="codex.sse_event", timestamp=_ns(r.time), attributes={
                    **base, "event.name": "codex.sse_event", "event.timestamp": _iso(r.time),
                    "event.kind": "response.completed", "model": r.model, "duration_ms": r.duration_ms,
                    # Codex's input count INCLUDES the cached tokens.
                    "input_token_count": r.input_tokens + r.cache_read_tokens,
                    "cached_token_count": r.cache_read_tokens, "output_token_count": r.output_tokens,
                    "reasoning_token_count": r.output_tokens // 3,
                    "tool_token_count": r.input_tokens + r.cache_read_tokens + r.output_tokens})
        for i, c in enumerate(s.tool_calls):
            attrs = {"mcp.method.name": "tools/call", "gen_ai.operation.name": "execute_tool",
                     "gen_ai.tool.name": c.tool, "mcp.server.name": c.server, "mcp.session.id": f"mcp-{s.id[:8]}",
                     "mcp.protocol.version": "2025-06-18", "jsonrpc.request.id": str(i + 1),
                     "network.transport": "tcp", "server.address": f"{c.server}.mcp.internal",
                     "user.email": u.id, "agent.id": s.agent, "gen_ai.agent.name": AGENTS[s.agent]["name"],
                     "agent.instance.id": s.instance, "session.id": s.id,
                     "mcp.gateway.decision": "block" if c.outcome == "blocked" else "allow"}
            if c.outcome == "blocked" and c.policy:
                name, description = POLICIES[c.policy]
                attrs.update({"policy.id": c.policy, "policy.name": name, "policy.description": description})
            if c.outcome == "error":
                attrs["error.type"] = "tool_error"
            span = tracer.start_span(f"tools/call {c.tool}", kind=SpanKind.SERVER, attributes=attrs,
                                     start_time=_ns(c.start))
            if c.outcome == "error":
                span.set_status(Status(StatusCode.ERROR, "tool reported an error"))
            span.end(end_time=_ns(c.start) + c.duration_ms * 1_000_000)
    flush_metrics()
    flushed = all([claude_logs.force_flush(timeout_s * 1000), codex_logs.force_flush(timeout_s * 1000),
                   tracer_provider.force_flush(timeout_s * 1000)])
    claude_logs.shutdown()
    codex_logs.shutdown()
    tracer_provider.shutdown()
    metric_exporter.shutdown()
    failed = {k: v for k, v in results.items() if k.endswith("_failed")}
    if failed or not flushed:
        raise DemoError(f"the OTLP endpoint refused some exports: {failed or 'flush timed out'} "
                        "(check the endpoint URL and the ingest token)")
    return results


def _destination(args: argparse.Namespace) -> tuple[str, str]:
    """The endpoint and token given, else this installation's own (AA_HOST, AA_INGEST_PORT and
    the first of AA_INGEST_TOKENS, read as `agent-analytics up` reads them)."""
    from agent_analytics.config import Config, ConfigError

    try:
        cfg = Config.from_env()
    except ConfigError as exc:
        sys.exit(f"demo: configuration error: {exc}")
    endpoint = args.endpoint or cfg.ingest_url()
    token = args.token or (cfg.ingest_tokens[0] if cfg.ingest_tokens else "")
    if not token and not cfg.allow_no_auth:
        sys.exit("demo: no ingest token: pass --token, or set AA_INGEST_TOKENS as for `agent-analytics up`")
    return endpoint, token


def cmd_demo(args: argparse.Namespace) -> int:
    endpoint, token = _destination(args)
    p = plan(days=args.days, users=args.users, seed=args.seed)
    counts = p.counts()
    print(f"demo: {counts['sessions']} sessions of {counts['users']} users over {args.days} days: "
          f"{counts['llm_requests']} LLM requests, {counts['tool_calls']} tool calls "
          f"({counts['blocked_calls']} blocked), to {endpoint}", flush=True)
    try:
        results = send(p, endpoint, token)
    except DemoError as exc:
        sys.exit(f"demo: {exc}")
    except OSError as exc:
        sys.exit(f"demo: cannot reach {endpoint}: {exc}")
    print("demo: sent " + ", ".join(f"{v} {k.replace('_ok', '')} export(s)" for k, v in sorted(results.items())))
    return 0


def register_commands(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="fill an empty installation with 30 days of realistic demo activity, "
                                           "sent through the OTLP endpoint and the directory API (a rerun within "
                                           "the same hour changes nothing; a later one adds a second dataset)")
    p.add_argument("--endpoint", help="the service's ingest URL (OTLP/HTTP and directory API; default: this "
                                      "installation's, from AA_HOST and AA_INGEST_PORT)")
    p.add_argument("--token", help="an ingest token (default: the first of AA_INGEST_TOKENS)")
    p.add_argument("--days", type=int, default=30, help="days of history (default %(default)s)")
    p.add_argument("--users", type=int, default=12, help="number of people (default %(default)s)")
    p.add_argument("--seed", type=int, default=7, help="random seed: the same seed makes the same data")
    p.set_defaults(func=cmd_demo)
