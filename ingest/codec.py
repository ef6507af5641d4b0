"""OTLP/HTTP bodies <-> opentelemetry-proto messages, in protobuf or JSON.

OTLP's JSON differs from protobuf's canonical JSON in one way that matters: trace and span ids
are hex, where protobuf's parser expects base64 (and silently decodes hex wrongly). They are
converted before parsing. Enums as integers, 64-bit integers as strings and unknown fields
(ignored) are handled by json_format itself.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb

from agent_analytics.errors import Permanent

from . import limits

PROTOBUF = "protobuf"
JSON = "json"
MEDIA_TYPES = {"application/x-protobuf": PROTOBUF, "application/protobuf": PROTOBUF, "application/json": JSON}
CONTENT_TYPES = {PROTOBUF: "application/x-protobuf", JSON: "application/json"}

REQUESTS: dict[str, type[Message]] = {
    "logs": logs_pb.ExportLogsServiceRequest, "metrics": metrics_pb.ExportMetricsServiceRequest,
    "traces": trace_pb.ExportTraceServiceRequest}
RESPONSES: dict[str, type[Message]] = {
    "logs": logs_pb.ExportLogsServiceResponse, "metrics": metrics_pb.ExportMetricsServiceResponse,
    "traces": trace_pb.ExportTraceServiceResponse}
# partial_success's count field, per signal.
REJECTED_FIELD = {"logs": "rejected_log_records", "metrics": "rejected_data_points", "traces": "rejected_spans"}

_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


class UnreadableBody(Permanent, ValueError):
    """The body can never be decoded: answer 400, the sender must not retry."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 400)


def media_format(mimetype: str) -> str | None:
    return MEDIA_TYPES.get((mimetype or "").strip().lower())


def _hex_ids_to_base64(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str) and value:
                try:
                    value = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise UnreadableBody(f"{key} is not hex: {value[:40]!r}") from None
            else:
                value = _hex_ids_to_base64(value)
            out[key] = value
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(v) for v in node]
    return node


def decode(signal: str, body: bytes, fmt: str, bounds: limits.Limits | None = None) -> Message:
    """The request message; with `bounds`, a body past them is refused (TooMuchWork) before
    it becomes one."""
    message = REQUESTS[signal]()
    if fmt == PROTOBUF:
        if bounds is not None:
            limits.prescan(signal, body, bounds)
        try:
            message.ParseFromString(body)
        except (DecodeError, RuntimeWarning) as exc:
            raise UnreadableBody(f"not an OTLP {signal} protobuf: {exc}") from None
        return message
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise UnreadableBody(f"not JSON: {exc}") from None
    except RecursionError:
        raise UnreadableBody("not JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise UnreadableBody("an OTLP JSON body is an object")
    if bounds is not None:
        limits.check_json(signal, data, bounds)
    try:
        json_format.ParseDict(_hex_ids_to_base64(data), message, ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error, TypeError, ValueError) as exc:
        raise UnreadableBody(f"not an OTLP {signal} request: {exc}") from None
    except RecursionError:  # nesting json.loads accepted, but too deep to walk
        raise UnreadableBody(f"not an OTLP {signal} request: nested too deeply") from None
    return message


def encode_response(signal: str, fmt: str, rejected: int = 0, error_message: str = "") -> bytes:
    response = RESPONSES[signal]()
    if rejected or error_message:
        setattr(response.partial_success, REJECTED_FIELD[signal], rejected)
        response.partial_success.error_message = error_message
    if fmt == PROTOBUF:
        return response.SerializeToString()
    return json_format.MessageToJson(response, indent=None).encode()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_status(fmt: str, code: int, message: str) -> bytes:
    """A google.rpc.Status (code, message), the body OTLP asks for with an error status.
    Written by hand: two fields do not justify a dependency on googleapis-common-protos."""
    if fmt == JSON:
        return json.dumps({"code": code, "message": message}).encode()
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def encode(message: Message, fmt: str) -> bytes:
    """A request in the given format (OTLP JSON: hex ids); for senders and tests."""
    if fmt == PROTOBUF:
        return message.SerializeToString()
    data = json_format.MessageToDict(message)

    def hexify(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (base64.b64decode(v).hex() if k in _ID_KEYS and isinstance(v, str) else hexify(v))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [hexify(v) for v in node]
        return node

    return json.dumps(hexify(data)).encode()
