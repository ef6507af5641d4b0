"""OTLP requests in, facts and rejections out (pure: no I/O, no clock but the Context).

Each record goes to the module of the source that sent it (an agent, an MCP gateway, any GenAI
instrumentation: ingest/sources.py tells which). A record that fails validation is rejected alone, with its index
and a reason; a record that is simply not about LLM requests or tool calls (a prompt event,
an unrelated metric) is counted as ignored, never as rejected.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, fields
from operator import attrgetter, itemgetter
from typing import Any, Callable, Mapping

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from . import sources, stats
from .identity import merged
from .rows import Batch, Context
from .records import LogEvent, Point, SpanView
from .values import BadValue, Flattened, attributes, iso_to_ns, text

log = logging.getLogger(__name__)
# The reason given for a record our own code failed on (the receiver's log has the traceback).
INTERNAL_ERROR = "could not be normalised (an internal error, logged by the receiver)"


def _log_time(rec, attrs: dict[str, Any]) -> int:
    # Codex sends time_unix_nano = 0: its event.timestamp is the real time.
    if rec.time_unix_nano:
        return rec.time_unix_nano
    return iso_to_ns(attrs.get("event.timestamp")) or rec.observed_time_unix_nano


# Identifiers are indexed, and PostgreSQL refuses an index entry past about 2.7 kB.
MAX_ID_BYTES = 1024
_ID_FIELDS = ("session_id", "user_id", "agent_id", "agent_instance_id", "mcp_server_id", "tool_name",
              "provider", "model", "policy_id")


def _nul(value: Any) -> bool:
    """PostgreSQL text and jsonb cannot hold a NUL character, anywhere."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_nul(k) or _nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        if value.count(None) == len(value):  # (the usual attribution: nothing there)
            return False
        return any(_nul(v) for v in value)
    return False


# A NUL inside JSON text: \u0000 not itself escaped (preceded by an even number of backslashes).
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _reader(names: tuple[str, ...]) -> Callable[[Any], tuple]:
    """One call reading the attributes `names` of an object, as a tuple."""
    if len(names) > 1:
        return attrgetter(*names)
    return (lambda obj: (getattr(obj, names[0]),)) if names else (lambda obj: ())


@dataclass(frozen=True)
class _Checks:
    """What `_unstorable` reads of one kind of fact, worked out once from its fields' types
    (this runs for every record)."""
    texts: tuple[str, ...]          # str fields
    ids: tuple[str, ...]            # indexed identifiers among them
    others: tuple[str, ...]         # fields that may hold containers, other than `attributes`
    read_texts: Callable[[Any], tuple]
    pick_ids: Callable[[tuple], tuple]  # the identifiers among the texts read

    @classmethod
    def of(cls, fact_type: type) -> "_Checks":
        # Annotations are text here (postponed evaluation), or types where they are not.
        kinds = {f.name: f.type if isinstance(f.type, str) else getattr(f.type, "__name__", None) or str(f.type)
                 for f in fields(fact_type)}
        # (The JSON text of the attributes is searched apart: NUL is escaped there.)
        texts = tuple(n for n, t in kinds.items() if t.startswith("str") and not n.endswith("_json"))
        # (The attribution values are refused with a NUL where they are read: `attribution`.)
        others = tuple(n for n, t in kinds.items()
                       if n not in ("attributes", "attribution") and t.startswith(("dict", "list", "tuple", "Any")))
        ids = tuple(n for n in texts if n in _ID_FIELDS)
        at = tuple(texts.index(n) for n in ids)
        pick_ids = itemgetter(*at) if len(at) > 1 else (lambda v: (v[at[0]],)) if at else (lambda v: ())
        return cls(texts, ids, others, _reader(texts), pick_ids)


_CHECKS: dict[type, _Checks] = {}
_PLAIN_IDS = frozenset({str, type(None)})  # identifiers' usual types: none of them Flattened


