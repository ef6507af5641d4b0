"""The receiver's HTTP contract: auth, content types, gzip and size limits, status codes, and
partial_success for batches with bad records (a JSON sender, hex ids)."""
from __future__ import annotations

import gzip
import json
import time

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from agent_analytics.app import create_app
from tests.harness_support import INGEST_TOKEN, QUERY_TOKEN
from tests.ingest_support import JSON, PB, fixture_bytes, headers

FIXTURE = "claude-code-2.1.328-logs-1.pb"


def _kv(key, value):
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}  # 64-bit ints are strings in OTLP JSON
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": value}}


def _claude_log(ns: int, **attrs):
    base = {"event.name": "api_request", "session.id": "s-json", "user.email": "dave@example.com",
            "model": "claude-sonnet-4-5", "input_tokens": 10, "output_tokens": 2, "cache_read_tokens": 0,
            "cache_creation_tokens": 0, "cost_usd": 0.0001, "duration_ms": 5}
    base.update(attrs)
    return {"timeUnixNano": str(ns), "body": {"stringValue": "claude_code.api_request"},
            "attributes": [_kv(k, v) for k, v in base.items() if v is not None],
            "unknownFieldFromTheFuture": 1}


def _logs_body(records):
    return json.dumps({"resourceLogs": [{"resource": {"attributes": [_kv("service.name", "claude-code")]},
                                         "scopeLogs": [{"scope": {"name": "com.anthropic.claude_code.events"},
                                                        "logRecords": records}]}]}).encode()


def test_auth(client, app):
    body = fixture_bytes(FIXTURE)
    assert client.post("/v1/logs", data=body, headers=headers(token=None)).status_code == 401
    assert client.post("/v1/logs", data=body, headers=headers(token="wrong")).status_code == 401
    assert client.post("/v1/logs", data=body, headers=headers(token=QUERY_TOKEN)).status_code == 403


def test_no_token_only_when_configured(config):
    app = create_app(config.replace(allow_no_auth=True), role="ingest")
    try:
        r = app.test_client().post("/v1/logs", data=fixture_bytes(FIXTURE), headers=headers(token=None))
        assert r.status_code == 200
    finally:
        app.extensions["aa_db"].close()


def test_content_type_method_and_encoding(client):
    body = fixture_bytes(FIXTURE)
    assert client.post("/v1/logs", data=body, headers=headers(content_type="text/plain")).status_code == 415
    r = client.post("/v1/logs", data=body, headers=headers(**{"Content-Encoding": "br"}))
    assert r.status_code == 415
    assert client.get("/v1/logs", headers=headers()).status_code == 405


@pytest.mark.parametrize("body,ctype,encoding", [
    (b"\x0a\xff\xff\xff\xff\x0f", PB, None),
    (b"{not json", JSON, None),
    (b"[1, 2]", JSON, None),
    (json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "zz"}]}]}]}).encode(), JSON, None),
    (gzip.compress(b"x" * 1000)[:20], PB, "gzip"),
])
def test_unreadable_bodies_are_400(client, body, ctype, encoding):
    h = headers(content_type=ctype)
    if encoding:
        h["Content-Encoding"] = encoding
    r = client.post("/v1/logs", data=body, headers=h)
    assert r.status_code == 400, r.data
    if ctype == JSON:
        assert "message" in r.get_json()


def test_size_limit_after_decompression(config):
    app = create_app(config.replace(max_body_bytes=100_000), role="ingest")
    try:
        c = app.test_client()
        assert c.post("/v1/logs", data=b"\0" * 100_001, headers=headers()).status_code == 413
        bomb = gzip.compress(b"\0" * 50_000_000)   # ~50 KB that inflates to 50 MB
        assert len(bomb) < 100_000
        r = c.post("/v1/logs", data=bomb, headers=headers(**{"Content-Encoding": "gzip"}))
        assert r.status_code == 413
        ok = gzip.compress(fixture_bytes(FIXTURE))
        assert c.post("/v1/logs", data=ok, headers=headers(**{"Content-Encoding": "gzip"})).status_code == 200
    finally:
        app.extensions["aa_db"].close()


def test_json_sender_partial_success(client, conn):
    now = time.time_ns()
    records = [
        _claude_log(now),                                              # good
        _claude_log(now + 1, input_tokens=-5),                          # negative tokens
        _claude_log(now + 2, model=None),                               # missing model
        _claude_log(now + 3 * 86_400 * 10**9),                          # three days ahead
        _claude_log(now + 4, input_tokens="lots"),                      # not a number
        _claude_log(now + 5, output_tokens=float("nan")),               # NaN
        _claude_log(now + 6, event_name="user_prompt"),                 # irrelevant: ignored, not rejected
        _claude_log(now + 7, input_tokens="25", session_id=None),       # good, count as a string
    ]
    records[6]["attributes"] = [a for a in records[6]["attributes"] if a["key"] != "event.name"] + \
        [_kv("event.name", "user_prompt")]
    records[6]["body"] = {"stringValue": "claude_code.user_prompt"}
    r = client.post("/v1/logs", data=_logs_body(records).replace(b"NaN", b'"NaN"'), headers=headers(content_type=JSON))
    assert r.status_code == 200 and r.content_type == JSON
    partial = r.get_json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == "5"
    message = partial["errorMessage"]
    for fragment in ("#1: input_tokens is negative", "#2: api_request without model", "#3:", "more than a day",
                     "#4: input_tokens is not a number", "#5: output_tokens is not finite"):
        assert fragment in message
    assert conn.execute("SELECT count(*), sum(input_tokens) FROM llm_requests").fetchone() == (2, 35)


