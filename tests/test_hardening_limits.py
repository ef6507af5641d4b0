"""Limits: attribute count and length, nesting depth (protobuf and JSON), body size with chunked
transfer and a gzip bomb inflating to half a gigabyte, identifier length and NUL characters, and per
record: negative, NaN, infinite, fractional, boolean and absurd token counts and metric values,
timestamps far in the past or future. Each bad record is refused alone with its index and a
reason; the good record beside it is stored."""
from __future__ import annotations

import gzip
import json
import time
import tracemalloc
import zlib

import pytest
import requests
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from agent_analytics.app import create_app
from agent_analytics.cluster import free_port
from agent_analytics.config import Config
from agent_analytics.ingest import codec
from agent_analytics.ingest.values import MAX_ATTRIBUTES, MAX_STRING
from tests.harness_support import INGEST_TOKEN, LLM_TOKEN
from tests.hardening_support import api_requests, insane_rows
from tests.ingest_support import JSON, PB, Server, headers, set_value

NOW = time.time_ns()
DAY = 86_400 * 10**9


def _logs(records: list[tuple[int, dict]]) -> ExportLogsServiceRequest:
    """Claude Code api_request events: (time ns, attribute overrides; None removes one)."""
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    kv = rl.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "claude-code"
    sl = rl.scope_logs.add()
    sl.scope.name = "com.anthropic.claude_code.events"
    for i, (t, over) in enumerate(records):
        attrs = {"event.name": "api_request", "session.id": f"lim-{i}", "model": "claude-sonnet-4-5",
                 "input_tokens": 10 + i, "output_tokens": 1, "cache_read_tokens": 0, "cache_creation_tokens": 0,
                 "cost_usd": 0.001, "duration_ms": 12}
        attrs.update(over)
        rec = sl.log_records.add()
        rec.time_unix_nano = t
        rec.body.string_value = "claude_code.api_request"
        for k, v in attrs.items():
            if v is None:
                continue
            a = rec.attributes.add()
            a.key = k
            set_value(a.value, v)
    return req


def _rejections(resp) -> dict[int, str]:
    assert resp.status_code == 200, resp.data[:300]
    body = resp.get_json() if resp.content_type == JSON else None
    message = body["partialSuccess"]["errorMessage"] if body else ""
    out = {}
    for part in message.split(": ", 1)[-1].split("; "):
        if part.startswith("#"):
            index, _, reason = part[1:].partition(": ")
            out[int(index)] = reason
    return out


def _post_json(client, signal: str, req) -> object:
    return client.post(f"/v1/{signal}", data=codec.encode(req, codec.JSON), headers=headers(content_type=JSON))


GOOD = (NOW - 60 * 10**9, {})
BAD_RECORDS = [
    ((NOW, {"input_tokens": -1}), "input_tokens is negative"),
    ((NOW, {"output_tokens": float("nan")}), "output_tokens is not finite"),
    ((NOW, {"output_tokens": float("inf")}), "output_tokens is not finite"),
    ((NOW, {"cache_read_tokens": float("-inf")}), "cache_read_tokens is not finite"),
    ((NOW, {"input_tokens": 2**63 - 1}), "input_tokens is implausibly large"),
    ((NOW, {"input_tokens": "1e12"}), "input_tokens is implausibly large"),
    ((NOW, {"input_tokens": 1.5}), "input_tokens is not a whole number"),
    ((NOW, {"input_tokens": True}), "input_tokens is a boolean"),
    ((NOW, {"input_tokens": "ten"}), "input_tokens is not a number"),
    ((NOW, {"cost_usd": -0.5}), "cost_usd is negative"),
    ((NOW, {"cost_usd": 1e9}), "cost_usd is implausibly large"),
    ((NOW, {"duration_ms": -3}), "duration_ms is negative"),
    ((NOW, {"input_tokens": None, "output_tokens": None, "cache_read_tokens": None,
            "cache_creation_tokens": None}), "without token counts"),
    ((0, {}), "timestamp is missing"),
    ((1, {}), "before the year 2000"),
    ((946_684_799 * 10**9, {}), "before the year 2000"),
    ((NOW + 2 * DAY, {}), "more than a day in the future"),
    ((NOW + 200 * 365 * DAY, {}), "more than a day in the future"),
    ((2**64 - 1, {}), "more than a day in the future"),
    ((NOW, {"model": "m\x00"}), "NUL"),
    ((NOW, {"session.id": "s" * 1025}), "session_id is longer than 1024 bytes"),
    ((NOW, {"user.email": "\u00e9" * 600}), "user_id is longer than 1024 bytes"),
    ((NOW, {"other": "v\x00"}), "NUL"),
    ((NOW, {"model": {"name": "claude-sonnet-4-5"}}), "model is a map, not a string"),
    ((NOW, {"model": ["claude-sonnet-4-5", "claude-opus-4-1"]}), "model is an array, not a string"),
    ((NOW, {"session.id": {"id": "s"}}), "session_id is a map, not a string"),
]


