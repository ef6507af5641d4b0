"""The captured Claude Code and Codex payloads ingest to exactly the tokens and costs they hold.
Expected values are read out of the protobuf here, never typed in; estimates are recomputed
independently with genai-prices."""
from __future__ import annotations

from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from tests.ingest_support import JSON, PB, fixture_bytes, log_events, logs_fixture, metrics_fixture, post

from agent_analytics.ingest import codec

CLAUDE_LOGS = ["claude-code-2.1.328-logs-1.pb", "claude-code-2.1.328-logs-2.pb"]
CLAUDE_METRICS = ["claude-code-2.1.328-metrics-1.pb", "claude-code-2.1.328-metrics-2.pb"]
CODEX_LOGS = "codex-0.169.0-logs-1.pb"


def _num(v) -> float:
    return float(v)


def _claude_requests():
    out = []
    for name in CLAUDE_LOGS:
        for attrs, rec in log_events(logs_fixture(name)):
            if rec.body.string_value == "claude_code.api_request":
                out.append(attrs)
    return out


def test_claude_code_logs_store_tokens_and_costs(client, conn):
    for name in CLAUDE_LOGS:
        r = post(client, "/v1/logs", fixture_bytes(name))
        assert r.status_code == 200, r.data
        assert r.content_type == PB
    expected = _claude_requests()
    assert expected, "fixtures hold api_request events"
    rows = conn.execute(
        "SELECT session_id, model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,"
        " reported_cost_usd, estimated_cost_usd, cost_basis, latency_ms, agent_id, provider, user_id, source"
        " FROM llm_requests ORDER BY time").fetchall()
    assert len(rows) == len(expected)
    for row, a in zip(rows, expected):
        (session, model, inp, out, cr, cw, reported, estimated, basis, latency, agent, provider, user, source) = row
        assert session == a["session.id"] and model == a["model"]
        assert (inp, out, cr, cw) == (int(_num(a["input_tokens"])), int(_num(a["output_tokens"])),
                                      int(_num(a["cache_read_tokens"])), int(_num(a["cache_creation_tokens"])))
        assert reported == Decimal(repr(_num(a["cost_usd"])))
        usage = Usage(input_tokens=inp + cr + cw, cache_read_tokens=cr, cache_write_tokens=cw, output_tokens=out)
        assert estimated == calc_price(usage, model, provider_id="anthropic").total_price
        assert basis == "list_price"
        assert latency == _num(a["duration_ms"])
        assert (agent, provider, source) == ("claude-code", "anthropic", "claude_code")
        assert user == a["user.id"]  # no email or account uuid in these captures
    # Directory rows and sessions appear on first sight.
    assert conn.execute("SELECT name FROM agents WHERE id = 'claude-code'").fetchone() == ("Claude Code",)
    sessions = {r[0] for r in conn.execute("SELECT id FROM sessions WHERE agent_id = 'claude-code'")}
    assert sessions == {a["session.id"] for a in expected}
    users = {r[0] for r in conn.execute("SELECT id FROM users")}
    assert users == {a["user.id"] for a in expected}


def test_claude_code_metrics_store_session_totals(client, conn):
    expected: dict[tuple[str, str, str], float] = {}
    type_names = {"input": "input", "output": "output", "cacheRead": "cache_read", "cacheCreation": "cache_write"}
    for name in CLAUDE_METRICS:
        req = metrics_fixture(name)
        for rm in req.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name not in ("claude_code.token.usage", "claude_code.cost.usage"):
                        continue
                    assert m.sum.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
                    for dp in m.sum.data_points:
                        attrs = {kv.key: kv.value.string_value for kv in dp.attributes}
                        kind = "tokens" if m.name.endswith("token.usage") else "cost"
                        key = (attrs["session.id"], kind, type_names.get(attrs.get("type"), ""))
                        expected[key] = expected.get(key, 0.0) + (dp.as_double or float(dp.as_int))
        r = post(client, "/v1/metrics", fixture_bytes(name))
        assert r.status_code == 200, r.data
    got = {(s, m, t): v for s, m, t, v in conn.execute(
        "SELECT session_id, metric, token_type, sum(value) FROM metric_points GROUP BY 1, 2, 3")}
    assert got == pytest.approx(expected)
    assert len(expected) == 10  # 2 sessions x (4 token types + cost)
    priced = conn.execute("SELECT count(*) FROM metric_points WHERE metric = 'tokens'"
                          " AND estimated_cost_usd IS NOT NULL").fetchone()[0]
    assert priced == 8


def test_codex_logs_normalise_cached_input(client, conn):
    r = post(client, "/v1/logs", fixture_bytes(CODEX_LOGS))
    assert r.status_code == 200, r.data
    completed = [(a, rec) for a, rec in log_events(logs_fixture(CODEX_LOGS))
                 if a.get("event.name") == "codex.sse_event" and a.get("event.kind") == "response.completed"
                 and "input_token_count" in a]
    assert len(completed) == 1 and completed[0][1].time_unix_nano == 0
    a = completed[0][0]
    total_in, cached = int(a["input_token_count"]), int(a["cached_token_count"])
    row = conn.execute(
        "SELECT session_id, model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,"
        " reported_cost_usd, estimated_cost_usd, agent_id, provider, source,"
        " to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM llm_requests").fetchall()
    assert len(row) == 1
    session, model, inp, out, cr, cw, reported, estimated, agent, provider, source, when = row[0]
    assert session == a["conversation.id"] and model == a["model"]
    assert (inp, out, cr, cw) == (total_in - cached, int(a["output_token_count"]), cached, 0)
    assert reported is None
    usage = Usage(input_tokens=total_in, cache_read_tokens=cached, output_tokens=out)
    assert estimated == calc_price(usage, model, provider_id="openai").total_price
    assert (agent, provider, source) == ("codex", "openai", "codex")
    assert when == a["event.timestamp"]  # time_unix_nano is 0: the event's own timestamp


@pytest.mark.parametrize("fmt", [PB, JSON])
def test_fixture_round_trip_both_encodings_and_gzip(client, conn, fmt):
    """The same fixture as protobuf or OTLP JSON, gzipped, stores the same row once."""
    msg = logs_fixture(CLAUDE_LOGS[0])
    body = codec.encode(msg, codec.JSON if fmt == JSON else codec.PROTOBUF)
    for _ in range(2):
        r = post(client, "/v1/logs", body, content_type=fmt, gzipped=True)
        assert r.status_code == 200 and r.content_type == fmt
    assert conn.execute("SELECT count(*), sum(input_tokens) FROM llm_requests").fetchone() == (
        1, int(_claude_requests()[0]["input_tokens"]))
