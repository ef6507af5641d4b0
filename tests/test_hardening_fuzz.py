"""Property-based fuzzing of the OTLP decoders (protobuf and JSON): random bytes, truncations and
byte mutations of the captured fixtures, and structural mutations of their JSON encodings.
The decoder and the normaliser never fail but with a clean "unreadable" or a per-record rejection;
through the receiver every answer is 200 (with partial_success when something was refused) or a
4xx, never a 5xx, and whatever was stored passes the sanity rules. Beside the random search, every
attribute a normaliser reads is set in turn to every odd value we could think of (types, sizes,
JSON inside strings), for every kind of record each normaliser stores."""
from __future__ import annotations

import gzip
import json
import math

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from agent_analytics.ingest import codec, normalise
from agent_analytics.ingest.normalise import INTERNAL_ERROR
from agent_analytics.ingest.rows import MAX_TOKENS, Context
from tests.hardening_support import insane_rows
from tests.ingest_support import FIXTURES, JSON, PB, add_attributes, headers, set_value

FIXTURE_FILES = {"logs": ["claude-code-2.1.328-logs-1.pb", "claude-code-2.1.328-logs-2.pb", "codex-0.169.0-logs-1.pb"],
                 "metrics": ["claude-code-2.1.328-metrics-1.pb", "claude-code-2.1.328-metrics-2.pb"]}


def _trace_sample() -> bytes:
    """No captured traces exist: a gateway's allowed, failed and blocked tool calls and a GenAI
    chat span, shaped as the gateway contract and the GenAI conventions say."""
    import time

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    now = time.time_ns() - 60 * 10**9
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "mcp-gateway"
    spans = rs.scope_spans.add().spans
    common = {"mcp.method.name": "tools/call", "mcp.server.name": "crm", "enduser.id": "ann@example.com",
              "agent.id": "codex", "agent.instance.id": "laptop-1", "session.id": "s-trace"}
    shapes = [("tools/call lookup", {"gen_ai.tool.name": "lookup"}, 0),
              ("tools/call write", {"gen_ai.tool.name": "write", "error.type": "timeout"}, 2),
              ("tools/call wipe", {"gen_ai.tool.name": "wipe", "mcp.gateway.decision": "block",
                                   "policy.id": "p-1", "policy.name": "No wipes"}, 0),
              ("chat gpt-5", {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                              "gen_ai.request.model": "gpt-5", "gen_ai.usage.input_tokens": 120,
                              "gen_ai.usage.output_tokens": 30, "gen_ai.usage.cache_read.input_tokens": 20,
                              "gen_ai.conversation.id": "s-trace"}, 0)]
    for i, (name, attrs, status) in enumerate(shapes):
        sp = spans.add()
        sp.name, sp.trace_id, sp.span_id = name, bytes(range(16)), bytes([i + 1] * 8)
        sp.start_time_unix_nano, sp.end_time_unix_nano = now + i, now + i + 5_000_000
        sp.status.code = status
        add_attributes(sp.attributes, {**common, **attrs} if name.startswith("tools/") else attrs)
    return req.SerializeToString()