def test_each_bad_record_is_refused_alone_with_a_reason(client, conn):
    req = _logs([GOOD] + [r for r, _ in BAD_RECORDS] + [(GOOD[0] + 1, {"session.id": "lim-last"})])
    resp = client.post("/v1/logs", data=req.SerializeToString(), headers=headers())
    partial = ExportLogsServiceResponse.FromString(resp.data).partial_success
    assert resp.status_code == 200 and partial.rejected_log_records == len(BAD_RECORDS)
    resp = _post_json(client, "logs", req)  # the same batch in JSON: reasons readable, nothing doubled
    reasons = _rejections(resp)
    # The message lists the first ten with their index; the count covers all of them.
    assert int(resp.get_json()["partialSuccess"]["rejectedLogRecords"]) == len(BAD_RECORDS)
    for index, reason in reasons.items():
        assert BAD_RECORDS[index - 1][1] in reason, (index, reason)
    assert len(reasons) == 10
    stored = conn.execute("SELECT session_id, input_tokens FROM llm_requests ORDER BY session_id").fetchall()
    assert stored == [("lim-0", 10), ("lim-last", 10 + len(BAD_RECORDS) + 1)]
    assert insane_rows(conn) == {}


def test_every_bad_record_reason_one_at_a_time(client, conn):
    """Each bad record in its own batch beside a good one: its exact reason, the good one stored."""
    for i, (record, reason) in enumerate(BAD_RECORDS):
        resp = _post_json(client, "logs", _logs([(GOOD[0] + i, {"session.id": f"good-{i}"}), record]))
        got = _rejections(resp)
        assert list(got) == [1] and reason in got[1], (record[1], got)
    assert conn.execute("SELECT count(*) FROM llm_requests").fetchone()[0] == len(BAD_RECORDS)
    assert insane_rows(conn) == {}


def _points(values: list[tuple[int, object]]) -> ExportMetricsServiceRequest:
    """claude_code.token.usage delta points: (time ns, value)."""
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    kv = rm.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "claude-code"
    m = rm.scope_metrics.add().metrics.add()
    m.name = "claude_code.token.usage"
    m.sum.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    m.sum.is_monotonic = True
    for i, (t, v) in enumerate(values):
        dp = m.sum.data_points.add()
        dp.time_unix_nano, dp.start_time_unix_nano = t, max(t - 60 * 10**9, 0)
        if isinstance(v, int):
            dp.as_int = v
        else:
            dp.as_double = v
        for key, val in (("session.id", f"pts-{i}"), ("model", "claude-sonnet-4-5"), ("type", "input")):
            a = dp.attributes.add()
            a.key, a.value.string_value = key, val
    return req


def test_bad_metric_points_are_refused_alone(client, conn):
    t = NOW - 60 * 10**9
    points = [(t, 100), (t, -5), (t, float("nan")), (t, float("inf")), (t, -0.5), (t, 2**62), (0, 1),
              (NOW + 3 * DAY, 1), (5 * 10**9, 1), (t + 1, 7.0)]
    resp = _post_json(client, "metrics", _points(points))
    reasons = _rejections(resp)
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7, 8]
    for index, fragment in ((1, "negative"), (2, "not finite"), (3, "not finite"), (4, "negative"),
                            (5, "implausibly large"), (6, "missing"), (7, "future"), (8, "before the year 2000")):
        assert fragment in reasons[index], (index, reasons[index])
    assert conn.execute("SELECT session_id, value FROM metric_points ORDER BY 1").fetchall() == [
        ("pts-0", 100.0), ("pts-9", 7.0)]


