"""Denial of service: work bounded per OTLP request (resources, scopes, records, attributes)
before any record is normalised; data source requests bounded in targets, points per series and
range per bucket size; slow and idle connections that cannot lock legitimate requests out."""
from __future__ import annotations

import contextlib
import gzip
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Iterator
from unittest import mock

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from agent_analytics.app import create_app
from agent_analytics.cluster import free_port
from agent_analytics.datasource import service as datasource_service
from agent_analytics.datasource.shared import Shared
from agent_analytics.ingest import limits as limits_module
from tests.harness_support import INGEST_TOKEN, LLM_TOKEN, QUERY_TOKEN
from tests.hardening_support import api_requests
from tests.ingest_support import headers

NOW = time.time_ns()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field, written by hand: the oracle for what a request holds."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


EMPTY = b""
# ExportLogsServiceRequest.resource_logs = 1; ResourceLogs.scope_logs = 2; ScopeLogs.log_records = 2;
# LogRecord.attributes = 6.  ExportTraceServiceRequest.resource_spans = 1; .scope_spans = 2; .spans = 2.


def _logs(resources: int = 1, scopes: int = 1, records: int = 1, attributes: int = 0) -> bytes:
    record = _field(6, EMPTY) * attributes
    scope = _field(2, record) * records
    resource = _field(2, scope) * scopes
    return _field(1, resource) * resources