SAMPLES = [(signal, (FIXTURES / name).read_bytes()) for signal, names in FIXTURE_FILES.items() for name in names]
SAMPLES.append(("traces", _trace_sample()))
SIGNALS = ("logs", "metrics", "traces")
HTTP_OK = {200, 400}  # 413 and 415 cannot happen with these sizes and types; asserted exactly
DB_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                             HealthCheck.too_slow])
PURE_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
    | st.sampled_from(["", "\x00", "NaN", "-1", "1e400", "zz", "5b8efff7", "claude_code.api_request",
                       "api_request", "tools/call x", "2099-01-01T00:00:00Z"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12)


def _mutate(body: bytes, edits: list[tuple[float, int]]) -> bytes:
    out = bytearray(body)
    for where, byte in edits:
        out[min(int(where * len(out)), len(out) - 1)] = byte
    return bytes(out)


def _paths(node, prefix=()):
    """Every path into a JSON document (dict keys and list indexes)."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _replace(doc, path, value):
    if not path:
        return value
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def _check_pure(signal: str, body: bytes, fmt: str) -> None:
    """Decode and normalise: an UnreadableBody or a batch of sane facts, nothing else."""
    try:
        message = codec.decode(signal, body, fmt)
    except codec.UnreadableBody:
        return
    batch = normalise.normalise(signal, message, Context.now())
    assert batch.received >= len(batch.rejections) + batch.ignored - 0
    now = Context.now().now_ns
    for r in batch.llm_requests:
        assert 0 <= r.input_tokens <= MAX_TOKENS and 0 <= r.output_tokens <= MAX_TOKENS
        assert 0 <= r.cache_read_tokens <= MAX_TOKENS and 0 <= r.cache_write_tokens <= MAX_TOKENS
        assert r.reported_cost_usd is None or r.reported_cost_usd >= 0
        assert 946_684_800 * 10**9 <= r.time_ns <= now + 86_400 * 10**9
    for p in batch.metric_points:
        assert math.isfinite(p.value) and p.value >= 0
    for t in batch.tool_calls:
        assert t.outcome in ("ok", "error", "blocked") and (t.duration_ms is None or t.duration_ms >= 0)
    for rej in batch.rejections:
        assert rej.reason and rej.index >= 0
        assert rej.reason != INTERNAL_ERROR, "normalisation raised something other than BadValue (see the log)"


@PURE_SETTINGS
@given(signal=st.sampled_from(SIGNALS), body=st.binary(max_size=3000), fmt=st.sampled_from([codec.PROTOBUF, codec.JSON]))
def test_decoders_on_random_bytes(signal, body, fmt):
    _check_pure(signal, body, fmt)


@PURE_SETTINGS
@given(sample=st.sampled_from(SAMPLES), cut=st.floats(0, 1), edits=st.lists(
    st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=6), as_json=st.booleans())
def test_decoders_on_truncated_and_mutated_fixtures(sample, cut, edits, as_json):
    signal, body = sample
    if as_json:
        body = codec.encode(codec.decode(signal, body, codec.PROTOBUF), codec.JSON)
    body = body[:max(1, int(cut * len(body)))] if cut < 0.98 else body
    _check_pure(signal, _mutate(body, edits) if body else body, codec.JSON if as_json else codec.PROTOBUF)


@PURE_SETTINGS
@given(sample=st.sampled_from(SAMPLES), data=st.data())
def test_decoders_on_structurally_mutated_json(sample, data):
    signal, body = sample
    doc = json.loads(codec.encode(codec.decode(signal, body, codec.PROTOBUF), codec.JSON))
    paths = list(_paths(doc))
    for _ in range(data.draw(st.integers(1, 4))):
        path = data.draw(st.sampled_from(paths))
        try:
            doc = _replace(doc, path, data.draw(json_values))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed this path
        paths = list(_paths(doc))
    _check_pure(signal, json.dumps(doc, allow_nan=True).encode(), codec.JSON)


def _post(client, signal: str, body: bytes, content_type: str, gzipped: bool):
    h = headers(content_type=content_type)
    if gzipped:
        body = gzip.compress(body)
        h["Content-Encoding"] = "gzip"
    return client.post(f"/v1/{signal}", data=body, headers=h)


def _assert_answer(resp) -> None:
    assert resp.status_code in HTTP_OK, (resp.status_code, resp.data[:300])
    if resp.status_code == 200 and resp.content_type == JSON:
        partial = resp.get_json().get("partialSuccess")
        if partial:
            assert partial.get("errorMessage"), partial  # a refusal always says why
            assert INTERNAL_ERROR not in partial["errorMessage"], partial


@DB_SETTINGS
@given(signal=st.sampled_from(SIGNALS), body=st.binary(max_size=2000),
       content_type=st.sampled_from([PB, JSON]), gzipped=st.booleans())
def test_receiver_on_random_bodies(client, conn, signal, body, content_type, gzipped):
    _assert_answer(_post(client, signal, body, content_type, gzipped))
    assert insane_rows(conn) == {}


@DB_SETTINGS
@given(sample=st.sampled_from(SAMPLES), cut=st.floats(0, 1), edits=st.lists(
    st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=6), as_json=st.booleans(), gzipped=st.booleans(),
    gzip_cut=st.booleans())
def test_receiver_on_truncated_and_mutated_fixtures(client, conn, sample, cut, edits, as_json, gzipped, gzip_cut):
    signal, body = sample
    if as_json:
        body = codec.encode(codec.decode(signal, body, codec.PROTOBUF), codec.JSON)
    body = _mutate(body[:max(1, int(cut * len(body)))] if cut < 0.98 else body, edits)
    if gzipped and gzip_cut:  # a truncated gzip stream
        h = headers(content_type=JSON if as_json else PB, **{"Content-Encoding": "gzip"})
        resp = client.post(f"/v1/{signal}", data=gzip.compress(body)[:-5], headers=h)
        assert resp.status_code == 400
    else:
        _assert_answer(_post(client, signal, body, JSON if as_json else PB, gzipped))
    assert insane_rows(conn) == {}


@DB_SETTINGS
@given(sample=st.sampled_from(SAMPLES), data=st.data())
def test_receiver_on_structurally_mutated_json(client, conn, sample, data):
    signal, body = sample
    doc = json.loads(codec.encode(codec.decode(signal, body, codec.PROTOBUF), codec.JSON))
    paths = list(_paths(doc))
    for _ in range(data.draw(st.integers(1, 4))):
        path = data.draw(st.sampled_from(paths))
        try:
            doc = _replace(doc, path, data.draw(json_values))
        except (KeyError, IndexError, TypeError):
            continue
        paths = list(_paths(doc))
    text = json.dumps(doc, allow_nan=True).encode()
    assume(len(text) < 1_000_000)
    _assert_answer(_post(client, signal, text, JSON, False))
    assert insane_rows(conn) == {}


@pytest.mark.parametrize("sample", SAMPLES, ids=[f"{s}-{i}" for i, (s, _) in enumerate(SAMPLES)])
def test_unmutated_fixtures_store_sane_rows(client, conn, sample):
    """The control: the fuzzers' starting points store real rows, so 'sane' is not 'empty'."""
    signal, body = sample
    assert _post(client, signal, body, PB, False).status_code == 200
    assert insane_rows(conn) == {}
    assert conn.execute("SELECT (SELECT count(*) FROM llm_requests) + (SELECT count(*) FROM metric_points)"
                        " + (SELECT count(*) FROM tool_calls)").fetchone()[0] > 0


KINDS = ("users", "groups", "agents", "agent_instances", "mcp_servers", "tools", "policies")
FIELDS = ("id", "name", "email", "display_name", "members", "tags", "agent_id", "user_id", "mcp_server_id",
          "description")
item = st.dictionaries(st.sampled_from(FIELDS), json_values | st.text(max_size=600), max_size=6)
document = st.dictionaries(st.sampled_from(KINDS + ("memberships", "unknown")),
                           st.lists(item, max_size=4) | json_values, max_size=4)


@DB_SETTINGS
@given(doc=document | json_values, kind=st.sampled_from(KINDS + ("nope",)), key=st.text(min_size=1, max_size=80),
       one=json_values)
def test_directory_api_on_random_documents(client, doc, kind, key, one):
    from urllib.parse import quote

    h = headers(content_type=JSON)
    for method, url, body in (("POST", "/api/v1/directory", doc), ("POST", "/api/v1/directory/delete", doc),
                              ("PUT", f"/api/v1/directory/{kind}/{quote(key, safe='')}", one),
                              ("DELETE", f"/api/v1/directory/{kind}/{quote(key, safe='')}", None),
                              ("PUT", f"/api/v1/directory/groups/{quote(key, safe='')}/members/u", None)):
        resp = client.open(url, method=method, headers=h, data=json.dumps(body, allow_nan=True))
        assert resp.status_code in (200, 400, 404), (method, url, resp.status_code, resp.data[:300])
        if resp.status_code == 400:
            assert resp.get_json()["error"]
    for k in KINDS:
        assert client.get(f"/api/v1/directory/{k}", headers=h).status_code == 200


# -- every attribute a handler reads, with a value of any OTLP type ---------------------------

# The attributes the normalisers read (identity, names, counts, flags, times, JSON in a string).
READ_KEYS = sorted({
    "agent.id", "agent.instance.id", "agent.name", "cache_creation_tokens", "cache_read_tokens", "conversation.id",
    "cost_usd", "decision", "decision_type", "duration_ms", "enduser.id", "error", "error.message", "error.type",
    "error_type", "event.kind", "event.name", "event.timestamp", "gen_ai.agent.id", "gen_ai.agent.name",
    "gen_ai.conversation.id", "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model",
    "gen_ai.response.model", "gen_ai.system", "gen_ai.token.type", "gen_ai.tool.name",
    "gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "http.response.status_code", "input_tokens",
    "mcp.gateway.decision", "mcp.method.name", "mcp.server.id", "mcp.server.name", "mcp.session.id",
    "mcp.tool.name", "mcp_server", "model", "output_tokens", "policy.description", "policy.id", "policy.name",
    "service.name", "session.id", "source", "status_code", "success", "tool_name", "tool_parameters", "type",
    "user.email", "user.id", "user.account_uuid", "user.account_id", "input_token_count", "output_token_count",
    "cached_token_count", "cache_write_token_count"})

# Values of every OTLP type, and texts that mean something to one normaliser or another (JSON
# with names of the wrong type, JSON nested too deep to parse).
ODD_VALUES = ["", "\x00", "x" * 5000, "NaN", "1e400", "-1", "0.5", "-0", "mcp_tool", "mcp__a__b", "mcp__", "reject",
              "config", "denied", "block", "tools/call", "chat", "response.completed", "true", "input", "cacheRead",
              "2099-01-01T00:00:00Z", "not a time", '{"mcp_server_name": ["x"], "mcp_tool_name": 5}',
              '{"mcp_server_name": {"a": 1}, "mcp_tool_name": true}', '{"mcp_server_name": "\\u0000"}', "[1, 2]",
              "[" * 3000, '{"a": ' * 2000, 0, -1, 2**63 - 1, -2**63, 10**12, 0.0, -0.5, 1e-7, 1e300, math.nan,
              math.inf, -math.inf, True, False, b"", b"\x00\xff", [], [1, "a", 2.5], ["x"] * 3, {}, {"k": "v"},
              {"mcp_server_name": 1}]
_scalars = (st.text(max_size=20) | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=True, allow_infinity=True)
            | st.booleans() | st.binary(max_size=8)
            | st.sampled_from([v for v in ODD_VALUES if not isinstance(v, (list, dict))]))