def test_retention_bounds_the_past(config, conn):
    app = create_app(config.replace(retention_days=30), role="ingest")
    try:
        resp = _post_json(app.test_client(), "logs", _logs([GOOD, (NOW - 31 * DAY, {}), (NOW - 29 * DAY, {})]))
        reasons = _rejections(resp)
        assert list(reasons) == [1] and "older than the retention period (30 days)" in reasons[1]
    finally:
        app.extensions["aa_db"].close()
    assert conn.execute("SELECT count(*) FROM llm_requests").fetchone()[0] == 2


def test_attribute_count_length_and_nesting_are_bounded(client, conn):
    many = {f"k{i:05d}": "v" for i in range(5000)}
    long = {"terminal.type": "x" * 1_000_000}
    req = _logs([(NOW - 10**9, many), (NOW - 2 * 10**9, long), (NOW - 3 * 10**9, {})])
    # A value nested 20 levels deep (kvlists inside arrays inside kvlists...), within the decoder's depth.
    rec = req.resource_logs[0].scope_logs[0].log_records[2]
    a = rec.attributes.add()
    a.key = "deep"
    v = a.value
    for level in range(20):
        v = v.kvlist_value.values.add().value if level % 2 else v.array_value.values.add()
    v.string_value = "bottom"
    resp = client.post("/v1/logs", data=req.SerializeToString(), headers=headers())
    assert resp.status_code == 200
    rows = conn.execute("SELECT session_id, attributes FROM llm_requests ORDER BY session_id").fetchall()
    assert [r[0] for r in rows] == ["lim-0", "lim-1", "lim-2"]
    attrs = {s: a for s, a in rows}
    assert len(attrs["lim-0"]) <= MAX_ATTRIBUTES
    assert len(attrs["lim-1"]["terminal.type"]) <= MAX_STRING + 1
    assert len(json.dumps(attrs["lim-2"]["deep"])) <= MAX_STRING + 10


def _nested_anyvalue_body(depth: int) -> bytes:
    req = _logs([GOOD])
    v = req.resource_logs[0].scope_logs[0].log_records[0].body
    for _ in range(depth):
        v = v.kvlist_value.values.add().value
    v.string_value = "x"
    return req.SerializeToString()


def test_nesting_past_the_decoders_limits_is_a_400(client, conn):
    assert client.post("/v1/logs", data=_nested_anyvalue_body(500), headers=headers()).status_code == 400
    deep_json = b'{"resourceLogs": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    resp = client.post("/v1/logs", data=deep_json, headers=headers(content_type=JSON))
    assert resp.status_code == 400 and "nested too deeply" in resp.get_json()["message"]
    inner = '{"stringValue": "x"}'
    for _ in range(300):
        inner = '{"kvlistValue": {"values": [{"key": "k", "value": %s}]}}' % inner
    body = ('{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": %s}]}]}]}' % inner).encode()
    assert client.post("/v1/logs", data=body, headers=headers(content_type=JSON)).status_code == 400
    for url in ("/grafana/query", "/api/v1/directory"):
        resp = client.post(url, data=b"[" * 200_000 + b"]" * 200_000,
                           headers=headers(content_type=JSON))
        assert resp.status_code in (400, 403), url  # unreadable (or refused for the token), never a 500
    assert conn.execute("SELECT count(*) FROM llm_requests").fetchone()[0] == 0