def _count(conn, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _refused(resp, setting: str) -> str:
    assert resp.status_code == 413, (resp.status_code, resp.data[:300])
    message = resp.data.decode(errors="replace")
    assert setting in message, message
    return message


def test_millions_of_empty_resources_are_refused_before_any_is_walked(client, conn):
    # The body: 16 KB of gzip inflating to 8 million empty ResourceLogs (15 MiB).
    body = gzip.compress(b"\x0a\x00" * 8_000_000)
    assert len(body) < 20_000
    resp = client.post("/v1/logs", data=body, headers=headers(**{"Content-Encoding": "gzip"}))
    assert "more than 1000 resources" in _refused(resp, "AA_MAX_RESOURCES")
    good, _ = api_requests("after", 1, NOW)
    assert client.post("/v1/logs", data=good, headers=headers()).status_code == 200
    assert _count(conn, "llm_requests") == 1


def test_the_wire_format_is_counted_before_the_parser_builds_messages(client, conn):
    # Past the limit, whatever follows is never parsed: 1,001 empty resources and then bytes no
    # parser accepts answer 413 (the count), not 400 (the parser); 16 MiB of empty resources
    # would otherwise become half a gigabyte of messages first. Within the limits the parser
    # still words the 400.
    garbage = b"\xff" * 10
    for body, status in ((b"\x0a\x00" * 1_001 + garbage, 413), (b"\x0a\x00" * 1_000 + garbage, 400),
                         (_logs(scopes=10_001) + garbage, 413), (_logs(records=50_001) + garbage, 413)):
        assert client.post("/v1/logs", data=body, headers=headers()).status_code == status


def test_unknown_fields_do_not_hand_the_body_to_the_parser_uncounted(client, conn):
    # Unknown fields are valid protobuf, groups included (parsers keep them): before the
    # resources, inside a resource, or many of them, they must not stop the count, or 1,001
    # empty resources and bytes no parser accepts would answer the parser's 400 (16 MiB of them
    # half a gigabyte of messages).
    group = _varint(15 << 3 | 3) + _varint(1 << 3 | 0) + b"\x01" + _varint(15 << 3 | 4)
    nested = _varint(14 << 3 | 3) + group + _varint(14 << 3 | 4)
    garbage = b"\xff" * 10
    for body in (group + b"\x0a\x00" * 1_001 + garbage,
                 nested + b"\x0a\x00" * 1_001 + garbage,
                 _field(1, group) * 1_001 + garbage):
        _refused(client.post("/v1/logs", data=body, headers=headers()), "AA_MAX_RESOURCES")
    # More unknown fields than any request within the limits has: refused, not parsed.
    good, _ = api_requests("padded", 1, NOW)
    padding = (_varint(15 << 3 | 0) + b"\x00") * (3 * (1_000 + 10_000) + 50_000 + 10_000)
    message = _refused(client.post("/v1/logs", data=padding + good, headers=headers()), "AA_MAX_RECORDS")
    assert "protobuf fields" in message, message
    assert _count(conn, "llm_requests") == 0
    # A group where the parser refuses it is still the parser's 400.
    for bad in (_varint(15 << 3 | 4), group[:-1], _varint(15 << 3 | 3) + _varint(14 << 3 | 4)):
        assert client.post("/v1/logs", data=bad, headers=headers()).status_code == 400


def test_requests_at_the_limits_with_every_field_filled_are_not_refused_by_the_prescan():
    # Every resource and scope with its own message and schema URL, and unknown fields: the most
    # fields a request within the default limits has around its records, counted by the message
    # class itself; and every captured exporter's request.
    from google.protobuf.message import Message
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from ingest import codec
    from ingest import limits as limits_module
    from tests.ingest_support import FIXTURES

    bounds = limits_module.Limits(1_000, 10_000, 50_000, 1_000_000)
    request = ExportLogsServiceRequest()
    for r in range(1_000):
        resource_logs = request.resource_logs.add(schema_url="https://opentelemetry.io/schemas/1.26.0")
        resource_logs.resource.attributes.add(key="service.name").value.string_value = f"svc-{r}"
        for s in range(10):
            scope_logs = resource_logs.scope_logs.add(schema_url="https://opentelemetry.io/schemas/1.26.0")
            scope_logs.scope.name = f"scope-{s}"
            for _ in range(5):
                scope_logs.log_records.add().body.string_value = "x"
    body = request.SerializeToString() + (_varint(15 << 3 | 0) + b"\x00") * 10_000
    limits_module.prescan("logs", body, bounds)
    assert len(ExportLogsServiceRequest.FromString(body).resource_logs) == 1_000
    # Metrics at the limit with every field of theirs filled: 25,000 metrics of one point each.
    metrics = ExportMetricsServiceRequest()
    scope_metrics = metrics.resource_metrics.add(schema_url="s").scope_metrics.add(schema_url="s")
    scope_metrics.scope.name = "meter"
    for m in range(25_000):
        metric = scope_metrics.metrics.add(name=f"m{m}", description="d", unit="1")
        metric.sum.aggregation_temporality, metric.sum.is_monotonic = 1, True
        metric.sum.data_points.add().as_int = m
    limits_module.prescan("metrics", metrics.SerializeToString(), bounds)
    # ... and 50,000 metrics with no point at all (each one's own fields filled).
    for metric in scope_metrics.metrics:
        del metric.sum.data_points[:]
    for m in range(25_000):
        metric = scope_metrics.metrics.add(name=f"n{m}", description="d", unit="1")
        metric.sum.aggregation_temporality, metric.sum.is_monotonic = 1, True
    limits_module.prescan("metrics", metrics.SerializeToString(), bounds)
    checked = 0
    for path in sorted(FIXTURES.glob("*.pb")):
        signal = next(s for s in ("logs", "metrics", "traces") if f"-{s}" in path.name)
        message: Message = codec.decode(signal, path.read_bytes(), codec.PROTOBUF, bounds)
        assert message.ListFields(), path.name
        checked += 1
    assert checked >= 20


def _key(number: int, wire: int, overlong: bool = False) -> bytes:
    key = _varint(number << 3 | wire)
    return key[:-1] + bytes([key[-1] | 0x80, 0]) if overlong else key


# Fields of a ScopeLogs / ScopeSpans (scope = 1, records = 2, schema_url = 3) as a sender may
# write them, canonical or not: unknown ones, known numbers with other wire types, overlong keys
# and lengths, groups, and bytes no parser accepts.
_SCOPE_FIELD = st.one_of(
    st.builds(lambda content: _field(2, content), st.binary(max_size=4)),
    st.builds(lambda content: _field(2, content), st.binary(max_size=4)),
    st.builds(lambda n, content, long_key, long_len: _key(n, 2, long_key) + (
        bytes([len(content) | 0x80, 0]) if long_len else _varint(len(content))) + content,
        st.sampled_from([1, 1, 2, 2, 2, 3, 3, 4, 15]), st.binary(max_size=4), st.booleans(), st.booleans()),
    st.builds(lambda n: _key(n, 0) + b"\x01", st.sampled_from([1, 2, 3, 9])),
    st.builds(lambda n: _key(n, 1) + b"\x00" * 8, st.sampled_from([2, 5])),
    st.builds(lambda n: _key(n, 5) + b"\x00" * 4, st.sampled_from([2, 5])),
    st.builds(lambda n: _key(n, 3) + _key(1, 0) + b"\x01" + _key(n, 4), st.sampled_from([2, 15])),
    st.sampled_from([b"\xff", _key(1, 4), _key(2, 2) + b"\x05", _key(0, 2) + b"\x00", b"\x13"]),
)


@settings(max_examples=400, deadline=None)
@given(signal=st.sampled_from(["logs", "traces"]),
       scopes=st.lists(st.lists(_SCOPE_FIELD, max_size=10), min_size=1, max_size=3),
       split=st.booleans(), resource_limit=st.integers(1, 3), scope_limit=st.integers(1, 3),
       records=st.integers(0, 6),
       other_fields=st.sampled_from([0, 2, 5, limits_module.OTHER_FIELDS]))
def test_scopes_counted_by_the_runtime_are_counted_as_the_wire_walk_counts_them(
        signal, scopes, split, resource_limit, scope_limit, records, other_fields):
    # The prescan counts a scope's records with the protobuf runtime (a skeleton message) when it
    # can, and walks the wire format in Python otherwise: for any scope, the answer (nothing, or
    # which limit, or the fields' 413) is the walk's alone, whatever the scope holds.
    bodies = [_field(2, b"".join(fields)) for fields in scopes]
    body = (b"".join(_field(1, scope) for scope in bodies) if split
            else _field(1, b"".join(bodies)))
    bounds = limits_module.Limits(resource_limit, scope_limit, records, 1_000_000)

    def answer() -> str | None:
        try:
            limits_module.prescan(signal, body, bounds)
        except limits_module.TooMuchWork as refused:
            return f"{type(refused).__name__}: {refused}"
        return None

    with mock.patch.object(limits_module, "OTHER_FIELDS", other_fields):
        counted = answer()
        with mock.patch.object(limits_module, "SKELETON_BYTES", 0):
            assert counted == answer()


def test_the_runtime_counts_plain_scopes_and_leaves_odd_ones_to_the_walk():
    from google.protobuf import descriptor_pb2
    # The skeleton's file, written as wire bytes, is the FileDescriptorProto it says it is.
    expected = descriptor_pb2.FileDescriptorProto(name="agent_analytics/ingest/prescan_scope.proto",
                                                  package="agent_analytics.prescan", syntax="proto2")
    scope_message = expected.message_type.add(name="Scope")
    for number, name in ((1, "scope"), (2, "records"), (3, "schema_url")):
        scope_message.field.add(name=name, number=number, label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
                                type=descriptor_pb2.FieldDescriptorProto.TYPE_BYTES)
    assert descriptor_pb2.FileDescriptorProto.FromString(limits_module.SKELETON_FILE) == expected
    plain = _field(1, b"s") + _field(2, EMPTY) * 3 + _field(2, b"\x08\x01") + _field(3, b"u")
    assert limits_module._scope_counts(memoryview(plain), 0, len(plain)) == (4, 6)
    # An overlong key is still the field it names, for the runtime as for the walk.
    body = plain + _key(2, 2, overlong=True) + b"\x00"
    assert limits_module._scope_counts(memoryview(body), 0, len(body)) == (5, 7)
    for odd in (_key(2, 0) + b"\x01", _field(4, EMPTY), _key(15, 3) + _key(15, 4), b"\xff"):
        body = plain + odd
        assert limits_module._scope_counts(memoryview(body), 0, len(body)) is None, odd
    # Fields beyond the budget in one or two scopes the runtime counts: the fields' 413 one past
    # it (the request's one field and the resource's one a scope are counted as well).
    bounds = limits_module.Limits(1_000, 10_000, 50_000, 1_000_000)
    budget = 3 * (1_000 + 10_000) + 50_000 + limits_module.OTHER_FIELDS
    for scopes, fields, refused in ((1, budget - 2, False), (1, budget - 1, True),
                                    (2, (budget - 3) // 2, False), (2, (budget - 3) // 2 + 1, True)):
        scope = _field(3, EMPTY) * fields
        assert limits_module._scope_counts(memoryview(scope), 0, len(scope)) == (0, fields)
        body = _field(1, _field(2, scope) * scopes)
        if refused:
            with pytest.raises(limits_module.TooManyFields):
                limits_module.prescan("logs", body, bounds)
        else:
            limits_module.prescan("logs", body, bounds)
    # Records past the limit over two scopes the runtime counts.
    for second, refused in ((25_000, False), (25_001, True)):
        body = _field(1, _field(2, _field(2, EMPTY) * 25_000) + _field(2, _field(2, EMPTY) * second))
        if refused:
            with pytest.raises(limits_module.TooMuchWork, match="AA_MAX_RECORDS"):
                limits_module.prescan("traces", body, bounds)
        else:
            limits_module.prescan("traces", body, bounds)
    # A scope larger than the skeleton may take (its memory) is walked.
    big = _field(2, b"x" * limits_module.SKELETON_BYTES)
    assert limits_module._scope_counts(memoryview(big), 0, len(big)) is None


def test_json_bodies_are_counted_before_they_become_messages(client, conn):
    # The last item is no OTLP at all: counted first, the answer is the limit's 413.
    body = b'{"resourceLogs": [' + b",".join([b"{}"] * 1_000 + [b'{"resource": 5}']) + b"]}"
    _refused(client.post("/v1/logs", data=body, headers=headers(content_type="application/json")),
             "AA_MAX_RESOURCES")
    body = b'{"resource_spans": [{"scope_spans": [{"spans": [' + b",".join([b"{}"] * 50_000 + [b'{"name": []}']) + b"]}]}]}"
    _refused(client.post("/v1/traces", data=body, headers=headers(content_type="application/json")),
             "AA_MAX_RECORDS")


@pytest.mark.parametrize("shape, setting", [
    (dict(scopes=10_001), "AA_MAX_SCOPES"),
    (dict(resources=2, scopes=5_001), "AA_MAX_SCOPES"),
    (dict(records=50_001), "AA_MAX_RECORDS"),
    (dict(scopes=3, records=16_667), "AA_MAX_RECORDS"),
    (dict(records=2, attributes=500_001), "AA_MAX_ATTRIBUTES"),
])
def test_each_default_limit_refuses_the_request_that_passes_it(client, conn, shape, setting):
    resp = client.post("/v1/logs", data=_logs(**shape), headers=headers())
    _refused(resp, setting)
    assert _count(conn, "llm_requests") == 0


def test_traces_and_metrics_are_counted_too(client, conn):
    spans = _field(1, _field(2, _field(2, EMPTY) * 50_001))
    _refused(client.post("/v1/traces", data=spans, headers=headers()), "AA_MAX_RECORDS")
    req = ExportMetricsServiceRequest()
    metric = req.resource_metrics.add().scope_metrics.add().metrics.add()
    metric.name = "claude_code.token.usage"
    for _ in range(50_001):
        metric.sum.data_points.add()
    _refused(client.post("/v1/metrics", data=req.SerializeToString(), headers=headers()), "AA_MAX_RECORDS")
    # Metrics without a single point count as records as well (each is walked).
    req = ExportMetricsServiceRequest()
    sm = req.resource_metrics.add().scope_metrics.add()
    for _ in range(50_001):
        sm.metrics.add()
    _refused(client.post("/v1/metrics", data=req.SerializeToString(), headers=headers()), "AA_MAX_RECORDS")
    # Data points are counted on the wire too (Metric.gauge = 5, .sum = 7, .histogram = 9;
    # their data_points = 1), before the parser builds them: past the limit, bytes no parser
    # accepts answer the count's 413; one metric and 49,999 points are within it (the parser's 400).
    garbage = b"\xff" * 10
    for data_field, n, status in ((5, 49_999, 400), (5, 50_000, 413), (7, 50_000, 413), (9, 50_000, 413)):
        body = _field(1, _field(2, _field(2, _field(data_field, _field(1, EMPTY) * n)))) + garbage
        assert client.post("/v1/metrics", data=body, headers=headers()).status_code == status, (data_field, n)
    assert _count(conn, "metric_points") == 0


@pytest.mark.parametrize("change, setting", [
    (dict(), None),
    (dict(max_records=4), "AA_MAX_RECORDS"),
    (dict(max_attributes=46), "AA_MAX_ATTRIBUTES"),  # 2 resource attributes + 5 x 9
    (dict(max_scopes=1, max_resources=1), None),
])
def test_a_request_exactly_at_the_limits_is_stored_and_one_past_refused(config, conn, change, setting):
    limits = dict(max_resources=1, max_scopes=1, max_records=5, max_attributes=47)
    app = create_app(config.replace(**{**limits, **change}), role="ingest")
    try:
        body, expected = api_requests("edge", 5, NOW)
        resp = app.test_client().post("/v1/logs", data=body, headers=headers())
    finally:
        app.extensions["aa_db"].close()
    if setting is None:
        assert resp.status_code == 200
        assert not ExportLogsServiceResponse.FromString(resp.data).HasField("partial_success")
        assert _count(conn, "llm_requests") == len(expected)
    else:
        _refused(resp, setting)
        assert _count(conn, "llm_requests") == 0


def test_the_sdk_exporters_largest_batch_passes_the_defaults(client, conn):
    body, expected = api_requests("sdk", 512, NOW)
    assert client.post("/v1/logs", data=body, headers=headers()).status_code == 200
    assert _count(conn, "llm_requests") == len(expected) == 512


# -- slow clients ------------------------------------------------------------------------------

@contextlib.contextmanager
def _service(database_url: str, **env: str) -> Iterator[tuple[int, int]]:
    """`agent-analytics serve` (both roles) as its own process; yields (ingest port, query port)."""
    ingest, query = free_port(), free_port()
    environ = dict(os.environ, DATABASE_URL=database_url, AA_INGEST_TOKENS=INGEST_TOKEN,
                   AA_QUERY_TOKENS=QUERY_TOKEN, AA_HOST="127.0.0.1", AA_INGEST_PORT=str(ingest),
                   AA_QUERY_PORT=str(query), AA_RETENTION_DAYS="0", AA_DB_POOL_SIZE="2", **env)
    proc = subprocess.Popen([sys.executable, "-m", "agent_analytics.cli", "serve"], env=environ,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        for port in (ingest, query):
            while True:
                try:
                    if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"service did not start: {proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.1)
        yield ingest, query
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


SLOW_HEAD = b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"


def _slow_clients(port: int, heads: int, bodies: int) -> list[socket.socket]:
    """`heads` connections that sent half their headers, `bodies` that sent their headers and a
    part of their declared body; none of them sends more."""
    out = []
    for i in range(heads + bodies):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(SLOW_HEAD if i < heads else SLOW_HEAD + b"Content-Length: 100000\r\n\r\n" + b"\0" * 100)
        out.append(s)
    return out


def _legitimate(ingest: int, query: int, tag: str) -> None:
    body, _ = api_requests(tag, 1, NOW)
    r = requests.post(f"http://127.0.0.1:{ingest}/v1/logs", data=body, headers=headers(), timeout=20)
    assert r.status_code == 200, r.text
    r = requests.get(f"http://127.0.0.1:{query}/api/v1/query/mcp_tool_executions?from=now-1h&to=now",
                     headers={"Authorization": f"Bearer {QUERY_TOKEN}"}, timeout=20)
    assert r.status_code == 200, r.text


def test_slow_clients_beyond_the_connection_limit_do_not_lock_anyone_out(db_url, conn):
    # The attack against a limit of 50 (the default is 1,000): 150 slow headers and
    # 60 slow bodies per port, held open (the request deadline, 60 s here, plays no part).
    with _service(db_url, AA_MAX_CONNECTIONS="50", AA_REQUEST_TIMEOUT_S="60") as (ingest, query):
        held = _slow_clients(ingest, 150, 60) + _slow_clients(query, 150, 60)
        try:
            for round_ in range(3):
                _legitimate(ingest, query, f"legit-{round_}")
        finally:
            for s in held:
                s.close()
    assert _count(conn, "llm_requests") == 3


def _answer_before_the_body(port: int, token: str | None, wait_s: float = 10) -> bytes:
    """The status line the service answers to headers declaring a 1 MB body of which 1,000
    bytes are sent, or b"" when it waits for the rest (`wait_s`, below the request deadline)."""
    auth = f"Authorization: Bearer {token}\r\n".encode() if token else b""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as s:
        s.sendall(SLOW_HEAD + auth + b"Content-Length: 1000000\r\n\r\n" + b"\0" * 1_000)
        try:
            return s.recv(65536).split(b"\r\n")[0]
        except socket.timeout:
            return b""


def test_a_body_without_a_known_token_is_refused_before_it_is_buffered(db_url):
    # waitress buffers a whole body before the application checks the token, in memory up to
    # 512 KiB a connection: 400 connections without a token held 200 MB of a service (measured).
    # The body is refused as soon as the headers show no token the service knows.
    with _service(db_url, AA_REQUEST_TIMEOUT_S="60") as (ingest, query):
        for port in (ingest, query):
            assert _answer_before_the_body(port, None) == b"HTTP/1.1 401 Unauthorized"
            assert _answer_before_the_body(port, "not-a-token") == b"HTTP/1.1 401 Unauthorized"
        # A known token's body is read (and waited for): here it never comes whole.
        assert _answer_before_the_body(ingest, INGEST_TOKEN, wait_s=2) == b""
        r = requests.post(f"http://127.0.0.1:{ingest}/v1/logs", data=b"\0" * 10, timeout=20,
                          headers={"Content-Type": "application/x-protobuf"})
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
        _legitimate(ingest, query, "after-unauthorized")


def _closed_by_server(sock: socket.socket, trickle: bytes, within_s: float) -> bool:
    """Send `trickle` a byte at a time, every 0.2 s, until the server closes the connection."""
    deadline = time.monotonic() + within_s
    sock.settimeout(0.2)
    i = 0
    while time.monotonic() < deadline:
        try:
            sock.sendall(trickle[i % len(trickle):i % len(trickle) + 1])
            i += 1
            if sock.recv(1024) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:  # reset: closed
            return True
    return False


def test_a_request_trickled_a_byte_at_a_time_is_cut_at_the_deadline(db_url):
    # waitress alone closes only connections silent for 120 s: these never are.
    with _service(db_url, AA_REQUEST_TIMEOUT_S="2") as (ingest, query):
        head = socket.create_connection(("127.0.0.1", ingest), timeout=10)
        head.sendall(SLOW_HEAD)
        body = socket.create_connection(("127.0.0.1", query), timeout=10)
        body.sendall(SLOW_HEAD + b"Content-Length: 100000\r\n\r\n")
        try:
            assert _closed_by_server(head, b"X-Slow: 1\r\n", within_s=20)
            assert _closed_by_server(body, b"\0", within_s=20)
            _legitimate(ingest, query, "after-trickle")
        finally:
            head.close()
            body.close()


def test_malloc_trim_is_called_with_its_c_signature():
    # int malloc_trim(size_t pad): called with a C int, the pad's upper 32 bits would be
    # whatever the register held (a huge pad trims nothing). Another C library has none.
    import ctypes
    import platform

    from agent_analytics.server import _malloc_trim

    trim = _malloc_trim()
    if platform.libc_ver()[0] != "glibc":
        assert trim is None
        return
    assert trim is not None
    assert trim.argtypes == [ctypes.c_size_t] and trim.restype is ctypes.c_int
    assert trim(0) in (0, 1)


# -- query amplification -----------------------------------------------------------------------

SERIES = ("mcp_executions_over_time", "llm_tokens_over_time", "llm_cost_over_time", "security_blocked_over_time")
LLM_AUTH = {"Authorization": f"Bearer {LLM_TOKEN}"}


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("metric", SERIES)
def test_a_series_has_at_most_two_thousand_points(ds_client, metric):
    # The request: from the epoch in Asia/Kolkata (20,000 daily points each, and their
    # previous period): refused, naming `from` and the bound.
    resp = ds_client.get(f"/api/v1/query/{metric}?from=0&to=now&tz=Asia/Kolkata", headers=LLM_AUTH)
    body = resp.get_json()
    assert resp.status_code == 400 and "from" in body["fields"], body
    assert "at most 2000 points: with daily buckets" in body["fields"]["from"][0], body
    # Exactly 2,000 local days answer, with 2,000 points; a day more is refused.
    start = datetime(2020, 1, 1, tzinfo=timezone.utc)
    for days, status in ((2_000, 200), (2_001, 400)):
        query = f"from={_iso(start)}&to={_iso(start + timedelta(days=days))}&tz=UTC"
        resp = ds_client.get(f"/api/v1/query/{metric}?{query}", headers=LLM_AUTH)
        assert resp.status_code == status, (days, resp.get_json())
        if status == 200:
            assert len(resp.get_json()["rows"]) == days


def test_series_bounds_hold_on_the_grafana_face(ds_client):
    targets = [{"refId": "A", "target": "llm_cost_over_time"}]
    resp = ds_client.post("/grafana/query", headers=LLM_AUTH, json={
        "range": {"from": "1970-01-01T00:00:00Z", "to": "now"}, "timezone": "Asia/Kolkata", "targets": targets})
    assert resp.status_code == 400 and "from" in resp.get_json()["fields"]
    # Stats over the same range stay allowed: they answer one figure from the aggregates.
    resp = ds_client.post("/grafana/query", headers=LLM_AUTH, json={
        "range": {"from": "1970-01-01T00:00:00Z", "to": "now"}, "timezone": "Asia/Kolkata",
        "targets": [{"refId": "A", "target": "mcp_tool_executions"}]})
    assert resp.status_code == 200


def test_a_grafana_request_runs_at_most_twenty_targets(ds_client):
    rng = {"from": "now-1d", "to": "now"}
    targets = [{"refId": f"R{i}", "target": "mcp_tool_executions"} for i in range(21)]
    resp = ds_client.post("/grafana/query", json={"range": rng, "targets": targets}, headers=LLM_AUTH)
    assert resp.status_code == 400 and "targets" in resp.get_json()["fields"]
    assert "20" in " ".join(resp.get_json()["fields"]["targets"])
    resp = ds_client.post("/grafana/query", json={"range": rng, "targets": targets[:20]}, headers=LLM_AUTH)
    assert resp.status_code == 200 and len(resp.get_json()) == 20


# -- memory ------------------------------------------------------------------------------------

def test_an_idle_service_holds_no_shared_figures(ds_app, ds_client):
    # Figures shared by a refresh's panels expire on a timer: dropped only by a next request, an
    # idle service would keep up to 256 results (with unbounded series, 20,000 rows each) for good.
    # The module's app has served other tests: its own figures may have a purge timer due up
    # to 5 s on. A short-lived set of its own, in its place, has only this test's timer.
    kept = datasource_service.shared(ds_app.extensions)
    shared = ds_app.extensions["aa_datasource_shared"] = Shared(ttl_s=0.2)
    try:
        for days in (3, 30, 300):
            resp = ds_client.get(f"/api/v1/query/llm_cost_over_time?from=now-{days}d&to=now", headers=LLM_AUTH)
            assert resp.status_code == 200
        assert len(shared) > 0
        deadline = time.monotonic() + 10
        while len(shared) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(shared) == 0
    finally:
        ds_app.extensions["aa_datasource_shared"] = kept


# -- live rows ---------------------------------------------------------------------------------

def _materialised_up_to(conn, backend: str, view: str) -> datetime:
    if backend == "plain":
        return conn.execute("SELECT watermark FROM aa_rollups WHERE name = %s", (view,)).fetchone()[0]
    return conn.execute(
        "SELECT _timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark(mat_hypertable_id))"
        " FROM _timescaledb_catalog.continuous_agg WHERE user_view_name = %s", (view,)).fetchone()[0]


def _refresh_as_the_service_does(conn, backend: str, view: str) -> None:
    """Plain: the service's minutely `SELECT aa_refresh_rollups()`; TimescaleDB: a run of the
    aggregate's refresh policy (the tests keep it unscheduled)."""
    if backend == "plain":
        conn.execute("SELECT aa_refresh_rollups()")
        return
    job = conn.execute("SELECT job_id FROM timescaledb_information.jobs"
                       " WHERE proc_name = 'policy_refresh_continuous_aggregate' AND hypertable_name = %s",
                       (view,)).fetchone()[0]
    conn.execute("CALL run_job(%s)", (job,))


def test_every_ended_hour_is_materialised_at_the_next_refresh(client, conn, backend):
    # The live part of an hourly aggregate (raw rows grouped at every query) is the current
    # hour alone: an hour's end offset left up to two hours of rows live, 300,000 under heavy
    # ingest, which every LLM statistic grouped again (2.4 s on plain PostgreSQL).
    # Not across an hour's end while the test runs, nor in an hour's first minute and a half:
    # TimescaleDB's policy refreshes up to a minute ago, which then ends in the hour before.
    now = datetime.now(timezone.utc)
    hour = now.replace(minute=0, second=0, microsecond=0)
    if now - hour > timedelta(minutes=58):
        hour += timedelta(hours=1)
    if now - hour < timedelta(seconds=90):
        time.sleep((hour + timedelta(seconds=90) - now).total_seconds())
    last_minute = int((hour - timedelta(minutes=1)).timestamp() * 1e9)
    for tag, t0, tokens in (("ended", last_minute, 10), ("current", time.time_ns() - 10**9, 1_000)):
        body, _ = api_requests(tag, 3, t0, first_tokens=tokens)
        assert client.post("/v1/logs", data=body, headers=headers()).status_code == 200
    _refresh_as_the_service_does(conn, backend, "llm_usage_hourly")
    assert _materialised_up_to(conn, backend, "llm_usage_hourly") == hour
    # What the view answers is unchanged: the ended hour materialised, the current one live.
    rows = dict(conn.execute("SELECT bucket, sum(input_tokens) FROM llm_usage_hourly"
                             " WHERE bucket >= %s GROUP BY 1", (hour - timedelta(hours=1),)).fetchall())
    assert rows == {hour - timedelta(hours=1): 10 + 11 + 12, hour: 1_000 + 1_001 + 1_002}
