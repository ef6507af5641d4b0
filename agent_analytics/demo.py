"""`agent-analytics demo`: fill an empty installation with 30 days of realistic activity.

The data (agent_analytics/demo_plan.py) travels the real path: the directory (groups, tags,
policies) through the directory API, and the telemetry as OTLP/HTTP protobuf made by the
OpenTelemetry SDK's own exporters:
- Claude Code sessions: `claude_code.api_request` events (logs) and the session's
  `claude_code.token.usage` / `claude_code.cost.usage` metrics (delta sums), and what each
  session bought (lines of code, commits, pull requests, edit decisions, active time:
  demo_productivity.py);
- Claude Code's API errors (`claude_code.api_error`, `claude_code.api_retries_exhausted`), who made
  each request (main thread or subagent), its effort, speed and time to first token
  (agent_analytics/demo_health.py);
- Codex sessions: `codex.conversation_starts` and `codex.sse_event` (response.completed) events,
  and a `codex.api_request` per failed attempt;
- MCP tool calls through a gateway: `tools/call {tool}` spans with the user, agent, agent
  instance, MCP server and, for blocked calls, the policy;
- the agents' own enforcement: permission decisions, hook blocks, permission modes, Codex's
  sandbox denials and MCP server connections (demo_enforcement.py).

`plan()` is pure (seeded, anchored on the start of the current hour, so a rerun within the hour
sends the same records and the receiver deduplicates them); `send()` does the I/O.
"""
from __future__ import annotations

import argparse
import random
import sys
from datetime import datetime
from typing import Any, Callable

from agent_analytics import demo_productivity