def _bomb(inflated: int) -> bytes:
    """gzip of `inflated` zero bytes, made in steps (never holding the inflated body)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (1 << 20)
    parts = [comp.compress(chunk) for _ in range(inflated >> 20)]
    return b"".join(parts) + comp.flush()


def test_gzip_bomb_is_refused_early_and_stays_small():
    # The body is refused before any database work: no database needed (nor reachable).
    app = create_app(Config(database_url=f"postgresql://nobody@127.0.0.1:{free_port()}/none",
                            ingest_tokens=(INGEST_TOKEN,), max_body_bytes=1_000_000, db_timeout_s=1), role="ingest")
    bomb = _bomb(512 << 20)
    assert len(bomb) < 1_000_000   # the compressed body passes the first check
    try:
        client = app.test_client()
        tracemalloc.start()
        resp = client.post("/v1/logs", data=bomb, headers=headers(**{"Content-Encoding": "gzip"}))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        app.extensions["aa_db"].close()
    assert resp.status_code == 413
    # Inflation stops just past the limit: the peak is a few limits, not the 512 MiB inside.
    assert peak < 16 * 1_000_000, peak


def test_body_limits_over_real_http_including_chunked(config, conn):
    app = create_app(config.replace(max_body_bytes=200_000), role="ingest")
    try:
        with Server(app) as server:
            h = headers()

            def chunks(total: int):
                for _ in range(total // 50_000):
                    yield b"\0" * 50_000

            # No Content-Length: the limit still holds while the body streams in.
            r = requests.post(server.url + "/v1/logs", data=chunks(2_000_000), headers=h, timeout=30)
            assert r.status_code == 413
            r = requests.post(server.url + "/v1/logs", data=b"\0" * 200_001, headers=h, timeout=30)
            assert r.status_code == 413
            ok = _logs([GOOD]).SerializeToString()
            r = requests.post(server.url + "/v1/logs", data=iter([ok[:10], ok[10:]]), headers=h, timeout=30)
            assert r.status_code == 200
            big = {"users": [{"id": f"u{i}", "display_name": "x" * 1000} for i in range(300)]}
            r = requests.post(server.url + "/api/v1/directory", data=json.dumps(big), timeout=30,
                              headers={**h, "Content-Type": JSON})
            assert r.status_code == 413
    finally:
        app.extensions["aa_db"].close()
    assert conn.execute("SELECT count(*) FROM llm_requests").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM users WHERE id LIKE 'u%'").fetchone()[0] == 0


def _raw_request(port: int, head: bytes, body: bytes = b"") -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body)
        return sock.recv(65536)


def test_the_served_receiver_refuses_an_oversized_body_before_reading_it(db_url):
    """`agent-analytics serve`: a body declared larger than AA_MAX_BODY_BYTES is refused at once,
    without waiting for (or buffering) the body; a never-ending chunked body too."""
    from urllib.parse import urlparse

    from tests.hardening_support import receiver_process

    with receiver_process(db_url, AA_MAX_BODY_BYTES="1000000") as (url, _):
        port = urlparse(url).port
        head = (b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                b"Authorization: Bearer " + INGEST_TOKEN.encode() + b"\r\nContent-Length: 10000000000\r\n\r\n")
        assert _raw_request(port, head, b"\0" * 100).startswith(b"HTTP/1.1 413")
        chunked = head.replace(b"Content-Length: 10000000000", b"Transfer-Encoding: chunked")
        chunk = b"%x\r\n" % 100_000 + b"\0" * 100_000 + b"\r\n"
        assert _raw_request(port, chunked, chunk * 11).startswith(b"HTTP/1.1 413")
        ok = _logs([GOOD]).SerializeToString()
        fine = head.replace(b"10000000000", str(len(ok)).encode())
        assert _raw_request(port, fine, ok).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("query, field", [
    ("from=1&to=253402300799000", "to"),                   # 1970 .. 9999: previous period before year 1
    ("from=0001-01-01T00:00:00Z&to=now", "from"),
    ("from=now-200y&to=now", "from"),
    ("from=now-10y&to=now%2B95y", "to"),
    ("from=-99999999999999999&to=now", "from"),
    ("from=now-100000y&to=now", "from"),
    ("from=1e30&to=now", "from"),
    ("from=NaN&to=now", "from"),
    ("from=now&to=inf", "to"),
])
def test_absurd_time_ranges_are_a_400_naming_the_field(ds_client, query, field):
    for metric in ("mcp_executions_over_time", "llm_cost_over_time", "sessions_table", "mcp_hourly_distribution"):
        resp = ds_client.get(f"/api/v1/query/{metric}?{query}", headers={"Authorization": f"Bearer {LLM_TOKEN}"})
        assert resp.status_code == 400 and field in resp.get_json()["fields"], (metric, resp.get_json())


def test_the_longest_allowed_range_answers(ds_client):
    # From the epoch to now: a stat (the previous period before 1970 empty). Time series are
    # bounded in points apart (test_hardening_dos).
    resp = ds_client.get("/api/v1/query/mcp_tool_executions?from=0&to=now",
                         headers={"Authorization": f"Bearer {LLM_TOKEN}"})
    assert resp.status_code == 200 and resp.get_json()["rows"][0]["value"] is not None


def test_non_finite_numbers_nested_in_attributes_are_stored_as_text(client, conn):
    """JSON has no NaN or infinity: jsonb would refuse the whole batch for one such value inside
    an array or a map attribute."""
    req = _logs([(NOW - 10**9, {}), (NOW - 2 * 10**9, {}), (NOW - 3 * 10**9, {})])
    records = req.resource_logs[0].scope_logs[0].log_records
    for rec, extra in zip(records, ([float("nan"), 1.5], [float("inf"), "é", 1e-7], None)):
        a = rec.attributes.add()
        a.key = "samples"
        if extra is None:
            kv = a.value.kvlist_value.values.add()
            kv.key, kv.value.double_value = "p99", float("-inf")
            continue
        for x in extra:
            set_value(a.value.array_value.values.add(), x)
    resp = client.post("/v1/logs", data=req.SerializeToString(), headers=headers())
    assert resp.status_code == 200 and not _rejections(resp)
    rows = dict(conn.execute("SELECT session_id, attributes->'samples' FROM llm_requests").fetchall())
    assert rows == {"lim-0": "[nan, 1.5]", "lim-1": "[inf, 'é', 1e-07]", "lim-2": "{'p99': -inf}"}


def _member(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def test_every_gzip_member_is_read_and_trailing_bytes_refused(config, conn):
    """RFC 1952: a gzip body may be several members back to back (some senders and proxies
    concatenate them). Every member's records are stored, under one limit on the inflated
    total; bytes after a member that are not another member are a 400, and store nothing."""
    t0 = time.time_ns() - 600 * 10**9
    first, first_rows = api_requests("member-a", 3, t0)
    second, second_rows = api_requests("member-b", 4, t0 + 10**9, first_tokens=100)
    third, third_rows = api_requests("member-c", 2, t0 + 2 * 10**9, first_tokens=200)
    # Concatenated protobuf messages are one message whose repeated fields are appended.
    whole_json = codec.encode(ExportLogsServiceRequest.FromString(first + second), codec.JSON)
    app = create_app(config.replace(max_body_bytes=1_000_000), role="ingest")
    gz = {"Content-Encoding": "gzip"}
    try:
        with Server(app) as server:
            def post(body: bytes, content_type: str = PB) -> requests.Response:
                return requests.post(server.url + "/v1/logs", data=body, timeout=30,
                                     headers=headers(content_type=content_type, **gz))

            r = post(_member(first) + _member(b"") + _member(second))
            assert r.status_code == 200 and not ExportLogsServiceResponse.FromString(r.content).partial_success.error_message
            cut = len(whole_json) // 3  # JSON split mid-token: only the whole inflated body parses
            r = post(_member(whole_json[:cut]) + _member(whole_json[cut:]), JSON)
            assert r.status_code == 200, r.text
            bad = {
                "garbage": _member(third) + b"garbage",
                "one stray byte": _member(third) + b"\x1f",
                "zero padding": _member(third) + b"\0" * 8,
                "half a member": _member(third) + _member(third)[:9],
            }
            for name, body in bad.items():
                r = post(body)
                assert r.status_code == 400, name
                assert "trailing bytes after gzip member 1" in r.content.decode(errors="replace"), (name, r.content)
            # The limit is on the inflated total, whichever member passes it (each alone fits).
            r = post(_member(b"\0" * 600_000) + _member(b"\0" * 600_000))
            assert r.status_code == 413
            bomb = _bomb(64 << 20)
            r = post(_member(first) + bomb)
            assert r.status_code == 413
            # Many members, each a step of the loop: 1,000 pass, one more is refused.
            r = post(_member(first) + _member(b"") * 999)
            assert r.status_code == 200, r.text
            r = post(_member(first) + _member(b"") * 1_000)
            assert r.status_code == 400 and "more than 1000 gzip members" in r.text, r.text
    finally:
        app.extensions["aa_db"].close()
    stored = sorted(conn.execute("SELECT attributes->>'request_id', input_tokens FROM llm_requests").fetchall())
    assert stored == sorted(first_rows + second_rows)  # each stored once (the JSON repeat is a duplicate)