def test_partial_success_in_protobuf(client, conn):
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from google.protobuf import json_format

    from agent_analytics.ingest.codec import _hex_ids_to_base64

    req = ExportLogsServiceRequest()
    json_format.ParseDict(_hex_ids_to_base64(json.loads(_logs_body(
        [_claude_log(time.time_ns()), _claude_log(time.time_ns(), output_tokens=10**12)]))), req,
        ignore_unknown_fields=True)
    r = client.post("/v1/logs", data=req.SerializeToString(), headers=headers())
    assert r.status_code == 200 and r.content_type == PB
    resp = ExportLogsServiceResponse.FromString(r.data)
    assert resp.partial_success.rejected_log_records == 1
    assert "implausibly large" in resp.partial_success.error_message


def test_json_traces_hex_ids_and_rejected_spans(client, conn):
    trace_id, span_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    now = time.time_ns()

    def span(name, **attrs):
        return {"traceId": trace_id, "spanId": span_id, "name": name, "kind": 3,
                "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 2_000_000),
                "status": {"code": 2 if attrs.pop("failed", False) else 0},
                "attributes": [_kv(k, v) for k, v in attrs.items()]}

    body = {"resourceSpans": [{"resource": {"attributes": [_kv("service.name", "gw")]}, "scopeSpans": [{"spans": [
        span("tools/call lookup", **{"mcp.method.name": "tools/call", "mcp.server.name": "crm",
                                     "gen_ai.tool.name": "lookup", "enduser.id": "u-42", "agent.id": "codex"}),
        # A gateway's span (it carries a gateway decision) must name the server.
        span("tools/call lookup", **{"mcp.method.name": "tools/call", "gen_ai.tool.name": "lookup",
                                     "mcp.gateway.decision": "allow"}),
        span("tools/call wipe", **{"mcp.method.name": "tools/call", "mcp.server.name": "crm",
                                   "mcp.gateway.decision": "block"}),
        span("tools/call x", **{"mcp.method.name": "tools/call", "mcp.server.name": "crm",
                                "mcp.gateway.decision": "maybe"}),
        span("GET /", **{"http.method": "GET"}),
    ]}]}]}
    r = client.post("/v1/traces", data=json.dumps(body), headers=headers(content_type=JSON))
    assert r.status_code == 200
    partial = r.get_json()["partialSuccess"]
    assert partial["rejectedSpans"] == "3"
    assert "without mcp.server.name" in partial["errorMessage"]
    assert "without policy.id" in partial["errorMessage"]
    row = conn.execute("SELECT tool_name, user_id, agent_id, duration_ms, attributes->>'trace_id',"
                       " attributes->>'span_id' FROM tool_calls").fetchall()
    assert row == [("lookup", "u-42", "codex", 2.0, trace_id, span_id)]


def test_metrics_endpoint_counts(client):
    client.post("/v1/logs", data=fixture_bytes(FIXTURE), headers=headers())
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=headers(token=INGEST_TOKEN)).status_code == 403
    text = client.get("/metrics", headers=headers(token=QUERY_TOKEN)).get_data(as_text=True)
    assert 'aa_ingest_records_received_total{signal="logs"}' in text
    assert 'aa_ingest_rows_stored_total{signal="logs",table="llm_requests"} 1.0' in text
    assert "aa_ingest_batch_seconds_bucket" in text


@pytest.mark.internal_errors_expected
def test_a_record_our_code_fails_on_costs_that_record_only(client, conn, monkeypatch, caplog):
    """An exception normalisation did not foresee (a bug meeting an odd input) rejects only its
    record; the batch logs one traceback however many records fail, and the failures are
    counted apart (aa_ingest_internal_errors_total, which an alert watches)."""
    from agent_analytics.ingest import normalise_claude_code as claude_code
    from agent_analytics.ingest.normalise import INTERNAL_ERROR

    before = client.get("/metrics", headers=headers(token=QUERY_TOKEN)).get_data(as_text=True)
    assert 'aa_ingest_internal_errors_total{signal="logs"} 0.0' in before  # there to be alerted on
    real = claude_code.EVENTS["claude_code.api_request"]

    def fragile(ev, batch, ctx):
        if ev.attrs.get("session.id") == "s-odd":
            raise TypeError("an input nobody foresaw")
        return real(ev, batch, ctx)

    monkeypatch.setitem(claude_code.EVENTS, "claude_code.api_request", fragile)
    now = time.time_ns()
    odd = {"session.id": "s-odd"}
    r = client.post("/v1/logs", data=_logs_body([_claude_log(now), _claude_log(now + 1, **odd), _claude_log(now + 2),
                                                 _claude_log(now + 3, **odd)]), headers=headers(content_type=JSON))
    assert r.status_code == 200
    assert r.get_json()["partialSuccess"] == {
        "rejectedLogRecords": "2", "errorMessage": f"2 of 4 rejected: #1: {INTERNAL_ERROR}; #3: {INTERNAL_ERROR}"}
    assert conn.execute("SELECT count(*) FROM llm_requests").fetchone()[0] == 2
    tracebacks = [rec for rec in caplog.records if rec.exc_info]
    assert len(tracebacks) == 1 and "normalising record #1 ('claude_code.api_request') failed" in tracebacks[0].getMessage()
    assert "TypeError: an input nobody foresaw" in caplog.text
    assert "2 records could not be normalised" in caplog.text
    text = client.get("/metrics", headers=headers(token=QUERY_TOKEN)).get_data(as_text=True)
    assert 'aa_ingest_internal_errors_total{signal="logs"} 2.0' in text