any_values = _scalars | st.lists(_scalars, max_size=3) | st.dictionaries(st.text(max_size=8), _scalars, max_size=3)


def _attrs(container, attrs: dict) -> None:
    for k, v in attrs.items():
        kv = container.add()
        kv.key = k
        set_value(kv.value, v)


_CLAUDE = ({"service.name": "claude-code"}, "com.anthropic.claude_code.events")
_CODEX = ({"service.name": "codex_cli_rs"}, "codex_otel")
_GATEWAY = ({"service.name": "mcp-gateway"}, "gateway")
_ID = {"session.id": "s-1", "user.email": "ann@example.com"}
LOG_SHAPES = [
    (_CLAUDE, "claude_code.api_request", {"event.name": "api_request", "model": "claude-sonnet-4-5", "input_tokens": 10,
                                          "output_tokens": 2, "cost_usd": 0.001, "duration_ms": 900, **_ID}),
    (_CLAUDE, "claude_code.api_error", {"event.name": "api_error", "model": "claude-sonnet-4-5", "error": "overloaded",
                                        "status_code": "529", **_ID}),
    (_CLAUDE, "claude_code.tool_result", {"event.name": "tool_result", "tool_name": "mcp__crm__lookup",
                                          "success": "true", "duration_ms": 12, **_ID}),
    (_CLAUDE, "claude_code.tool_result", {"event.name": "tool_result", "tool_name": "mcp_tool", "success": "false",
                                          "tool_parameters": '{"mcp_server_name": "crm", "mcp_tool_name": "x"}', **_ID}),
    (_CLAUDE, "claude_code.tool_decision", {"event.name": "tool_decision", "tool_name": "mcp__crm__wipe",
                                            "decision": "reject", "source": "config", **_ID}),
    (_CODEX, "codex.sse_event", {"event.name": "codex.sse_event", "event.kind": "response.completed",
                                 "model": "gpt-5", "input_token_count": 100, "output_token_count": 20,
                                 "cached_token_count": 30, "conversation.id": "c-1", **_ID}),
    (_CODEX, "codex.api_request", {"event.name": "codex.api_request", "model": "gpt-5",
                                   "http.response.status_code": 500, "error.message": "boom", **_ID}),
    (_CODEX, "codex.tool_result", {"event.name": "codex.tool_result", "tool_name": "lookup", "mcp_server": "crm",
                                   "success": "true", "duration_ms": "5", **_ID}),
    (_CODEX, "codex.tool_decision", {"event.name": "codex.tool_decision", "tool_name": "wipe", "mcp_server": "crm",
                                     "decision": "denied", "source": "config", **_ID}),
    (_CLAUDE, "claude_code.mcp_server_connection", {"event.name": "mcp_server_connection", "status": "failed",
                                                    "server_name": "crm", "error_code": "ENOENT", **_ID}),
    (_CODEX, "codex.sandbox_outcome", {"event.name": "codex.sandbox_outcome", "tool_name": "exec_command",
                                       "outcome": "denied", "conversation.id": "c-1", **_ID}),
    (_GATEWAY, "mcp.tool.call", {"event.name": "mcp.tool.call", "gen_ai.tool.name": "wipe", "mcp.server.name": "crm",
                                 "mcp.gateway.decision": "block", "policy.id": "p-1", "policy.name": "No wipes",
                                 "enduser.id": "ann@example.com", "agent.id": "codex"}),
]


