"""A span's events and links are a record's worth of work each (a time, a name, attributes): they
count toward AA_MAX_RECORDS, and their attributes (and a scope's) toward AA_MAX_ATTRIBUTES,
refused with a 413 naming the limit before any span is normalised. Values nested in an
attribute are converted only as far as their stored text goes."""
from __future__ import annotations

import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from agent_analytics.app import create_app
from agent_analytics.ingest import values
from tests.ingest_support import headers


def _spans(events: int = 0, links: int = 0, event_attributes: int = 0, scope_attributes: int = 0) -> bytes:
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    for i in range(scope_attributes):
        kv = ss.scope.attributes.add()
        kv.key, kv.value.string_value = f"s{i}", "x"
    span = ss.spans.add()
    span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 8, "work"
    span.start_time_unix_nano = span.end_time_unix_nano = time.time_ns()
    for _ in range(events):
        event = span.events.add()
        for i in range(event_attributes):
            kv = event.attributes.add()
            kv.key, kv.value.int_value = f"e{i}", i
    for _ in range(links):
        span.links.add().trace_id = b"\x03" * 16
    return req.SerializeToString()


def _post(config, body: bytes, **limits):
    app = create_app(config.replace(**limits), role="ingest")
    try:
        return app.test_client().post("/v1/traces", data=body, headers=headers())
    finally:
        app.extensions["aa_db"].close()


def test_span_events_and_links_count_as_records(config, conn):
    # The defaults: a span of 50,001 events (100 KB) or links passes AA_MAX_RECORDS (50,000).
    for body in (_spans(events=50_001), _spans(links=50_001), _spans(events=25_000, links=25_001)):
        resp = _post(config, body)
        assert resp.status_code == 413 and b"AA_MAX_RECORDS" in resp.data, resp.data[:300]
    # Exactly at a limit of 5 records: the span and 4 events or links; one more is refused.
    assert _post(config, _spans(events=2, links=2), max_records=5).status_code == 200
    resp = _post(config, _spans(events=3, links=2), max_records=5)
    assert resp.status_code == 413 and b"AA_MAX_RECORDS" in resp.data


def test_event_and_scope_attributes_count_as_attributes(config, conn):
    assert _post(config, _spans(events=3, event_attributes=3, scope_attributes=1), max_attributes=10).status_code == 200
    for body in (_spans(events=3, event_attributes=3, scope_attributes=2), _spans(events=1, event_attributes=11),
                 _spans(scope_attributes=11)):
        resp = _post(config, body, max_attributes=10)
        assert resp.status_code == 413 and b"AA_MAX_ATTRIBUTES" in resp.data, resp.data[:300]


def _nodes(value) -> int:
    if isinstance(value, list):
        return 1 + sum(_nodes(v) for v in value)
    if isinstance(value, dict):
        return 1 + sum(_nodes(v) for v in value.values())
    return 1


def test_nested_values_are_converted_as_far_as_their_stored_text_goes():
    # An array of 200,000 integers and a map of 100,000 arrays: stored as text cut at 512
    # characters. Converted whole, they took seconds of Python each.
    flat = AnyValue()
    flat.array_value.values.extend(AnyValue(int_value=i) for i in range(200_000))
    expected = "[" + ", ".join(str(i) for i in range(200))
    nested = AnyValue()
    for i in range(100_000):
        kv = nested.kvlist_value.values.add()
        kv.key = f"k{i}"
        kv.value.array_value.values.add().bool_value = True
    expected_nested = "{" + ", ".join(f"'k{i}': [True]" for i in range(100))
    for value, text in ((flat, expected), (nested, expected_nested)):
        converted = values.any_value(value)
        assert _nodes(converted) <= values.MAX_STRING + 1
        stored = values.bounded({"a": converted})["a"]
        assert stored == text[:values.MAX_STRING] + "…"
    # Small values whole.
    small = AnyValue()
    small.array_value.values.extend(AnyValue(string_value=s) for s in "abc")
    assert values.any_value(small) == ["a", "b", "c"]
