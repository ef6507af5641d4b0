"""Helpers for the hardening tests: distinct Claude Code batches whose totals the test knows, a
sender that behaves as OTLP asks (503 + Retry-After: wait, then retry), the receiver as its own
process, and the sanity rules every stored row must satisfy."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

import psycopg
import requests
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from agent_analytics.cluster import free_port
from tests.harness_support import INGEST_TOKEN

MAX_RETRY_SLEEP_S = 0.5


def _kv(key: str, value) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def api_requests(tag: str, n: int, t0_ns: int, first_tokens: int = 1) -> tuple[bytes, list[tuple[str, int]]]:
    """A logs request of `n` distinct api_request events; returns it and the (request id, input
    tokens) each should store."""
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend([_kv("service.name", "claude-code"), _kv("service.version", "2.1.328")])
    sl = rl.scope_logs.add()
    sl.scope.name = "com.anthropic.claude_code.events"
    expected = []
    for i in range(n):
        rid, tokens = f"{tag}-{i}", first_tokens + i
        rec = sl.log_records.add()
        rec.time_unix_nano = t0_ns + i * 1_000_000
        rec.body.string_value = "claude_code.api_request"
        rec.attributes.extend([_kv("event.name", "api_request"), _kv("session.id", f"s-{tag}"),
                               _kv("user.email", "hardening@example.com"), _kv("model", "claude-sonnet-4-5"),
                               _kv("input_tokens", tokens), _kv("output_tokens", 1), _kv("cache_read_tokens", 0),
                               _kv("cache_creation_tokens", 0), _kv("request_id", rid)])
        expected.append((rid, tokens))
    return req.SerializeToString(), expected


@dataclass
class SendStats:
    sent: int = 0                      # HTTP requests made
    acknowledged: int = 0              # batches answered 200
    refused_503: int = 0
    retry_after: set = field(default_factory=set)
    connection_errors: int = 0
    unexpected: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **counts) -> None:
        with self.lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)


def send_until_stored(url: str, body: bytes, stats: SendStats, deadline: float, path: str = "/v1/logs",
                      token: str = INGEST_TOKEN) -> bool:
    """Post until 200, honouring Retry-After (capped); False when the deadline passed first."""
    headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {token}"}
    while time.monotonic() < deadline:
        try:
            stats.add(sent=1)
            r = requests.post(url + path, data=body, headers=headers, timeout=60)
        except requests.RequestException:
            stats.add(connection_errors=1)
            time.sleep(0.1)
            continue
        if r.status_code == 200:
            stats.add(acknowledged=1)
            return True
        if r.status_code == 503:
            wait = float(r.headers["Retry-After"])
            with stats.lock:
                stats.refused_503 += 1
                stats.retry_after.add(wait)
            time.sleep(min(wait, MAX_RETRY_SLEEP_S))
            continue
        with stats.lock:
            stats.unexpected.append((r.status_code, r.text[:200]))
        return False
    return False


@contextlib.contextmanager
def receiver_process(database_url: str, role: str = "ingest", **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """`agent-analytics serve --role ingest` as its own process on a free loopback port."""
    port = free_port()
    environ = dict(os.environ, DATABASE_URL=database_url, AA_INGEST_TOKENS=INGEST_TOKEN, AA_HOST="127.0.0.1",
                   AA_INGEST_PORT=str(port), AA_QUERY_PORT=str(free_port()), AA_RETENTION_DAYS="0",
                   AA_DB_POOL_SIZE="4", **env)
    proc = subprocess.Popen([sys.executable, "-m", "agent_analytics.cli", "serve", "--role", role], env=environ,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"receiver did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stderr.close()


# Every stored fact must satisfy these, whatever a sender sent.
SANITY = {
    "llm_requests": "SELECT count(*) FROM llm_requests WHERE NOT (input_tokens >= 0 AND output_tokens >= 0"
                    " AND cache_read_tokens >= 0 AND cache_write_tokens >= 0 AND input_tokens <= 100000000"
                    " AND output_tokens <= 100000000 AND coalesce(reported_cost_usd, 0) >= 0"
                    " AND coalesce(estimated_cost_usd, 0) >= 0 AND coalesce(latency_ms, 0) >= 0"
                    " AND time >= '2000-01-01' AND time <= now() + interval '1 day' AND model <> '')",
    "llm_errors": "SELECT count(*) FROM llm_errors WHERE NOT (time >= '2000-01-01'"
                  " AND time <= now() + interval '1 day' AND coalesce(duration_ms, 0) >= 0)",
    "tool_calls": "SELECT count(*) FROM tool_calls WHERE NOT (outcome IN ('ok', 'error', 'blocked')"
                  " AND time >= '2000-01-01' AND time <= now() + interval '1 day' AND coalesce(duration_ms, 0) >= 0"
                  " AND tool_name <> '' AND (outcome = 'blocked') = (policy_id IS NOT NULL))",
    "metric_points": "SELECT count(*) FROM metric_points WHERE NOT (value >= 0 AND value <> 'NaN'"
                     " AND time >= '2000-01-01' AND time <= now() + interval '1 day'"
                     " AND metric IN ('tokens', 'cost'))",
    "agent_enforcement": "SELECT count(*) FROM agent_enforcement WHERE NOT (time >= '2000-01-01'"
                         " AND time <= now() + interval '1 day' AND outcome <> ''"
                         " AND (kind = 'mcp_connection' OR tool_name <> '') AND blocked = (policy_id IS NOT NULL))",
}


def insane_rows(conn: psycopg.Connection) -> dict[str, int]:
    """Rows that break the sanity rules, per table (empty when all is well)."""
    out = {}
    for table, query in SANITY.items():
        n = conn.execute(query).fetchone()[0]
        if n:
            out[table] = n
    return out