def _logs_request(shape, records: list[dict], resource_overrides: dict | None = None):
    """One request of `shape`'s resource and scope with a record per attribute dict."""
    import time

    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    (resource, scope), body, _ = shape
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    _attrs(rl.resource.attributes, {**resource, **(resource_overrides or {})})
    sl = rl.scope_logs.add()
    sl.scope.name = scope
    now = time.time_ns() - 10**9
    for i, attrs in enumerate(records):
        rec = sl.log_records.add()
        rec.time_unix_nano = now + i
        rec.body.string_value = body
        _attrs(rec.attributes, attrs)
    return req


def _no_internal_errors(batch) -> None:
    assert [r.index for r in batch.rejections if r.reason == INTERNAL_ERROR] == [], \
        "normalisation raised something other than BadValue (see the log)"


@pytest.mark.parametrize("shape", LOG_SHAPES, ids=[f"{i}-{s[1]}" for i, s in enumerate(LOG_SHAPES)])
def test_the_fuzzed_shapes_are_facts_as_they_are(shape):
    """The tests below start from records each handler stores: their mutations reach them."""
    batch = normalise.logs(_logs_request(shape, [shape[2]]), Context.now())
    # A blocked MCP tool's decision is its blocked call and a permission decision (agent_enforcement).
    facts = 2 if shape[1].endswith("tool_decision") else 1
    assert (batch.facts, batch.rejections, batch.ignored) == (facts, [], 0)


