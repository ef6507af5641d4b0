"""How much work one OTLP request may cause, counted before any record is normalised.

The body's bytes are bounded already (AA_MAX_BODY_BYTES), but a few bytes can stand for a lot of
work: an empty ResourceLogs is two bytes, so 16 MiB holds 8 million of them, which the protobuf
runtime parses in a fraction of a second (into half a gigabyte of messages) and our
per-resource Python then walks for seconds. So, in two steps:

- `prescan`, before parsing: the protobuf wire format's resources, scopes and records (log
  records, spans, metrics and their data points) are counted, without building messages, stopping at the first limit
  passed; a body with more fields around them than a request within the limits has (plus
  OTHER_FIELDS) is refused too (a JSON body: the same counts on the decoded JSON, before it
  becomes a message). A scope of logs or spans up to SKELETON_BYTES is counted by the protobuf
  runtime, as a skeleton message whose records stay bytes (16 bytes of memory a record, no
  record parsed): a tenth of the Python walk's cost a record; the walk counts the rest, and any
  scope the skeleton cannot count exactly as the walk does.
- `check`, after parsing: every limit, from the repeated fields' lengths (no value is read),
  again stopping at the first limit passed. Records there include metric data points and a
  span's events and links (each a record's worth of work: a time, a name, attributes);
  attributes those of resources, scopes, records, events and links.

Counted after parsing only: attributes, span events and links, and the values nested in an
attribute (arrays, maps). Counting them on the wire would walk every attribute of every record
in Python, several times the parser's own cost; the parser's memory for them is bounded by the
body's (about 30 times AA_MAX_BODY_BYTES at most), and no Python walks more than the limits
allow: attributes, events and links are refused here (413), and nested values are converted
only as far as their stored text goes (values.any_value).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from google.protobuf import descriptor_pool, message_factory, unknown_fields
from google.protobuf.message import DecodeError, Message

from agent_analytics.errors import Permanent


@dataclass(frozen=True)
class Limits:
    resources: int
    scopes: int
    records: int
    attributes: int

    @classmethod
    def of(cls, cfg: Any) -> "Limits":
        return cls(cfg.max_resources, cfg.max_scopes, cfg.max_records, cfg.max_attributes)


class TooMuchWork(Permanent):
    """The request asks for more work than the limits allow: a 413 naming the limit."""

    def __init__(self, what: str, limit: int, setting: str) -> None:
        self.what, self.limit, self.setting = what, limit, setting
        super().__init__(f"request has more than {limit} {what} (the limit {setting}); "
                         "split it into smaller requests", 413)


class TooManyFields(TooMuchWork):
    """More fields around the resources and scopes than any request within the limits has."""

    def __init__(self, limit: int) -> None:
        self.what, self.limit, self.setting = "fields", limit, ""
        Permanent.__init__(self, f"request has more than {limit} protobuf fields in its resources "
                           "and scopes (more than a request within AA_MAX_RESOURCES, AA_MAX_SCOPES "
                           "and AA_MAX_RECORDS holds); split it into smaller requests", 413)


# The repeated fields of each signal: resources, their scopes, the scopes' records.
_FIELDS = {"logs": ("resource_logs", "scope_logs", "log_records"),
           "metrics": ("resource_metrics", "scope_metrics", "metrics"),
           "traces": ("resource_spans", "scope_spans", "spans")}
_POINTS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")
# Metric's data fields (gauge, sum, histogram, exponential_histogram, summary), whose field 1
# is data_points.
_METRIC_DATA = (5, 7, 9, 10, 11)


class _Malformed(Exception):
    """The prescan met bytes no protobuf parser accepts: the parser words the 400."""


class _Steps(Exception):
    """The prescan took all its steps."""


# Fields the prescan may step over besides the resources, scopes and records it counts, and
# each resource's and scope's own three fields (resource or scope, the repeated field, schema
# URL): unknown fields of a newer OTLP. Past them the request is refused, so that a body of
# millions of fields it does not count costs no more than one it does, and none of them reaches
# the parser (which would build a message of each).
OTHER_FIELDS = 10_000


def _varint(buf: bytes, i: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while i < end and shift < 64:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7
    raise _Malformed()


def _count(buf: bytes, start: int, end: int, numbers: tuple[int, ...], limit: int, what: str,
           steps: list[int], on_each: Callable[[int, int], None] | None = None) -> int:
    """How many fields `numbers` (length-delimited) the message in buf[start:end] holds, calling
    `on_each(value_start, value_end)` for each; raises _Over(what) past `limit`, and _Steps
    once `steps[0]` fields in all were stepped over."""
    n = 0
    i = start
    while i < end:
        steps[0] -= 1
        if steps[0] < 0:
            raise _Steps()
        # This runs for every record: keys of one byte and lengths of one or two (up to 16 KiB)
        # are read inline, the rest by _varint.
        key = buf[i]
        if key < 0x80:
            i += 1
        else:
            key, i = _varint(buf, i, end)
        wire = key & 7
        if wire == 3:
            i = _skip_group(buf, i, end, key >> 3, steps)
        elif wire == 2:
            length = buf[i] if i < end else 0x80
            if length < 0x80:
                i += 1
            elif i + 1 < end and buf[i + 1] < 0x80:
                length = (length & 0x7F) | buf[i + 1] << 7
                i += 2
            else:
                length, i = _varint(buf, i, end)
            if i + length > end:
                raise _Malformed()
            if key >> 3 in numbers:
                n += 1
                if n > limit:
                    raise _Over(what)
                if on_each is not None:
                    on_each(i, i + length)
            i += length
        elif wire == 0:
            _, i = _varint(buf, i, end)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:   # an end of group outside one, or no wire type at all
            raise _Malformed()
    return n


def _skip_group(buf: bytes, i: int, end: int, number: int, steps: list[int]) -> int:
    """Where the group `number` that starts at buf[i] ends (unknown fields may be groups, which
    parsers accept and keep, whatever they hold)."""
    open_groups = [number]
    while open_groups:
        steps[0] -= 1
        if steps[0] < 0:
            raise _Steps()
        if i >= end:
            raise _Malformed()
        key, i = _varint(buf, i, end)
        wire = key & 7
        if wire == 3:
            open_groups.append(key >> 3)
        elif wire == 4:
            if open_groups.pop() != key >> 3:
                raise _Malformed()
        elif wire == 2:
            length, i = _varint(buf, i, end)
            i += length
        elif wire == 0:
            _, i = _varint(buf, i, end)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise _Malformed()
        if i > end:
            raise _Malformed()
    return i


class _Over(Exception):
    pass


def _ld(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (numbers and lengths below 128 here)."""
    return bytes([number << 3 | 2, len(payload)]) + payload