# The plan's names, also read as demo.NAME (tests, bench).
from agent_analytics import demo_enforcement as enforcement
from agent_analytics import demo_health
from agent_analytics.demo_plan import (AGENTS, ApiError, GROUPS, MCP_SERVERS, MODELS, NS, POLICIES, PROVIDERS, UTC, Plan,
                                       Request, Session, ToolCall, User, _instance, directory_document, plan)


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
    total_records = max(1000, sum(len(s.requests) + len(s.tool_calls) + 1 + enforcement.records(s.enforcement)
                                  + 5 * len(s.errors)
                                  for s in p.sessions) + 16)

    def log_provider(resource: dict[str, str]) -> LoggerProvider:
        lp = LoggerProvider(resource=Resource.create(resource))
        exporter = _tally(OTLPLogExporter(endpoint=f"{endpoint}/v1/logs", headers=headers,
                                          compression=Compression.Gzip, timeout=timeout_s), results, "logs")
        lp.add_log_record_processor(BatchLogRecordProcessor(exporter, max_queue_size=total_records,
                                                            max_export_batch_size=500, schedule_delay_millis=60_000))
        return lp

    claude_logs = log_provider({"service.name": "claude-code", "service.version": "2.1.328", "os.type": "darwin",
                                "host.arch": "arm64"})
    codex_resource = {"service.name": "codex_cli_rs", "service.version": "0.169.0", "env": "prod"}
    # Codex puts OTEL_RESOURCE_ATTRIBUTES on its resource only: one provider per set of them.
    codex_providers: dict[tuple, LoggerProvider] = {}

    def codex_log_for(resource: dict[str, str]) -> Any:
        key = tuple(sorted(resource.items()))
        if key not in codex_providers:
            codex_providers[key] = log_provider({**codex_resource, **resource})
        return codex_providers[key].get_logger("codex_otel")
    claude_log = claude_logs.get_logger("com.anthropic.claude_code.events")
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
    value_points: dict[str, list[NumberDataPoint]] = {name: [] for name in demo_productivity.METRICS}

    def flush_metrics() -> None:
        if not token_points:
            return
        delta = AggregationTemporality.DELTA
        data = MetricsData([ResourceMetrics(claude_resource, [ScopeMetrics(scope, [
            Metric("claude_code.token.usage", "Number of tokens used", "tokens", Sum(list(token_points), delta, True)),
            Metric("claude_code.cost.usage", "Cost of the session", "USD", Sum(list(cost_points), delta, True)),
            *(Metric(name, description, unit, Sum(list(value_points[name]), delta, True))
              for name, (unit, description) in demo_productivity.METRICS.items() if value_points[name]),
        ], "")], "")])
        result = metric_exporter.export(data)
        key = "metrics_ok" if result == MetricExportResult.SUCCESS else "metrics_failed"
        results[key] = results.get(key, 0) + 1
        token_points.clear()
        cost_points.clear()
        for points in value_points.values():
            points.clear()

    for s in p.sessions:
        u = s.user
        provider = PROVIDERS[s.agent]
        if s.agent == "claude-code":
            # Claude Code copies OTEL_RESOURCE_ATTRIBUTES onto every event and metric point.
            base = {"session.id": s.id, "user.email": u.id, "user.id": u.anon_id, "organization.id": "org-demo",
                    "terminal.type": "vscode", "app.version": "2.1.328", **u.resource}
            per_model: dict[tuple[str, str, tuple], float] = {}
            cost_by_model: dict[tuple[str, tuple], float] = {}
            for i, r in enumerate(s.requests):
                cost = _price(r.model, provider, r)
                attrs: dict[str, Any] = {
                    **base, "event.name": "api_request", "event.timestamp": _iso(r.time), "event.sequence": i,
                    "model": r.model, "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
                    "cache_read_tokens": r.cache_read_tokens, "cache_creation_tokens": r.cache_write_tokens,
                    "duration_ms": r.duration_ms, "request_id": f"req_{s.id[:8]}_{i}",
                    **demo_health.request_attributes(r)}
                labels = demo_health.metric_labels(r)
                if cost is not None:
                    attrs["cost_usd"] = cost
                    cost_by_model[(r.model, labels)] = cost_by_model.get((r.model, labels), 0.0) + cost
                claude_log.emit(body="claude_code.api_request", attributes=attrs, timestamp=_ns(r.time))
                for kind, n in (("input", r.input_tokens), ("output", r.output_tokens),
                                ("cacheRead", r.cache_read_tokens), ("cacheCreation", r.cache_write_tokens)):
                    per_model[(r.model, kind, labels)] = per_model.get((r.model, kind, labels), 0) + n
            # The session's metrics: one delta point per model, token type, thread and effort over
            # the session.
            start_ns, end_ns = _ns(s.start), _ns(s.end)
            for (model, kind, labels), tokens in per_model.items():
                token_points.append(NumberDataPoint({**base, "model": model, "type": kind, **dict(labels)},
                                                    start_ns, end_ns, tokens))
            for (model, labels), model_cost in cost_by_model.items():
                cost_points.append(NumberDataPoint({**base, "model": model, **dict(labels)}, start_ns, end_ns,
                                                   model_cost))
            demo_health.emit_errors(s, base, lambda name, a, t: claude_log.emit(body=name, attributes=a, timestamp=t),
                                    _iso, _ns)
            for name, points in demo_productivity.points(demo_productivity.work(p.seed, s), base, start_ns, end_ns,
                                                         NumberDataPoint).items():
                value_points[name] += points
            if len(token_points) >= 400:
                flush_metrics()
            enforcement.emit_claude(s.enforcement, s.start, base, claude_log.emit)
        else:
            base = {"conversation.id": s.id, "user.email": u.id, "user.account_id": u.anon_id[:16],
                    "app.version": "0.169.0", "originator": "codex_cli_rs", "terminal.type": "iterm"}
            codex_log = codex_log_for(u.resource)
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
            enforcement.emit_codex(s.enforcement, base, codex_log.emit)
            demo_health.emit_errors(s, base, lambda name, a, t: codex_log.emit(body=name, attributes=a, timestamp=t),
                                    _iso, _ns)
        for i, c in enumerate(s.tool_calls):
            attrs = {"mcp.method.name": "tools/call", "gen_ai.operation.name": "execute_tool",
                     "gen_ai.tool.name": c.tool, "mcp.server.name": c.server, "mcp.session.id": f"mcp-{s.id[:8]}",
                     "mcp.protocol.version": "2025-06-18", "jsonrpc.request.id": str(i + 1),
                     "network.transport": "tcp", "server.address": f"{c.server}.mcp.internal",
                     "user.email": u.id, "agent.id": s.agent, "gen_ai.agent.name": AGENTS[s.agent]["name"],
                     "agent.instance.id": s.instance, "session.id": s.id,
                     "mcp.gateway.decision": "block" if c.outcome == "blocked" else "allow",
                     # The gateway passes on the calling process's resource attributes.
                     **u.resource}
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
    flushed = all([claude_logs.force_flush(timeout_s * 1000), tracer_provider.force_flush(timeout_s * 1000),
                   *(lp.force_flush(timeout_s * 1000) for lp in codex_providers.values())])
    claude_logs.shutdown()
    for lp in codex_providers.values():
        lp.shutdown()
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
