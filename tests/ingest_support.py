"""Helpers for the ingest tests: the captured fixtures, OTLP attribute reading, request posting."""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from tests.harness_support import INGEST_TOKEN

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "otlp"

PB = "application/x-protobuf"
JSON = "application/json"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def logs_fixture(name: str) -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest.FromString(fixture_bytes(name))


def metrics_fixture(name: str) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest.FromString(fixture_bytes(name))


def set_value(av, value: Any) -> None:
    """An OTLP AnyValue holding `value`: bool, int, float, bytes, list, dict or (else) a string."""
    if isinstance(value, bool):
        av.bool_value = value
    elif isinstance(value, int):
        av.int_value = value
    elif isinstance(value, float):
        av.double_value = value
    elif isinstance(value, bytes):
        av.bytes_value = value
    elif isinstance(value, list):
        av.array_value.SetInParent()
        for v in value:
            set_value(av.array_value.values.add(), v)
    elif isinstance(value, dict):
        av.kvlist_value.SetInParent()
        for k, v in value.items():
            kv = av.kvlist_value.values.add()
            kv.key = k
            set_value(kv.value, v)
    else:
        av.string_value = value


def plain(v) -> Any:
    kind = v.WhichOneof("value")
    return None if kind is None else getattr(v, kind)


def log_events(req: ExportLogsServiceRequest):
    """(attributes dict, record) of every log record."""
    for rl in req.resource_logs:
        for sl in rl.scope_logs:
            for rec in sl.log_records:
                yield {kv.key: plain(kv.value) for kv in rec.attributes}, rec


def headers(token: str | None = INGEST_TOKEN, content_type: str = PB, **extra: str) -> dict[str, str]:
    h = {"Content-Type": content_type, **extra}
    if token:
        h["Authorization"] = f"Bearer {token}"
    return h


def post(client, path: str, body: bytes, content_type: str = PB, gzipped: bool = False, **kw):
    h = headers(content_type=content_type)
    if gzipped:
        body = gzip.compress(body)
        h["Content-Encoding"] = "gzip"
    return client.post(path, data=body, headers=h, **kw)


class Server:
    """The app on a real HTTP port (waitress, as in production), in a thread."""

    def __init__(self, app) -> None:
        import threading

        from waitress.server import create_server

        from agent_analytics.cluster import free_port

        self.port = free_port()
        self.channels: dict = {}  # the server's sockets and its clients' connections
        # poll, not select: closing the sockets at exit wakes the loop instead of failing it (EBADF).
        self.server = create_server(app, host="127.0.0.1", port=self.port, map=self.channels, threads=4,
                                    asyncore_use_poll=True)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Server":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        # Let the worker threads finish answering before the sockets close under them.
        self.server.task_dispatcher.shutdown(cancel_pending=False, timeout=5)
        # Then the server's socket, its trigger and any connection a client left open (which
        # would keep the loop running until the join's timeout, 5 s a server) close in the loop's
        # own thread: pulling the trigger wakes the loop at once (poll waits up to a second
        # between looks), and the loop, left with nothing, ends.
        self.server.trigger.pull_trigger(self._close_all)
        self.thread.join(timeout=5)
        if self.channels:  # a loop that had ended ran nothing
            self._close_all()

    def _close_all(self) -> None:
        self.server.close()
        for channel in list(self.channels.values()):
            channel.close()


_TOTALS = ("requests", "points", "tokens", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
           "estimated_cost_usd", "reported_cost_usd", "estimated_unpriced_tokens", "reported_unpriced_tokens",
           "ev_user_id", "ev_agent_id", "mp_user_id", "mp_agent_id",
           "models", "user_ids", "first_time", "last_time")


def assert_session_totals_match_the_rows(conn) -> None:
    """The totals the receiver kept per session, batch by batch, equal those recounted from the
    stored rows by the database (aa_rebuild_session_totals, migration 0005), and every session
    with stored events or metric points has them."""
    query = f"SELECT id, {', '.join(_TOTALS)} FROM sessions ORDER BY id"
    kept = conn.execute(query).fetchall()
    conn.execute("SELECT aa_rebuild_session_totals()")
    recounted = conn.execute(query).fetchall()
    assert [r[0] for r in kept] == [r[0] for r in recounted]
    for k, r in zip(kept, recounted):
        for name, a, b in zip(("id", *_TOTALS), k, r):
            if isinstance(b, float):
                assert a == pytest.approx(b, rel=1e-12), (k[0], name, a, b)
            else:
                assert a == b, (k[0], name, a, b)
    (with_rows,) = conn.execute("SELECT count(DISTINCT session_id) FROM (SELECT session_id FROM llm_requests"
                                " UNION ALL SELECT session_id FROM metric_points) f").fetchone()
    assert with_rows > 0 and sum(1 for r in kept if r[1] or r[2]) == with_rows


# --- payloads shared by several test modules ---------------------------------------------------