# ScopeLogs and ScopeSpans as far as the prescan reads them: their three fields (scope, records,
# schema URL), each repeated bytes, so that the protobuf runtime counts a scope's records at C
# speed without parsing any record, and every occurrence of a field is one element (nothing
# merged), whatever its content. Written as the FileDescriptorProto's wire format (file: name 1,
# package 2, message_type 4, syntax 12; message: name 1, field 2; field: name 1, number 3,
# label 4 = LABEL_REPEATED 3, type 5 = TYPE_BYTES 12) rather than with descriptor_pb2, whose
# import keeps the Python objects of every descriptor of descriptor.proto alive: the protobuf
# runtime's cache of objects is then fuller, and each message object the normalisers make
# costs more to create (about 1,500 instructions a record).
SKELETON_FILE = (
    _ld(1, b"agent_analytics/ingest/prescan_scope.proto") + _ld(2, b"agent_analytics.prescan")
    + _ld(4, _ld(1, b"Scope") + b"".join(
        _ld(2, _ld(1, name) + bytes([3 << 3, number, 4 << 3, 3, 5 << 3, 12]))
        for number, name in ((1, b"scope"), (2, b"records"), (3, b"schema_url"))))
    + _ld(12, b"proto2"))


def _scope_skeleton() -> type[Message]:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(SKELETON_FILE)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("agent_analytics.prescan.Scope"))