@pytest.mark.parametrize("shape", LOG_SHAPES, ids=[f"{i}-{s[1]}" for i, s in enumerate(LOG_SHAPES)])
def test_each_read_attribute_with_each_odd_value(shape):
    """Every attribute a normaliser reads, set in turn to every odd value (one record each, in
    one batch): each record is kept or rejected with a reason, never an internal error, and the
    untouched record at the end stands."""
    attrs = shape[2]
    records = [{**attrs, key: value} for key in READ_KEYS for value in ODD_VALUES] + [attrs]
    batch = normalise.logs(_logs_request(shape, records), Context.now())
    _no_internal_errors(batch)
    assert len(records) - 1 not in [r.index for r in batch.rejections]


@PURE_SETTINGS
@given(shape=st.sampled_from(LOG_SHAPES), overrides=st.dictionaries(st.sampled_from(READ_KEYS), any_values,
                                                                    min_size=1, max_size=4),
       on_resource=st.booleans())
def test_read_attributes_with_values_of_any_type_together(shape, overrides, on_resource):
    """Several attributes at once, of any type, on the record or on its resource."""
    attrs = shape[2]
    req = _logs_request(shape, [attrs if on_resource else {**attrs, **overrides}, attrs],
                        overrides if on_resource else None)
    batch = normalise.logs(req, Context.now())
    _no_internal_errors(batch)
    if not on_resource:
        assert 1 not in [r.index for r in batch.rejections], batch.rejections
    _check_pure("logs", req.SerializeToString(), codec.PROTOBUF)


_GW_SPAN = {"mcp.method.name": "tools/call", "gen_ai.tool.name": "wipe", "mcp.server.name": "crm",
            "mcp.gateway.decision": "block", "policy.id": "p-1", "enduser.id": "ann@example.com", "agent.id": "codex",
            "agent.instance.id": "i-1", "session.id": "s-1"}
_CHAT_SPAN = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-5",
              "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 30,
              "gen_ai.usage.cache_read.input_tokens": 20, "gen_ai.conversation.id": "s-1", "user.email": "a@b.c"}
SPAN_SHAPES = [("tools/call wipe", _GW_SPAN), ("chat gpt-5", _CHAT_SPAN)]
POINT_SHAPES = [("claude_code.token.usage", "sum", {"type": "input", "model": "claude-sonnet-4-5", **_ID}),
                ("claude_code.cost.usage", "sum", {"model": "claude-sonnet-4-5", **_ID}),
                ("gen_ai.client.token.usage", "histogram", {"gen_ai.token.type": "input", "gen_ai.system": "openai",
                                                            "gen_ai.request.model": "gpt-5", **_ID})]