CLAUDE_LOGS = ("claude-code-2.1.328-logs-1.pb", "claude-code-2.1.328-logs-2.pb")
# The MCP Python SDK's tools/call SERVER spans, and Claude Code's logs of the MCP connection failures run.
SDK_SERVER_TRACES = "mcp-python-sdk-2.3.0-server-tools-call-traces-1.pb"
CLAUDE_MCP_LOGS = [f"claude-code-2.1.332-mcp-connection-failures-logs-{i}.pb" for i in (1, 2, 3, 4)]
# Claude Code's permission decisions (rules, prompts, bypass mode, a blocking hook).
PERMISSION_LOGS = [*(f"claude-code-2.1.332-permissions-rules-logs-{i}.pb" for i in (1, 2, 3)),
                   *(f"claude-code-2.1.332-permissions-prompt-tool-logs-{i}.pb" for i in (1, 2, 3)),
                   *(f"claude-code-2.1.332-permissions-bypass-logs-{i}.pb" for i in (1, 2)),
                   *(f"claude-code-2.1.332-hook-block-logs-{i}.pb" for i in (1, 2))]
PERMISSION_MCP_SERVER = "fixture"


def many_api_requests(n: int) -> bytes:
    """The captured logs with each api_request event repeated n times as distinct events."""
    req = logs_fixture(CLAUDE_LOGS[0])
    for rl in req.resource_logs:
        for sl in rl.scope_logs:
            originals = [rec for rec in sl.log_records
                         if any(kv.key == "event.name" and kv.value.string_value == "api_request"
                                for kv in rec.attributes)]
            for rec in originals:
                for i in range(n):
                    copy = sl.log_records.add()
                    copy.CopyFrom(rec)
                    copy.time_unix_nano = rec.time_unix_nano + i * 1000
                    for kv in copy.attributes:
                        if kv.key == "event.sequence":
                            kv.value.int_value = 10_000 + i
    return req.SerializeToString()


def cumulative_token_usage(points: list[tuple[int, int, float]]) -> bytes:
    """claude_code.token.usage, cumulative, one series; points are (start ns, time ns, value)."""
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    kv = rm.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "claude-code"
    m = rm.scope_metrics.add().metrics.add()
    m.name = "claude_code.token.usage"
    m.sum.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    m.sum.is_monotonic = True
    for start, t, v in points:
        dp = m.sum.data_points.add()
        dp.start_time_unix_nano, dp.time_unix_nano, dp.as_double = start, t, v
        for key, val in (("session.id", "cum-1"), ("model", "claude-sonnet-4-5"), ("type", "output")):
            a = dp.attributes.add()
            a.key, a.value.string_value = key, val
    return req.SerializeToString()


def trace_spans(name: str):
    """(resource attributes, span) of every span in a traces fixture."""
    req = ExportTraceServiceRequest.FromString(fixture_bytes(name))
    for rs in req.resource_spans:
        resource = {kv.key: plain(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for sp in ss.spans:
                yield resource, sp


def add_attributes(attributes, items) -> None:
    """Append OTLP KeyValues to a repeated `attributes` field: an int as int_value, else a string."""
    for k, v in dict(items).items():
        kv = attributes.add()
        kv.key = k
        if isinstance(v, int):
            kv.value.int_value = v
        else:
            kv.value.string_value = v


def span_attrs(sp) -> dict:
    return {kv.key: plain(kv.value) for kv in sp.attributes}


def tool_call_spans(names):
    """(resource attributes, span) of every MCP tools/call span in the traces fixtures."""
    return [(r, sp) for n in names for r, sp in trace_spans(n)
            if span_attrs(sp).get("mcp.method.name") == "tools/call"]


def claude_mcp_results() -> list[dict]:
    """Claude Code's tool_result events for MCP tools (tool_name mcp_tool or mcp__server__tool)."""
    return [a for n in CLAUDE_MCP_LOGS for a, _ in log_events(logs_fixture(n))
            if a.get("event.name") == "tool_result" and str(a.get("tool_name", "")).startswith("mcp")]


def record_attr(rec, key: str):
    return next((plain(kv.value) for kv in rec.attributes if kv.key == key), None)


def as_mcp(name: str, abort_copies: list) -> bytes:
    """The payload with every tool an MCP tool of server PERMISSION_MCP_SERVER; each rejection is
    also copied once as an interrupt (source user_abort), which Claude Code sends when the user
    stops a tool."""
    req = ExportLogsServiceRequest.FromString(fixture_bytes(name))
    for rl in req.resource_logs:
        for sl in rl.scope_logs:
            for rec in list(sl.log_records):
                for kv in rec.attributes:
                    if kv.key == "tool_name" and not kv.value.string_value.startswith("mcp"):
                        kv.value.string_value = f"mcp__{PERMISSION_MCP_SERVER}__{kv.value.string_value}"
                if record_attr(rec, "event.name") == "tool_decision" and record_attr(rec, "decision") == "reject":
                    copy = sl.log_records.add()
                    copy.CopyFrom(rec)
                    copy.time_unix_nano += 1_000_000
                    for kv in copy.attributes:
                        if kv.key == "source":
                            kv.value.string_value = "user_abort"
                    abort_copies.append(copy)
    return req.SerializeToString()