_Scope = _scope_skeleton()
# The largest scope the skeleton parses, for its memory (freed at once; the walk takes none):
# its elements take 16 bytes a record, 9.4 MiB for 512 KiB of empty records, and listing its
# unknown fields makes a Python object of each, 23 MiB for 512 KiB of them (re-serialising it
# to tell whether it has any costs two instructions a byte, a quarter of the walk's saving). A
# larger scope is walked in Python. A 512-record
# batch of Claude Code's events (the SDK exporters' default) is about 400 KiB.
SKELETON_BYTES = 512 * 1024


def _scope_counts(view: memoryview, lo: int, hi: int) -> tuple[int, int] | None:
    """(records, fields) of the ScopeLogs or ScopeSpans in view[lo:hi], as `_count` would
    count them, or None when the runtime refuses its bytes or they hold fields the skeleton does
    not know (any unknown field, or a known one of another wire type): then only the walk counts
    them exactly. Parsed without unknown fields, every field is one of the three, length-delimited,
    each one element, so the counts are the walk's."""
    if hi - lo > SKELETON_BYTES:
        return None
    try:
        scope = _Scope.FromString(view[lo:hi])
    except (DecodeError, RuntimeWarning):
        return None
    if len(unknown_fields.UnknownFieldSet(scope)):
        return None
    records = len(scope.records)
    return records, records + len(scope.scope) + len(scope.schema_url)


def prescan(signal: str, body: bytes, limits: Limits) -> None:
    """Raise TooMuchWork when the protobuf `body` has more resources, scopes or records than
    `limits`, counted on the wire format; a malformed body is left to the parser."""
    totals = {"scopes": 0, "records": 0}
    budget = 3 * (limits.resources + limits.scopes) + limits.records + OTHER_FIELDS
    if signal == "metrics":  # a metric's name, description, unit and data, the data's own two fields
        budget += 6 * limits.records
    steps = [budget]
    view = memoryview(body)

    def points(lo: int, hi: int) -> None:
        totals["records"] += _count(body, lo, hi, (1,), limits.records - totals["records"], "records", steps)

    def metric(lo: int, hi: int) -> None:
        _count(body, lo, hi, _METRIC_DATA, len(body), "", steps, points)

    def scope(lo: int, hi: int) -> None:
        if signal != "metrics":
            # A scope within the limits, counted by the runtime: the walk would count the same
            # and raise nothing in it. Otherwise the walk counts it (and raises at the same field).
            counts = _scope_counts(view, lo, hi)
            if counts is not None and counts[0] <= limits.records - totals["records"] and counts[1] <= steps[0]:
                totals["records"] += counts[0]
                steps[0] -= counts[1]
                return
        # metrics count with their data points, as `check` counts them
        n = _count(body, lo, hi, (2,), limits.records - totals["records"], "records", steps,
                   metric if signal == "metrics" else None)
        totals["records"] += n
        if totals["records"] > limits.records:
            raise _Over("records")

    def resource(lo: int, hi: int) -> None:
        totals["scopes"] += _count(body, lo, hi, (2,), limits.scopes - totals["scopes"], "scopes", steps, scope)

    try:
        _count(body, 0, len(body), (1,), limits.resources, "resources", steps, resource)
    except _Over as over:
        what = over.args[0]
        raise TooMuchWork(what, getattr(limits, what), _SETTINGS[what]) from None
    except _Steps:
        raise TooManyFields(budget) from None
    except _Malformed:
        return