def _spans_request(name: str, records: list[dict]):
    import time

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    _attrs(rs.resource.attributes, {"service.name": "svc"})
    spans = rs.scope_spans.add().spans
    now = time.time_ns() - 10**9
    for i, attrs in enumerate(records):
        sp = spans.add()
        sp.name, sp.trace_id, sp.span_id = name, bytes(range(16)), i.to_bytes(8, "big")
        sp.start_time_unix_nano, sp.end_time_unix_nano = now + i, now + i + 5_000_000
        _attrs(sp.attributes, attrs)
    return req


def _points_request(metric: str, kind: str, records: list[dict]):
    import time

    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    _attrs(rm.resource.attributes, {"service.name": "claude-code"})
    m = rm.scope_metrics.add().metrics.add()
    m.name = metric
    data = getattr(m, kind)
    data.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    now = time.time_ns() - 10**9
    for i, attrs in enumerate(records):
        dp = data.data_points.add()
        dp.start_time_unix_nano, dp.time_unix_nano = now + i - 10**9, now + i
        if kind == "sum":
            dp.as_double = 12.5
        else:
            dp.count, dp.sum = 1, 40
        _attrs(dp.attributes, attrs)
    return req


def _odd_records(attrs: dict) -> list[dict]:
    return [{**attrs, key: value} for key in READ_KEYS for value in ODD_VALUES] + [attrs]


@pytest.mark.parametrize("signal, shape", [("traces", s) for s in SPAN_SHAPES] + [("metrics", p) for p in POINT_SHAPES],
                         ids=[s[0] for s in SPAN_SHAPES] + [p[0] for p in POINT_SHAPES])
def test_spans_and_points_with_each_odd_value(signal, shape):
    """Spans and metric points, as the log records above: each of their read attributes set to
    each odd value; the shape itself is a fact, the untouched copy at the end stands."""
    build = (lambda recs: _spans_request(shape[0], recs)) if signal == "traces" else \
        (lambda recs: _points_request(*shape[:2], recs))
    attrs = shape[-1]
    alone = normalise.normalise(signal, build([attrs]), Context.now())
    assert (alone.facts, alone.rejections, alone.ignored) == (1, [], 0)
    records = _odd_records(attrs)
    batch = normalise.normalise(signal, build(records), Context.now())
    _no_internal_errors(batch)
    assert len(records) - 1 not in [r.index for r in batch.rejections]


def test_odd_values_through_the_receiver_into_the_database(client, conn):
    """The same odd values, stored: every batch (logs, spans, metric points) is answered 200,
    bad records refused with a reason, never an internal error (the harness fails any test whose
    normalisation failed in our own code) nor a batch the database refuses; each shape's
    untouched record is stored, and the rows are sane."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    def odd_then_untouched(attrs: dict, k: int) -> list[dict]:
        # The untouched record names a session of its own, by every key a normaliser reads one from.
        marker = f"s-untouched-{k}"
        return _odd_records(attrs)[:-1] + [
            {**attrs, "session.id": marker, "conversation.id": marker, "gen_ai.conversation.id": marker}]

    shapes = [("logs", lambda recs, shape=shape: _logs_request(shape, recs), shape[2], ExportLogsServiceResponse)
              for shape in LOG_SHAPES]
    shapes += [("traces", lambda recs, name=name: _spans_request(name, recs), attrs, ExportTraceServiceResponse)
               for name, attrs in SPAN_SHAPES]
    shapes += [("metrics", lambda recs, m=metric, kind=kind: _points_request(m, kind, recs), attrs,
                ExportMetricsServiceResponse) for metric, kind, attrs in POINT_SHAPES]
    for k, (signal, build, attrs, response) in enumerate(shapes):
        resp = _post(client, signal, build(odd_then_untouched(attrs, k)).SerializeToString(), PB, False)
        assert resp.status_code == 200, (signal, resp.data[:300])
        assert response.FromString(resp.data).partial_success.error_message  # odd values were refused, with reasons
    assert insane_rows(conn) == {}
    stored = {sid for (sid,) in conn.execute(
        "SELECT session_id FROM llm_requests UNION SELECT session_id FROM llm_errors"
        " UNION SELECT session_id FROM tool_calls UNION SELECT session_id FROM metric_points"
        " UNION SELECT session_id FROM agent_enforcement")}
    assert {f"s-untouched-{k}" for k in range(len(shapes))} <= stored, sorted(s for s in stored if s and "untouched" in s)
