"""Any OpenTelemetry GenAI instrumentation: model-call spans and `gen_ai.client.token.usage`.

A span whose `gen_ai.operation.name` is a model call (chat, text_completion, generate_content,
embeddings) is one LLM request, timed by the span. `gen_ai.usage.input_tokens` INCLUDES cache
tokens by the conventions: cache reads and writes are taken out of it.

`gen_ai.client.token.usage` is a histogram per interval, not per request, so it cannot become
request rows: its sums are stored as metric points (tokens, input | output) beside the
Claude Code session totals. Agent-level spans (`invoke_agent`) are not counted: the model
calls beneath them are.
"""
from __future__ import annotations

from typing import Any, Mapping

from .content_keys import content_key
from .identity import user_id
from .records import Point, SpanView
from .rows import MAX_TOKENS, Batch, Context, LlmRequest, MetricPoint
from .values import BadValue, count, stored, text

SOURCE = "genai"
TOKEN_USAGE_METRIC = "gen_ai.client.token.usage"
MODEL_CALLS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
TOKEN_TYPES = {"input": "input", "output": "output"}


def is_llm_span(attrs: Mapping[str, Any]) -> bool:
    operation = text(attrs, "gen_ai.operation.name")
    if operation is None:
        # Older instrumentations name no operation; their token counts mark a model call.
        return "gen_ai.usage.input_tokens" in attrs or "gen_ai.usage.output_tokens" in attrs
    return operation in MODEL_CALLS


def _agent(attrs: Mapping[str, Any], batch: Batch) -> str | None:
    agent = text(attrs, "gen_ai.agent.id", "gen_ai.agent.name", "service.name")
    if agent and agent.startswith("unknown_service"):
        return None
    if agent:
        batch.agents.setdefault(agent, text(attrs, "gen_ai.agent.name") or agent)
    return agent


def _provider(attrs: Mapping[str, Any]) -> str:
    return text(attrs, "gen_ai.provider.name", "gen_ai.system") or "unknown"


def _model(attrs: Mapping[str, Any]) -> str:
    return text(attrs, "gen_ai.response.model", "gen_ai.request.model") or "unknown"


def span(s: SpanView, batch: Batch, ctx: Context) -> bool:
    a = s.attrs
    start = ctx.check_time(s.start_ns, "span start time")
    if s.end_ns and s.end_ns < s.start_ns:
        raise BadValue("span ends before it starts")
    total_in = count(a, "gen_ai.usage.input_tokens", maximum=MAX_TOKENS) or 0
    output = count(a, "gen_ai.usage.output_tokens", maximum=MAX_TOKENS) or 0
    cache_read = count(a, "gen_ai.usage.cache_read.input_tokens", maximum=MAX_TOKENS) or 0
    cache_write = count(a, "gen_ai.usage.cache_creation.input_tokens", maximum=MAX_TOKENS) or 0
    if cache_read + cache_write > total_in:
        raise BadValue(f"cache tokens ({cache_read + cache_write}) exceed gen_ai.usage.input_tokens ({total_in})")
    attrs = stored(a)
    attrs.update({"trace_id": s.trace_id, "span_id": s.span_id})
    batch.llm_requests.append(LlmRequest(
        time_ns=start, source=SOURCE, session_id=text(a, "gen_ai.conversation.id", "session.id"),
        user_id=user_id(a, "enduser.id"), agent_id=_agent(a, batch), provider=_provider(a), model=_model(a),
        input_tokens=total_in - cache_read - cache_write, output_tokens=output, cache_read_tokens=cache_read,
        cache_write_tokens=cache_write, reported_cost_usd=None,
        latency_ms=(s.end_ns - s.start_ns) / 1e6 if s.end_ns else None, attributes=attrs))
    return True


def metric_point(p: Point, batch: Batch, ctx: Context) -> bool:
    if p.kind != "histogram":
        raise BadValue(f"{p.metric} must be a histogram, got a {p.kind or 'metric without data'}")
    a = p.attrs
    token_type = TOKEN_TYPES.get(text(a, "gen_ai.token.type") or "")
    if token_type is None:
        return False  # other token types (e.g. reasoning) are part of output: not counted twice
    if p.value is None:
        raise BadValue(f"{p.metric} point without a sum")
    time_ns = ctx.check_time(p.time_ns)
    value = count({"sum": p.value}, "sum", maximum=MAX_TOKENS * 1000)
    batch.metric_points.append(MetricPoint(
        time_ns=time_ns, start_time_ns=p.start_time_ns or None, source=SOURCE,
        session_id=text(a, "gen_ai.conversation.id", "session.id"), user_id=user_id(a, "enduser.id"),
        agent_id=_agent(a, batch), provider=_provider(a), model=_model(a), metric="tokens",
        token_type=token_type, value=float(value or 0), cumulative=p.cumulative,
        series_key=content_key("series", raw=True, m=p.metric, r=p.resource, a=p.record)))
    return True
