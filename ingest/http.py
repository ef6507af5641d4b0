"""The OTLP/HTTP receiver and the directory API: the only ingest module that knows Flask.

POST /v1/logs, /v1/metrics, /v1/traces: auth -> content type -> body (gzip, size limit) ->
codec -> normalise -> pricing -> store -> an Export*ServiceResponse in the content type asked.
Failures are answered as agent_analytics/errors.py classifies them, as an OTLP Status: a
Permanent error's 4xx (400 only for a body that can never be read), 503 with Retry-After when
the database is unreachable, so senders retry and lose nothing. The directory API's errors go
to the app's one JSON handler (errors.register).
"""
from __future__ import annotations

import logging
import time
import zlib
from typing import IO

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from psycopg_pool import PoolTimeout

from agent_analytics import db, errors
from agent_analytics.auth import Permission, require

from . import codec, directory, limits, normalise, pricing, store
from .metrics import IngestMetrics, reason_label
from .rows import Batch, Context

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer around the deflate stream
# Senders and proxies concatenate a few members; 16 MiB of empty 20-byte ones took a second of
# CPU to walk.
MAX_GZIP_MEMBERS = 1_000
MAX_REASONS = 10
SIGNALS = ("logs", "metrics", "traces")

otlp = Blueprint("otlp", __name__)
directory_api = Blueprint("directory", __name__, url_prefix="/api/v1/directory")


class TooLarge(errors.Permanent):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"body larger than {max_bytes} bytes after decompression", 413)


class UnsupportedMedia(errors.Permanent):
    def __init__(self, message: str) -> None:
        super().__init__(message, 415)


def _metrics() -> IngestMetrics:
    return current_app.extensions["aa_ingest_metrics"]


def _format_asked() -> str:
    """OTLP answers in the request's own content type; an unsupported one gets JSON (readable)."""
    return codec.media_format(request.mimetype) or codec.JSON


def read_body(max_bytes: int) -> bytes:
    """The request body, decompressed, refusing anything past `max_bytes` as early as it shows:
    gzip is inflated in bounded steps, so a small bomb never becomes a large buffer."""
    encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        raise UnsupportedMedia(f"unsupported Content-Encoding {encoding!r} (gzip or none)")
    if request.content_length is not None and request.content_length > max_bytes:
        raise TooLarge(max_bytes)
    stream = request.stream
    if encoding == "identity":
        data = stream.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise TooLarge(max_bytes)
        return data
    return _gunzip(stream, max_bytes)


def _gunzip(stream: IO[bytes], max_bytes: int) -> bytes:
    """Every member of a gzip body (RFC 1952: a gzip file is a series of members, and some
    senders and proxies concatenate them), within one limit on the inflated total. Whatever
    follows a member must be another member: trailing bytes are refused, never ignored."""
    inflater = zlib.decompressobj(GZIP_WBITS)
    members = 1
    out = bytearray()
    received = 0
    try:
        while chunk := stream.read(CHUNK):
            received += len(chunk)
            if received > max_bytes:
                raise TooLarge(max_bytes)
            while chunk:
                if inflater.eof:  # the previous member ended: these bytes begin the next
                    inflater = zlib.decompressobj(GZIP_WBITS)
                    members += 1
                    if members > MAX_GZIP_MEMBERS:
                        raise codec.UnreadableBody(f"bad gzip body: more than {MAX_GZIP_MEMBERS} gzip "
                                                   "members; compress the body as one")
                out += inflater.decompress(chunk, max_bytes + 1 - len(out))
                if len(out) > max_bytes:
                    raise TooLarge(max_bytes)
                chunk = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
    except zlib.error as exc:
        if members > 1:
            raise codec.UnreadableBody(f"bad gzip body: trailing bytes after gzip member {members - 1} "
                                       f"({exc})") from None
        raise codec.UnreadableBody(f"bad gzip body: {exc}") from None
    if not inflater.eof:
        raise codec.UnreadableBody("truncated gzip body" if members == 1 else
                                   f"bad gzip body: trailing bytes after gzip member {members - 1} "
                                   "(not a complete gzip member)")
    return bytes(out)


def _error(signal: str, fmt: str, exc: BaseException) -> Response:
    """`exc` as errors.answer classifies it, in an OTLP Status body; a bug is a 500."""
    out = errors.answer(exc, current_app.config["AA"].retry_after_s)
    status, message, headers = (out.status, out.message, out.headers) if out else (500, "internal error", {})
    if status == 503:
        log.warning("ingest %s refused, database unavailable: %s", signal, exc.__class__.__name__)
    elif status >= 500:
        log.error("ingest %s failed: %s", signal, exc.__class__.__name__, exc_info=True)
    _metrics().requests.labels(signal, str(status)).inc()
    return Response(codec.encode_status(fmt, status, message), status=status, headers=headers,
                    content_type=codec.CONTENT_TYPES[fmt])


def _store_with_retry(batch: Batch) -> store.StoreResult:
    """A pooled connection may have died with a database restart: one fresh attempt. Safe,
    because a store is idempotent even when its first commit's fate is unknown."""
    database = db.get_db()
    for attempt in (1, 2):
        try:
            with database.connection() as conn:
                return store.store(conn, batch)
        except Exception as exc:
            # A PoolTimeout got no connection at all: a second attempt would wait again.
            if attempt == 2 or not errors.is_retryable(exc) or isinstance(exc, PoolTimeout):
                raise
    raise AssertionError("unreachable")


