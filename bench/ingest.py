"""Ingest throughput: OTLP batches of Claude Code events (protobuf, 500 records each) sent to the
running receiver over loopback, against the same rows loaded by a direct COPY into the same
table (the practical limit), in one run so the ratio survives a noisy machine. With --reps N the
pair is measured N times, receiver and COPY alternating, and medians are reported.

    python -m bench.ingest [--batches 60] [--records 500] [--senders 2] [--backend both] [--processes 1,2] [--reps 1]
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time
from datetime import datetime, timedelta, timezone

import psycopg
import requests
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from agent_analytics.ingest import normalise, pricing
from agent_analytics.ingest.rows import Context
from agent_analytics.ingest.store import COLUMNS, _row

from .common import (TOKEN, backends, children, cluster, fresh_database, machine, postmaster_pid, rss_mib, service,
                     tree_cpu_seconds)

MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1")


def _kv(key: str, value) -> KeyValue:
    v = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(
        double_value=value) if isinstance(value, float) else AnyValue(string_value=str(value))
    return KeyValue(key=key, value=v)


def claude_code_batch(batch_no: int, records: int, start: datetime) -> bytes:
    """One ExportLogsServiceRequest of `records` distinct api_request events, shaped like the capture."""
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend([_kv("service.name", "claude-code"), _kv("service.version", "2.1.328"),
                                   _kv("os.type", "linux")])
    sl = rl.scope_logs.add()
    sl.scope.name = "com.anthropic.claude_code.events"
    for i in range(records):
        n = batch_no * records + i
        u = (n // 40) % 50  # a session (40 requests) is one user's, as in the capture
        t = start + timedelta(milliseconds=n * 37)
        rec = sl.log_records.add()
        rec.time_unix_nano = int(t.timestamp() * 1e9)
        rec.body.string_value = "claude_code.api_request"
        rec.attributes.extend([
            _kv("event.name", "api_request"), _kv("event.timestamp", t.isoformat().replace("+00:00", "Z")),
            _kv("event.sequence", n), _kv("session.id", f"bench-session-{n // 40}"),
            _kv("user.email", f"user{u}@example.com"), _kv("user.id", f"anon-{u}"),
            _kv("model", MODELS[n % 3]), _kv("input_tokens", 100 + n % 900), _kv("output_tokens", 50 + n % 400),
            _kv("cache_read_tokens", str(n % 20000)), _kv("cache_creation_tokens", n % 3000),
            _kv("cost_usd", 0.001 * (n % 17)), _kv("duration_ms", 800 + n % 5000), _kv("request_id", f"req_{n}"),
            _kv("terminal.type", "xterm"), _kv("prompt.id", f"p{n // 5}"),
        ])
    return req.SerializeToString()


def run_receiver(url: str, bodies: list[bytes], senders: int, processes: int = 1, postmaster: int | None = None) -> dict:
    with service(url, role="ingest", extra_env={"AA_INGEST_PROCESSES": str(processes)}) as (base, proc):
        deadline = time.monotonic() + 30
        while len(children(proc.pid)) < processes - 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)  # the extra receiver processes import and bind
        queue = list(enumerate(bodies))
        lock = threading.Lock()
        failures: list[int] = []
        rss: list[float] = []

        def send() -> None:
            s = requests.Session()
            s.headers.update({"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-protobuf"})
            while True:
                with lock:
                    if not queue:
                        return
                    _, body = queue.pop()
                r = s.post(base + "/v1/logs", data=body, timeout=60)
                if r.status_code != 200:
                    failures.append(r.status_code)

        threads = [threading.Thread(target=send) for _ in range(senders)]
        # CPU used while sending, by the receiver's processes and by PostgreSQL (measured while
        # the pool's backends are still alive).
        cpu0 = tree_cpu_seconds(proc.pid), tree_cpu_seconds(postmaster) if postmaster else 0.0
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            rss.append(sum(rss_mib(p) for p in [proc.pid, *children(proc.pid)]))
            time.sleep(0.2)
        elapsed = time.perf_counter() - t0
        cpu = tree_cpu_seconds(proc.pid) - cpu0[0], (tree_cpu_seconds(postmaster) - cpu0[1]) if postmaster else 0.0
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT count(*) FROM llm_requests").fetchone()[0]
    return {"stored": stored, "seconds": elapsed, "failures": failures, "rss_max_mib": max(rss or [0]),
            "service_cpu": cpu[0], "postgres_cpu": cpu[1]}


def run_copy(url: str, bodies: list[bytes], postmaster: int | None = None) -> dict:
    """The same facts, normalised ahead of time, written with one COPY per batch (no dedupe)."""
    rows = []
    for body in bodies:
        batch = normalise.normalise("logs", ExportLogsServiceRequest.FromString(body), Context.now())
        pricing.price(batch)
        rows.append([_row("llm_requests", r) for r in batch.llm_requests])
    cols = ", ".join(COLUMNS["llm_requests"])
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE llm_requests")
        conn.commit()
        cpu0 = tree_cpu_seconds(postmaster) if postmaster else 0.0
        t0 = time.perf_counter()
        for batch_rows in rows:
            with conn.cursor().copy(f"COPY llm_requests ({cols}) FROM STDIN") as cp:
                for r in batch_rows:
                    cp.write_row(r)
            conn.commit()
        elapsed = time.perf_counter() - t0
        cpu = (tree_cpu_seconds(postmaster) - cpu0) if postmaster else 0.0
        stored = conn.execute("SELECT count(*) FROM llm_requests").fetchone()[0]
    return {"stored": stored, "seconds": elapsed, "postgres_cpu": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--records", type=int, default=500)
    ap.add_argument("--senders", type=int, default=2)
    ap.add_argument("--backend", choices=("both", "timescaledb", "plain"), default="both")
    ap.add_argument("--processes", default="1,2",
                    help="receiver processes (AA_INGEST_PROCESSES) to measure, comma-separated")
    ap.add_argument("--reps", type=int, default=1, help="measure each pair this many times; medians are shown")
    a = ap.parse_args()
    start = datetime.now(timezone.utc) - timedelta(hours=6)
    bodies = [claude_code_batch(b, a.records, start) for b in range(a.batches)]
    total = a.batches * a.records
    print(f"machine: {machine()}")
    print(f"workload: {a.batches} OTLP/protobuf batches x {a.records} claude_code.api_request events "
          f"({sum(map(len, bodies)) / 2**20:.1f} MiB), {a.senders} concurrent senders")
    with cluster() as c:
        for backend in backends(a.backend):
            for processes in (int(p) for p in a.processes.split(",")):
                recs, copies = [], []
                for _ in range(a.reps):
                    url = fresh_database(c, f"bench_ingest_{backend}", backend)
                    recs.append(run_receiver(url, bodies, a.senders, processes, postmaster_pid(c)))
                    copies.append(run_copy(url, bodies, postmaster_pid(c)))
                    assert recs[-1]["stored"] == total == copies[-1]["stored"], (recs[-1], copies[-1])
                _report(backend, processes, total, recs, copies)


def _report(backend: str, processes: int, total: int, recs: list[dict], copies: list[dict]) -> None:
    r_rates = [total / r["seconds"] for r in recs]
    c_rates = [total / c["seconds"] for c in copies]
    r_rate, c_rate = statistics.median(r_rates), statistics.median(c_rates)
    label = f"[{backend}, {processes} receiver process{'es' if processes > 1 else ''}]"
    spread = (lambda rates: f", {min(rates):,.0f}-{max(rates):,.0f} over {len(rates)} runs") if len(recs) > 1 \
        else (lambda rates: "")
    print(f"{label} receiver: {r_rate:,.0f} records/s stored{spread(r_rates)} (failures "
          f"{sum(len(r['failures']) for r in recs)}, service RSS max {max(r['rss_max_mib'] for r in recs):.0f} MiB)")
    print(f"{label} direct COPY: {c_rate:,.0f} records/s{spread(c_rates)}")
    ratios = [r / c for r, c in zip(r_rates, c_rates)]
    each = f" (each run: {', '.join(f'{x:.2f}' for x in ratios)})" if len(ratios) > 1 else ""
    print(f"{label} receiver / COPY = {r_rate / c_rate:.2f}{each} (target >= 0.50)")
    us = 1e6 / total
    med = lambda key, runs: statistics.median(r[key] for r in runs) * us  # noqa: E731
    print(f"{label} CPU per record: receiver processes {med('service_cpu', recs):.1f} us + PostgreSQL "
          f"{med('postgres_cpu', recs):.1f} us; direct COPY: PostgreSQL {med('postgres_cpu', copies):.1f} us")

if __name__ == "__main__":
    main()
