"""The captured scenarios behind LLM health (errors, latency, subagents, effort and speed), and
what they say, read out of the payloads and the stand-in API's ledgers here, independently of
the receiver's normalisation."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from tests.ingest_support import FIXTURES, fixture_bytes, log_events, logs_fixture, metrics_fixture, post

CLAUDE = "claude-code-2.1.332-"
CODEX = "codex-0.171.0-"
SCENARIOS = (CLAUDE + "api-400-nonretryable", CLAUDE + "api-529-500-then-ok", CLAUDE + "api-always-500",
             CLAUDE + "api-always-529", CLAUDE + "subagents", CODEX + "retries-exhausted",
             CODEX + "shell-500-then-ok")
TOKEN_KEYS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens")
POINT_TYPES = {"input": "input", "output": "output", "cacheRead": "cache_read", "cacheCreation": "cache_write"}


def files(scenario: str, signal: str) -> list[str]:
    return sorted(p.name for p in FIXTURES.glob(f"{scenario}-{signal}-*.pb"))


def ledger(scenario: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / f"{scenario}.ledger.jsonl").read_text().splitlines() if line]


def post_scenarios(client, scenarios=SCENARIOS) -> None:
    for scenario in scenarios:
        for signal, path in (("logs", "/v1/logs"), ("metrics", "/v1/metrics")):
            for name in files(scenario, signal):
                r = post(client, path, fixture_bytes(name))
                assert r.status_code == 200, (name, r.data)


def _name(attrs: dict[str, Any], rec) -> str:
    return str(attrs.get("event.name") or rec.body.string_value).removeprefix("claude_code.")


def _origin(query_source: str | None) -> str | None:
    """main or subagent, as Claude Code's docs tell them apart (its metric points say it plainly)."""
    if query_source is None:
        return None
    return "subagent" if query_source.startswith("agent:") else "main"


@dataclass
class Expected:
    """What the scenarios' events and metric points hold."""
    errors: Counter = field(default_factory=Counter)        # (source, model, kind, status) -> events
    attempts: dict[str, list[int]] = field(default_factory=dict)   # session -> attempts of its errors (from 1)
    durations: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # model -> ms
    ttfts: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    requests: Counter = field(default_factory=Counter)      # (source, model) -> successful requests
    # (query_source, agent_name, effort, speed) -> [tokens, cost] of api_request events
    by_origin: dict[tuple, list] = field(default_factory=lambda: defaultdict(lambda: [0, Decimal(0)]))
    # (query_source, agent_name, effort) -> [tokens, cost] of metric points
    points_by_origin: dict[tuple, list] = field(default_factory=lambda: defaultdict(lambda: [0.0, 0.0]))
    sessions: dict[str, str] = field(default_factory=dict)  # scenario -> its session id


def expected(scenarios=SCENARIOS) -> Expected:
    out = Expected()
    for scenario in scenarios:
        for name in files(scenario, "logs"):
            for a, rec in log_events(logs_fixture(name)):
                event = _name(a, rec)
                session = a.get("session.id") or a.get("conversation.id")
                if session:
                    out.sessions[scenario] = session
                if event in ("api_error", "api_retries_exhausted"):
                    kind = "error" if event == "api_error" else "retries_exhausted"
                    out.errors["claude_code", a["model"], kind, int(a["status_code"])] += 1
                    if kind == "error":
                        out.attempts.setdefault(session, []).append(int(a["attempt"]))
                elif event == "codex.api_request" and int(a["http.response.status_code"]) >= 400:
                    out.errors["codex", a["model"], "error", int(a["http.response.status_code"])] += 1
                    out.attempts.setdefault(session, []).append(int(a["attempt"]) + 1)
                elif event == "api_request":
                    out.requests["claude_code", a["model"]] += 1
                    out.durations[a["model"]].append(float(a["duration_ms"]))
                    if "ttft_ms" in a:
                        out.ttfts[a["model"]].append(float(a["ttft_ms"]))
                    key = (_origin(a.get("query_source")), a.get("agent.name"), a.get("effort"), a.get("speed"))
                    out.by_origin[key][0] += sum(int(a[k]) for k in TOKEN_KEYS)
                    # As numeric(24, 12) holds a request's cost.
                    out.by_origin[key][1] += Decimal(repr(float(a["cost_usd"]))).quantize(
                        Decimal("1e-12"), ROUND_HALF_UP)
                elif (event == "codex.sse_event" and a.get("event.kind") == "response.completed"
                      and "input_token_count" in a):
                    out.requests["codex", a["model"]] += 1
        for name in files(scenario, "metrics"):
            for rm in metrics_fixture(name).resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        if m.name not in ("claude_code.token.usage", "claude_code.cost.usage"):
                            continue
                        for dp in m.sum.data_points:
                            a = {kv.key: kv.value.string_value for kv in dp.attributes}
                            key = (a.get("query_source"), a.get("agent.name") or None, a.get("effort") or None)
                            out.points_by_origin[key][0 if m.name.endswith("token.usage") else 1] += dp.as_double
    return out


def percentile(values: list[float], p: float) -> float:
    """The smallest value with at least a fraction `p` of the values at or below it
    (percentile_disc)."""
    ordered = sorted(values)
    for i, v in enumerate(ordered, start=1):
        if i >= p * len(ordered):
            return v
    raise ValueError("no values")