def _unstorable(fact: Any) -> str | None:
    """Why a normalised fact cannot be stored as it is, or None."""
    checks = _CHECKS.get(type(fact)) or _CHECKS.setdefault(type(fact), _Checks.of(type(fact)))
    values = checks.read_texts(fact)
    joined = "".join(filter(None, values))
    if "\x00" in joined:
        return next(f"{name} contains a NUL character" for name, v in zip(checks.texts, values) if v and "\x00" in v)
    if not _PLAIN_IDS.issuperset(map(type, values)):  # (checked on every text: fewer calls)
        for name, value in zip(checks.ids, checks.pick_ids(values)):
            if isinstance(value, Flattened):  # its repr would be stored as the name
                return f"{name} is {value.kind}, not a string"
    attributes_json = getattr(fact, "attributes_json", None)
    if attributes_json is not None:
        # Searched once as the JSON text it is stored as (cheaper than walking the dict).
        if "\\u0000" in attributes_json and _JSON_NUL.search(attributes_json):
            return "attributes contains a NUL character"
    elif _nul(getattr(fact, "attributes", None)):
        return "attributes contains a NUL character"
    for name in checks.others:
        if _nul(getattr(fact, name)):
            return f"{name} contains a NUL character"
    if len(joined) * 4 <= MAX_ID_BYTES:  # (at most 4 bytes a character) no identifier can be too long
        return None
    for name, value in zip(checks.ids, checks.pick_ids(values)):
        if value and len(value) * 4 > MAX_ID_BYTES and len(value.encode()) > MAX_ID_BYTES:
            return f"{name} is longer than {MAX_ID_BYTES} bytes"
    return None


def attribution(attrs: Mapping[str, Any], ctx: Context) -> tuple[str | None, ...]:
    """The attribution dimensions' values (config.ATTRIBUTION, in order) of a record: the
    attribute each is read from (ctx.attribution), of the resource or the record itself (the
    record wins, as for every attribute). Absent, empty, or a map or an array: unattributed."""
    if not any(map(attrs.__contains__, ctx.attribution_keys)):  # (the usual record: none read)
        return ctx.unattributed
    values = []
    for _, key in ctx.attribution:
        value = text(attrs, key) if key else None
        if isinstance(value, Flattened):
            value = None
        if value is not None:
            if "\x00" in value:
                raise BadValue(f"{key} contains a NUL character")
            if len(value.encode()) > MAX_ID_BYTES:
                raise BadValue(f"{key} is longer than {MAX_ID_BYTES} bytes")
        values.append(value)
    return tuple(values)


def _attribute(facts: list, attrs: Mapping[str, Any], ctx: Context) -> None:
    """Each fact of a table with attribution columns gets its record's values."""
    values = None
    for fact in facts:
        if hasattr(fact, "attribution"):
            values = values or attribution(attrs, ctx)
            fact.attribution = values


def _run(batch: Batch, index: int, handler: Callable[[Any, Batch, Context], bool], record: Any, ctx: Context,
         key: stats.Key) -> None:
    """`handler(record, batch, ctx)`, keeping what it adds only if all of it can be stored; the
    record is counted under `key` (ingest/stats.py)."""
    batch.received += 1
    mark = batch.mark()
    try:
        if not handler(record, batch, ctx):
            batch.ignored += 1
            batch.count(key, "ignored")
            return
        new_facts, new_rows = batch.since(mark)
        if any(map(record.attrs.__contains__, ctx.attribution_keys)):  # (else every fact keeps NO_ATTRIBUTION)
            _attribute(new_facts, record.attrs, ctx)
        reason = next(filter(None, map(_unstorable, new_facts)), None) or (
            "a directory name contains a NUL character" if new_rows and _nul(new_rows) else None)
        if reason:
            raise BadValue(reason)
    except BadValue as exc:
        batch.undo(mark)  # a record is stored whole or not at all
        batch.reject(index, str(exc), key)
        return
    except Exception:  # a case our code did not foresee: it costs this record, not the batch
        batch.internal_errors += 1
        if batch.internal_errors == 1:  # one traceback per batch (the receiver logs the count)
            what = getattr(record, "name", None) or getattr(record, "metric", None) or type(record).__name__
            log.exception("normalising record #%d (%r) failed", index, str(what)[:80])
        batch.undo(mark)
        batch.reject(index, INTERNAL_ERROR, key)
        return
    if not new_facts:  # (no handler accepts a record without a fact; were one to, nothing is stored)
        batch.count(key, "ignored")
        return
    origin = len(batch.origins)
    batch.origins.append(key)
    for fact in new_facts:
        fact.origin = origin


