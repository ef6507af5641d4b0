"""The demo's LLM health and where the money goes: which requests a subagent made, their effort,
speed and time to first token, and the API errors of a session, planned (`plan_session`, from
demo_plan.plan) and sent (`request_attributes`, `metric_labels`, `emit_errors`, from demo.send)
as Claude Code and Codex send them (tests/fixtures/otlp/INVENTORY.md).

Planned with a generator seeded by the session's id, so the rest of the plan stays as it was."""
from __future__ import annotations

import random
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from agent_analytics.demo_plan import Request, Session

# Claude Code's subagents: (agent.name, query_source on its api_request events, weight).
SUBAGENTS = (("Explore", "agent:builtin:Explore", 0.5), ("general-purpose", "agent:builtin:general-purpose", 0.3),
             ("reviewer", "agent:custom", 0.2))
QUERY_SOURCES = {name: source for name, source, _ in SUBAGENTS}
MAIN_THREAD = "repl_main_thread"
SUBAGENT_SHARE = 0.3
# Claude Code's api_error: (status, message, retryable): retryable ones end after every retry.
FAILURES = ((529, "Overloaded", True, 0.5), (500, "Internal server error", True, 0.3),
            (400, "messages.0.content: invalid block", False, 0.2))
MAX_RETRIES = 4  # attempts Claude Code makes before giving up (CLAUDE_CODE_MAX_RETRIES + 1)


def _pick(rng: random.Random, pairs: Any) -> Any:
    return rng.choices([p[:-1] for p in pairs], weights=[p[-1] for p in pairs])[0]


def plan_session(s: Session) -> None:
    """Each request's time to first token; for Claude Code which subagent made it, its effort
    and speed; and the session's API errors (a third of sessions have any)."""
    from agent_analytics.demo_plan import ApiError

    rng = random.Random(s.id)
    claude = s.agent == "claude-code"
    for r in s.requests:
        r.ttft_ms = max(1, int(r.duration_ms * rng.uniform(0.04, 0.35)))
        if not claude:
            continue  # Codex sends none of these
        if rng.random() < SUBAGENT_SHARE:
            r.subagent = _pick(rng, SUBAGENTS)[0]
        r.effort = "medium" if r.subagent == "reviewer" else _pick(
            rng, ((None, 0.5), ("low", 0.15), ("medium", 0.2), ("high", 0.15)))[0]
        r.speed = "fast" if rng.random() < 0.15 else "normal"
    if rng.random() < 0.33 and s.requests:
        span = max(1.0, (s.end - s.start).total_seconds())
        for _ in range(rng.randint(1, 3)):
            t = s.start + timedelta(seconds=rng.uniform(0, span))
            model = rng.choice(s.requests).model
            if claude:
                status, _, retryable = _pick(rng, FAILURES)
                s.errors.append(ApiError(t, model, status, MAX_RETRIES if retryable else 1, retryable))
            else:  # Codex reports each failed attempt; it retried this one `attempt` times
                s.errors.append(ApiError(t, model, rng.choice((500, 429)), rng.randint(1, 3)))
        s.errors.sort(key=lambda e: e.time)


def overload(s: Session) -> None:
    """An API outage during a session: the model API overloaded for an hour (what the API error
    rate surge alert is there for)."""
    from agent_analytics.demo_plan import ApiError

    model = s.requests[0].model if s.requests else "claude-sonnet-4-5"
    retries = s.agent == "claude-code"
    s.errors += [ApiError(s.start + timedelta(seconds=90 * i), model, 529, MAX_RETRIES if retries else 1, retries)
                 for i in range(30)]
    s.errors.sort(key=lambda e: e.time)


def request_attributes(r: Request) -> dict[str, Any]:
    """What Claude Code's api_request says of who made the request and how."""
    attrs: dict[str, Any] = {"query_source": QUERY_SOURCES[r.subagent] if r.subagent else MAIN_THREAD}
    if r.subagent:
        attrs["agent.name"] = r.subagent
    if r.effort:
        attrs["effort"] = r.effort
    if r.speed:
        attrs["speed"] = r.speed
    if r.ttft_ms is not None:
        attrs["ttft_ms"] = r.ttft_ms
    return attrs


def metric_labels(r: Request) -> tuple[tuple[str, str], ...]:
    """The attributes Claude Code's token.usage and cost.usage points carry for the request."""
    labels = [("query_source", "subagent" if r.subagent else "main")]
    if r.subagent:
        labels.append(("agent.name", r.subagent))
    if r.effort:
        labels.append(("effort", r.effort))
    return tuple(labels)


def emit_errors(s: Session, base: dict[str, Any], emit: Callable[[str, dict[str, Any], int], None],
                iso: Callable[[Any], str], ns: Callable[[Any], int]) -> None:
    """The session's API errors as its agent sends them: Claude Code's api_error (and
    api_retries_exhausted when it gave up), Codex's codex.api_request with the error status, one
    per failed attempt (counted from 0)."""
    for i, e in enumerate(s.errors):
        if s.agent == "claude-code":
            message = next(m for status, m, _, _ in FAILURES if status == e.status)
            common = {**base, "event.timestamp": iso(e.time), "model": e.model, "error": message,
                      "status_code": e.status, "speed": "normal", "query_source": MAIN_THREAD,
                      "request_id": f"req_{s.id[:8]}_e{i}"}
            emit("claude_code.api_error", {**common, "event.name": "api_error", "attempt": e.attempt,
                                           "duration_ms": 40 + i}, ns(e.time))
            if e.exhausted:
                gave_up = e.time + timedelta(milliseconds=5)
                emit("claude_code.api_retries_exhausted", {**common, "event.name": "api_retries_exhausted",
                                                           "event.timestamp": iso(gave_up),
                                                           "total_attempts": e.attempt,
                                                           "total_retry_duration_ms": 4000 + i}, ns(gave_up))
        else:
            for attempt in range(e.attempt):
                t = e.time + timedelta(milliseconds=300 * attempt)
                emit("codex.api_request", {**base, "event.name": "codex.api_request", "event.timestamp": iso(t),
                                           "model": e.model, "http.response.status_code": e.status,
                                           "error.message": f"http {e.status}", "attempt": attempt,
                                           "duration_ms": 20 + attempt, "endpoint": "/responses"}, ns(t))