def _rejection_message(batch: Batch) -> str:
    shown = "; ".join(f"#{r.index}: {r.reason}" for r in batch.rejections[:MAX_REASONS])
    more = len(batch.rejections) - MAX_REASONS
    return f"{len(batch.rejections)} of {batch.received} rejected: {shown}" + (f"; and {more} more" if more > 0 else "")


def _record(signal: str, batch: Batch, result: store.StoreResult) -> None:
    m = _metrics()
    m.received.labels(signal).inc(batch.received)
    m.ignored.labels(signal).inc(batch.ignored)
    for r in batch.rejections:
        m.rejected.labels(signal, reason_label(r.reason)).inc()
    for table, n in result.inserted.items():
        if n:
            m.stored.labels(signal, table).inc(n)
    if result.duplicates:
        m.duplicates.labels(signal).inc(result.duplicates)
    for req in batch.llm_requests:
        if req.estimated_cost_usd is None:
            # A request whose own figures contradict each other is unpriced for that reason.
            kind = "inconsistent_request" if req.cost_basis == pricing.INCONSISTENT_SPLIT else "request"
            m.unpriced.labels(kind, req.provider, req.model).inc()
    for p in batch.metric_points:
        if p.metric == "tokens" and not p.cumulative and not p.priced:
            m.unpriced.labels("point", p.provider, p.model).inc()


def _internal_errors(signal: str, n: int) -> None:
    _metrics().internal_errors.labels(signal).inc(n)
    if n > 1:
        log.error("ingest %s: %d records could not be normalised (the first one's traceback is logged above)",
                  signal, n)


def export(signal: str) -> Response:
    started = time.perf_counter()
    fmt = _format_asked()
    try:
        require(Permission.INGEST)
        body_fmt = codec.media_format(request.mimetype)
        if body_fmt is None:
            raise UnsupportedMedia(f"unsupported Content-Type {request.mimetype!r} "
                                   "(application/x-protobuf or application/json)")
        cfg = current_app.config["AA"]
        bounds = limits.Limits.of(cfg)
        body = read_body(cfg.max_body_bytes)
        message = codec.decode(signal, body, body_fmt, bounds)
        limits.check(signal, message, bounds, len(body))  # before any per-record work
        del body  # (not kept while the batch is worked on)
        batch = normalise.normalise(signal, message, Context.now(cfg.retention_days, cfg.attribution))
        if batch.internal_errors:  # counted now: the store may still fail, and the sender retry
            _internal_errors(signal, batch.internal_errors)
        pricing.price(batch)
        # Every record is counted in the database (ingest/stats.py), facts or none.
        result = _store_with_retry(batch) if batch.received else store.StoreResult()
    except Exception as exc:
        return _error(signal, fmt, exc)
    _record(signal, batch, result)
    _metrics().requests.labels(signal, "200").inc()
    _metrics().batch_seconds.labels(signal).observe(time.perf_counter() - started)
    body = codec.encode_response(signal, fmt, len(batch.rejections),
                                 _rejection_message(batch) if batch.rejections else "")
    return Response(body, status=200, content_type=codec.CONTENT_TYPES[fmt])


for _signal in SIGNALS:
    otlp.add_url_rule(f"/v1/{_signal}", f"export_{_signal}", lambda s=_signal: export(s), methods=["POST"])


# -- directory API -----------------------------------------------------------------------------

@directory_api.before_request
def _directory_auth() -> None:
    require(Permission.INGEST)  # before the body is read: 401/403 come first


def _json_body() -> object:
    limit = current_app.config["AA"].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise directory.DirectoryError(f"body larger than {limit} bytes", status=413)
    data = request.get_json(silent=True)
    if data is None:
        raise directory.DirectoryError("the body must be JSON", status=400)
    return data


def _run(fn, *args):
    with db.get_db().connection() as conn:
        return fn(conn, *args)


@directory_api.post("")
@directory_api.put("")
def directory_apply():
    """Bulk upsert: {"users": [...], "groups": [...], "agents": [...], ...}; idempotent."""
    out = _run(directory.apply, _json_body())
    return jsonify(out)


@directory_api.get("")
def directory_export():
    """Everything, as a document `POST /api/v1/directory` (or `directory load`) accepts back."""
    out = _run(directory.export)
    return jsonify(out)


@directory_api.post("/delete")
def directory_delete():
    """Bulk delete: {"users": ["id", ...], "tools": [{"mcp_server_id": ..., "name": ...}], ...}."""
    out = _run(directory.delete, _json_body())
    return jsonify(out)


@directory_api.get("/<kind>")
def directory_list(kind: str):
    out = _run(directory.list_kind, kind)
    return jsonify({kind: out})


@directory_api.put("/<kind>/<path:key>")
def directory_put_one(kind: str, key: str):
    body = _json_body()
    if not isinstance(body, dict):
        raise directory.DirectoryError("the body must be a JSON object", status=400)
    out = _run(directory.put_one, kind, key, body)
    return jsonify(out)


@directory_api.delete("/<kind>/<path:key>")
def directory_delete_one(kind: str, key: str):
    out = _run(directory.delete_one, kind, key)
    return jsonify(out)


@directory_api.put("/groups/<group_id>/members/<user_id>")
def directory_add_member(group_id: str, user_id: str):
    out = _run(directory.add_member, group_id, user_id)
    return jsonify(out)


@directory_api.delete("/groups/<group_id>/members/<user_id>")
def directory_remove_member(group_id: str, user_id: str):
    out = _run(directory.remove_member, group_id, user_id)
    return jsonify(out)


def register(app: Flask) -> None:
    app.extensions["aa_ingest_metrics"] = IngestMetrics.create(app.extensions["aa_registry"], SIGNALS)
    app.register_blueprint(otlp)
    app.register_blueprint(directory_api)