def logs(req: ExportLogsServiceRequest, ctx: Context) -> Batch:
    batch = Batch("logs")
    index = 0
    for rl in req.resource_logs:
        resource = attributes(rl.resource.attributes)
        sender = stats.service(resource)
        for sl in rl.scope_logs:
            scope = sl.scope.name
            own = sources.owner(resource, scope)
            for rec in sl.log_records:
                record = attributes(rec.attributes)
                body = rec.body.string_value  # "" unless the body is a string
                name = sources.event_name(own, record, body, rec)
                attrs = merged(resource, record)
                handler, source = sources.log_route(name, attrs, own, resource)
                ev = LogEvent(name=name, resource=resource, record=record, attrs=attrs,
                              time_ns=_log_time(rec, record), scope=scope)
                key = stats.key(source, "logs", sender, attrs)
                if handler is None:
                    batch.received += 1
                    batch.ignored += 1
                    batch.count(key, "ignored")
                else:
                    _run(batch, index, handler, ev, ctx, key)
                index += 1
    return batch


def _points(metric) -> tuple[str, list, bool, bool]:
    kind = metric.WhichOneof("data") or ""
    if kind == "sum":
        return kind, list(metric.sum.data_points), \
            metric.sum.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE, \
            metric.sum.is_monotonic
    if kind == "histogram":
        return kind, list(metric.histogram.data_points), \
            metric.histogram.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE, True
    if kind == "gauge":
        return kind, list(metric.gauge.data_points), False, False
    if kind == "exponential_histogram":
        return kind, list(metric.exponential_histogram.data_points), \
            metric.exponential_histogram.aggregation_temporality == \
            AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE, True
    if kind == "summary":
        return kind, list(metric.summary.data_points), True, True
    return kind, [], False, False


def _point_value(kind: str, dp) -> float | None:
    if kind in ("sum", "gauge"):
        which = dp.WhichOneof("value")
        if which == "as_int":
            return float(dp.as_int)
        if which == "as_double":
            return dp.as_double
        return None
    if kind in ("histogram", "exponential_histogram"):
        return dp.sum if dp.HasField("sum") else None
    return None


def metrics(req: ExportMetricsServiceRequest, ctx: Context) -> Batch:
    batch = Batch("metrics")
    index = 0
    for rm in req.resource_metrics:
        resource = attributes(rm.resource.attributes)
        sender = stats.service(resource)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind, points, cumulative, monotonic = _points(metric)
                handler = sources.point_handler(metric.name)
                source = sources.metric_source(metric.name, resource)
                for dp in points:
                    if handler is None:
                        batch.received += 1
                        batch.ignored += 1
                        batch.count(stats.key(source, "metrics", sender,
                                              stats.identity_attributes(resource, dp.attributes)), "ignored")
                    else:
                        record = attributes(dp.attributes)
                        p = Point(metric=metric.name, kind=kind, cumulative=cumulative, monotonic=monotonic,
                                  value=_point_value(kind, dp), time_ns=dp.time_unix_nano,
                                  start_time_ns=dp.start_time_unix_nano, resource=resource, record=record,
                                  attrs=merged(resource, record))
                        _run(batch, index, handler, p, ctx, stats.key(source, "metrics", sender, p.attrs))
                    index += 1
    return batch


def traces(req: ExportTraceServiceRequest, ctx: Context) -> Batch:
    batch = Batch("traces")
    index = 0
    for rs in req.resource_spans:
        resource = attributes(rs.resource.attributes)
        sender = stats.service(resource)
        for ss in rs.scope_spans:
            for sp in ss.spans:
                record = attributes(sp.attributes)
                view = SpanView(name=sp.name, resource=resource, record=record, attrs=merged(resource, record),
                                start_ns=sp.start_time_unix_nano, end_ns=sp.end_time_unix_nano,
                                error=sp.status.code == Status.STATUS_CODE_ERROR,
                                status_message=sp.status.message, trace_id=sp.trace_id.hex(),
                                span_id=sp.span_id.hex(), kind=sp.kind)
                handler = sources.span_handler(view)
                key = stats.key(sources.span_source(view.attrs, view.kind, handler, resource), "traces", sender,
                                view.attrs)
                if handler is None:
                    batch.received += 1
                    batch.ignored += 1
                    batch.count(key, "ignored")
                else:
                    _run(batch, index, handler, view, ctx, key)
                index += 1
    return batch


NORMALISERS = {"logs": logs, "metrics": metrics, "traces": traces}


def normalise(signal: str, req, ctx: Context) -> Batch:
    return NORMALISERS[signal](req, ctx)