def check_json(signal: str, data: dict[str, Any], limits: Limits) -> None:
    """`prescan` for an OTLP JSON body, on the decoded JSON (camelCase or proto field names)."""
    names = [(_camel(f), f) for f in _FIELDS[signal]]

    def items(node: Any, level: int) -> list:
        if not isinstance(node, dict):
            return []
        value = node.get(names[level][0], node.get(names[level][1]))
        return value if isinstance(value, list) else []

    resources = items(data, 0)
    if len(resources) > limits.resources:
        raise TooMuchWork("resources", limits.resources, "AA_MAX_RESOURCES")
    scopes = records = 0
    for resource in resources:
        scope_list = items(resource, 1)
        scopes += len(scope_list)
        if scopes > limits.scopes:
            raise TooMuchWork("scopes", limits.scopes, "AA_MAX_SCOPES")
        for scope in scope_list:
            records += len(items(scope, 2))
            if records > limits.records:
                raise TooMuchWork("records", limits.records, "AA_MAX_RECORDS")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)


_SETTINGS = {"resources": "AA_MAX_RESOURCES", "scopes": "AA_MAX_SCOPES", "records": "AA_MAX_RECORDS",
             "attributes": "AA_MAX_ATTRIBUTES"}


def check(signal: str, message: Message, limits: Limits, body_bytes: int | None = None) -> None:
    """Raise TooMuchWork when `message` has more resources, scopes, records (metrics count with
    their data points) or attributes (of resources and records) than `limits`. With `body_bytes`,
    the size of the body it was decoded from, log records' attributes are counted only when the
    body could hold more than the limit: each takes two bytes of it at least (a field key and a
    length on the wire, `{}` in JSON)."""
    res_field, scope_field, rec_field = _FIELDS[signal]
    per_record = body_bytes is None or body_bytes // 2 > limits.attributes
    resources = getattr(message, res_field)
    if len(resources) > limits.resources:
        raise TooMuchWork("resources", limits.resources, "AA_MAX_RESOURCES")
    scopes = records = attrs = 0
    for resource in resources:
        attrs += len(resource.resource.attributes)
        scope_list = getattr(resource, scope_field)
        scopes += len(scope_list)
        if scopes > limits.scopes:
            raise TooMuchWork("scopes", limits.scopes, "AA_MAX_SCOPES")
        for scope in scope_list:
            attrs += len(scope.scope.attributes)
            recs = getattr(scope, rec_field)
            records += len(recs)
            if records > limits.records:
                raise TooMuchWork("records", limits.records, "AA_MAX_RECORDS")
            if signal == "metrics":
                records, attrs = _count_points(recs, records, attrs, limits)
            elif signal == "traces":
                records, attrs = _count_spans(recs, records, attrs, limits)
            elif per_record:
                for rec in recs:
                    attrs += len(rec.attributes)
            if attrs > limits.attributes:
                raise TooMuchWork("attributes", limits.attributes, "AA_MAX_ATTRIBUTES")
    if attrs > limits.attributes:
        raise TooMuchWork("attributes", limits.attributes, "AA_MAX_ATTRIBUTES")


def _count_points(metrics: Iterable[Any], records: int, attrs: int, limits: Limits) -> tuple[int, int]:
    for metric in metrics:
        kind = metric.WhichOneof("data")
        if kind not in _POINTS:
            continue
        points = getattr(metric, kind).data_points
        records += len(points)
        if records > limits.records:
            raise TooMuchWork("records", limits.records, "AA_MAX_RECORDS")
        for dp in points:
            attrs += len(dp.attributes)
        if attrs > limits.attributes:
            raise TooMuchWork("attributes", limits.attributes, "AA_MAX_ATTRIBUTES")
    return records, attrs


def _count_spans(spans: Iterable[Any], records: int, attrs: int, limits: Limits) -> tuple[int, int]:
    for span in spans:
        attrs += len(span.attributes)
        events, links = span.events, span.links
        if events or links:
            records += len(events) + len(links)
            if records > limits.records:
                raise TooMuchWork("records", limits.records, "AA_MAX_RECORDS")
            for e in events:
                attrs += len(e.attributes)
            for link in links:
                attrs += len(link.attributes)
            if attrs > limits.attributes:
                raise TooMuchWork("attributes", limits.attributes, "AA_MAX_ATTRIBUTES")
    return records, attrs
