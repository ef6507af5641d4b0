"""Load: N concurrent OTLP senders for a bounded time against `agent-analytics serve --role ingest`
on loopback, then M concurrent dashboard viewers against `--role query` over the data they sent.
Prints records/s (or queries/s), latency percentiles, errors, and the service's memory (RSS)
sampled over time. Loopback only; every loop is bounded in count and in time.

    python -m bench.load [--senders 8] [--viewers 8] [--seconds 20] [--records 100] [--backend both]
    python -m bench.load --attack [--seconds 20] [--backend both]

`--attack` instead: legitimate senders and viewers (2 + 2) against `--role ingest` and `--role
query`, first alone, then while attackers, holding no token for the slow part, keep 300
connections sending headers a byte every 2 s and 105 sending a declared body as slowly on each
port (reopened when the service closes them), and, with tokens, post 16 KB gzip bodies of 8
million empty ResourceLogs and Grafana requests of 100 time series from the epoch in
Asia/Kolkata, as the issue's attacks did, plus the largest requests the bounds allow (20 series of
2,000 daily points each). Prints both runs' latencies and errors, what the attackers got, and RSS.
"""
from __future__ import annotations

import argparse
import gzip
import itertools
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import psycopg
import requests

from agent_analytics.sql.migrate import refresh_aggregates

from .common import TOKEN, backends, cluster, fresh_database, machine, pct, rss_mib, service
from .ingest import claude_code_batch

SAMPLE_EVERY_S = 0.5


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    units: int = 0                       # records stored (ingest) or queries answered (viewers)
    rss: list[tuple[float, float]] = field(default_factory=list)
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, status: str, latency: float, units: int) -> None:
        with self.lock:
            self.latencies.append(latency)
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status == "200":
                self.units += units

    @property
    def errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s != "200")


def _drive(workers: int, seconds: float, pid: int, work) -> Run:
    """`workers` threads call work(run, session) until the deadline; RSS is sampled meanwhile."""
    run = Run()
    deadline = time.monotonic() + seconds

    ends: list[float] = []

    def loop() -> None:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {TOKEN}"
        try:
            while time.monotonic() < deadline:
                if not work(run, s):
                    return
        finally:
            ends.append(time.monotonic())

    threads = [threading.Thread(target=loop) for _ in range(workers)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        run.rss.append((time.monotonic() - t0, rss_mib(pid)))
        time.sleep(SAMPLE_EVERY_S)
    run.seconds = max(ends) - t0  # when the last worker finished, not the sampler's last tick
    return run


def _timed(session: requests.Session, method: str, url: str, **kw) -> tuple[str, float]:
    started = time.perf_counter()
    try:
        status = str(session.request(method, url, timeout=60, **kw).status_code)
    except requests.RequestException as exc:
        status = type(exc).__name__
    return status, time.perf_counter() - started


def ingest_phase(url: str, senders: int, seconds: float, records: int, max_batches: int) -> tuple[Run, int]:
    start = datetime.now(timezone.utc) - timedelta(days=6)
    # Made before the clock starts, so the senders spend their time sending; distinct records,
    # so nothing is deduplicated away.
    bodies = [claude_code_batch(n, records, start) for n in range(max_batches)]
    numbers = itertools.count()
    numbers_lock = threading.Lock()
    with service(url, role="ingest") as (base, proc):
        def send(run: Run, s: requests.Session) -> bool:
            with numbers_lock:
                n = next(numbers)
            if n >= max_batches:
                return False
            body = bodies[n]
            status, latency = _timed(s, "POST", base + "/v1/logs", data=body,
                                     headers={"Content-Type": "application/x-protobuf"})
            run.note(status, latency, records)
            return True

        run = _drive(senders, seconds, proc.pid, send)
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT count(*) FROM llm_requests").fetchone()[0]
    return run, stored


def query_phase(url: str, viewers: int, seconds: float,
                only: set[str] | None = None) -> tuple[Run, dict[str, list[float]]]:
    with psycopg.connect(url, autocommit=True) as conn:
        refresh_aggregates(conn)   # dashboards read the aggregates; TimescaleDB materialises them here
    per_metric: dict[str, list[float]] = {}
    with service(url, role="query") as (base, proc):
        h = {"Authorization": f"Bearer {TOKEN}"}
        metrics = [m["id"] for m in requests.get(base + "/api/v1/metrics", headers=h, timeout=30).json()["metrics"]]
        if only is not None:
            if only - set(metrics):
                raise SystemExit(f"not in the catalog: {', '.join(sorted(only - set(metrics)))}")
            metrics = [m for m in metrics if m in only]
        sessions = requests.get(base + "/api/v1/variables/session", headers=h, timeout=30).json()["rows"]
        session = sessions[0]["value"] if sessions else "none"
        order = itertools.cycle(metrics)
        order_lock = threading.Lock()

        def view(run: Run, s: requests.Session) -> bool:
            with order_lock:
                metric = next(order)
            params = {"from": "now-7d", "to": "now", "tz": "Europe/Paris"}
            if metric.startswith("session_"):
                params["session"] = session
            status, latency = _timed(s, "GET", f"{base}/api/v1/query/{metric}", params=params)
            run.note(status, latency, 1)
            with order_lock:
                per_metric.setdefault(metric, []).append(latency * 1000)
            return True

        run = _drive(viewers, seconds, proc.pid, view)
    return run, per_metric


SLOW_HEAD = b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
SLOW_BODY = SLOW_HEAD + b"Content-Length: 100000\r\n\r\n"
MAX_SLOW_OPENS = 20_000   # bound on connections the slow attackers open in one run


@dataclass
class Attack:
    slow_opened: int = 0
    slow_closed_by_service: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, what: str, status: str) -> None:
        with self.lock:
            key = f"{what} {status}"
            self.statuses[key] = self.statuses.get(key, 0) + 1


def _slow_clients(ports: list[int], heads: int, bodies: int, until: float, attack: Attack) -> None:
    """Hold `heads` + `bodies` slow connections per port until `until`: one byte every 2 s on
    each, a connection the service closes opened again (at most MAX_SLOW_OPENS in all)."""
    def open_one(port: int, body: bool) -> socket.socket | None:
        if attack.slow_opened >= MAX_SLOW_OPENS:
            return None
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(SLOW_BODY if body else SLOW_HEAD)
            s.setblocking(False)
        except OSError:
            return None
        attack.slow_opened += 1
        return s

    held = [(port, i >= heads, None) for port in ports for i in range(heads + bodies)]
    while time.monotonic() < until:
        for k, (port, body, sock) in enumerate(held):
            if sock is None:
                held[k] = (port, body, open_one(port, body))
                continue
            try:
                if sock.recv(4096) == b"":
                    raise ConnectionResetError
            except BlockingIOError:
                pass
            except OSError:
                attack.slow_closed_by_service += 1
                sock.close()
                held[k] = (port, body, open_one(port, body))
                continue
            try:
                sock.send(b"\0" if body else b"X")
            except OSError:
                pass
        time.sleep(2.0)
    for _, _, sock in held:
        if sock is not None:
            sock.close()


def _amplifiers(ingest: str, query: str, until: float, attack: Attack) -> list[threading.Thread]:
    bomb = gzip.compress(b"\x0a\x00" * 8_000_000)
    h = {"Authorization": f"Bearer {TOKEN}"}
    epoch = {"range": {"from": "1970-01-01T00:00:00Z", "to": "now"}, "timezone": "Asia/Kolkata",
             "targets": [{"refId": f"R{i}", "target": "llm_cost_over_time"} for i in range(100)]}
    now = datetime.now(timezone.utc)
    widest = {"range": {"from": (now - timedelta(days=1_999)).isoformat(), "to": now.isoformat()},
              "timezone": "Asia/Kolkata",
              "targets": [{"refId": f"R{i}", "target": "llm_cost_over_time"} for i in range(20)]}

    bomb_headers = {**h, "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    work = [("ingest 8M empty resources", ingest + "/v1/logs", {"data": bomb}, bomb_headers),
            ("grafana 100 series from 1970", query + "/grafana/query", {"json": epoch}, h),
            ("grafana 20 series of 2000 days", query + "/grafana/query", {"json": widest}, h)]
    return [threading.Thread(target=_post_loop, args=(what, url, kw, headers, until, attack))
            for what, url, kw, headers in work]


def _post_loop(what: str, url: str, kw: dict, headers: dict, until: float, attack: Attack) -> None:
    s = requests.Session()
    while time.monotonic() < until:
        status, _ = _timed(s, "POST", url, headers=headers, **kw)
        attack.note(what, status)


def attack_phase(url: str, seconds: float, records: int, under_attack: bool) -> tuple[Run, Run, Attack]:
    """2 senders and 2 viewers for `seconds`, with or without the attackers."""
    start = datetime.now(timezone.utc) - timedelta(days=1)
    bodies = [claude_code_batch(10_000 + n + (5_000 if under_attack else 0), records, start) for n in range(2_000)]
    numbers = itertools.count()
    lock = threading.Lock()
    attack = Attack()
    with service(url, role="ingest") as (ingest, iproc), service(url, role="query") as (query, qproc):
        def send(run: Run, s: requests.Session) -> bool:
            with lock:
                n = next(numbers)
            if n >= len(bodies):
                return False
            status, latency = _timed(s, "POST", ingest + "/v1/logs", data=bodies[n],
                                     headers={"Content-Type": "application/x-protobuf"})
            run.note(status, latency, records)
            return True

        metrics = ("mcp_tool_executions", "llm_total_cost", "llm_cost_over_time", "llm_top_models_by_cost")

        def view(run: Run, s: requests.Session) -> bool:
            with lock:
                metric = metrics[next(numbers) % len(metrics)]
            status, latency = _timed(s, "GET", f"{query}/api/v1/query/{metric}",
                                     params={"from": "now-7d", "to": "now", "tz": "Europe/Paris"})
            run.note(status, latency, 1)
            return True

        until = time.monotonic() + seconds + 5
        attackers: list[threading.Thread] = []
        if under_attack:
            ports = [int(ingest.rsplit(":", 1)[1]), int(query.rsplit(":", 1)[1])]
            attackers = [threading.Thread(target=_slow_clients, args=(ports, 300, 105, until, attack))]
            attackers += _amplifiers(ingest, query, until, attack)
            for t in attackers:
                t.start()
            time.sleep(5)   # the slow connections are all open before the legitimate traffic starts
        results: dict[str, Run] = {}
        legit = [threading.Thread(target=lambda: results.__setitem__("ingest", _drive(2, seconds, iproc.pid, send))),
                 threading.Thread(target=lambda: results.__setitem__("query", _drive(2, seconds, qproc.pid, view)))]
        for t in legit:
            t.start()
        for t in legit + attackers:
            t.join(timeout=seconds + 120)
    return results["ingest"], results["query"], attack


def _latency(run: Run) -> str:
    ms = [x * 1000 for x in run.latencies]
    return f"p50 {pct(ms, 50):.0f} ms, p95 {pct(ms, 95):.0f} ms, p99 {pct(ms, 99):.0f} ms"


def _rss(run: Run) -> str:
    if not run.rss:
        return "no samples"
    values = [r for _, r in run.rss]
    step = max(1, len(run.rss) // 8)
    timeline = ", ".join(f"{t:.0f}s {r:.0f}" for t, r in run.rss[::step])
    return f"min {min(values):.0f} / max {max(values):.0f} / last {values[-1]:.0f} MiB; over time: {timeline}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--senders", type=int, default=8)
    ap.add_argument("--viewers", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20, help="length of each phase")
    ap.add_argument("--records", type=int, default=100, help="records per OTLP batch")
    ap.add_argument("--max-batches", type=int, default=2_500, help="upper bound on batches sent (made up front)")
    ap.add_argument("--backend", choices=("both", "timescaledb", "plain"), default="both")
    ap.add_argument("--metrics", help="only these catalog metrics, comma-separated (to compare releases"
                    " on the metrics both have); default every one")
    ap.add_argument("--attack", action="store_true", help="legitimate traffic alone, then under attack")
    a = ap.parse_args()
    print(f"machine: {machine()}")
    if a.attack:
        with cluster() as c:
            for backend in backends(a.backend):
                url = fresh_database(c, f"bench_attack_{backend}", backend)
                for under in (False, True):
                    irun, qrun, attack = attack_phase(url, a.seconds, a.records, under)
                    label = f"[{backend}] {'under attack' if under else 'alone'}"
                    print(f"{label}: ingest {irun.units / irun.seconds:,.0f} records/s, latency {_latency(irun)}, "
                          f"errors {irun.errors} {dict(irun.statuses)}")
                    print(f"{label}: queries {qrun.units / qrun.seconds:,.1f}/s, latency {_latency(qrun)}, "
                          f"errors {qrun.errors} {dict(qrun.statuses)}")
                    print(f"{label}: RSS ingest {_rss(irun)}; query {_rss(qrun)}")
                    if under:
                        print(f"{label}: slow connections opened {attack.slow_opened}, closed by the service "
                              f"{attack.slow_closed_by_service}; amplification answers {attack.statuses}")
        return
    print(f"ingest: {a.senders} senders x {a.seconds:.0f} s, OTLP/protobuf batches of {a.records} "
          f"claude_code.api_request events, loopback; viewers: {a.viewers} x {a.seconds:.0f} s over every "
          "catalog metric (GET /api/v1/query/<metric>?from=now-7d&to=now)")
    with cluster() as c:
        for backend in backends(a.backend):
            url = fresh_database(c, f"bench_load_{backend}", backend)
            run, stored = ingest_phase(url, a.senders, a.seconds, a.records, a.max_batches)
            assert stored == run.units, (stored, run.units)   # every acknowledged record stored, once
            print(f"[{backend}] ingest: {run.units / run.seconds:,.0f} records/s "
                  f"({len(run.latencies) / run.seconds:,.1f} batches/s, {run.units:,} records in {run.seconds:.1f} s); "
                  f"latency {_latency(run)}; errors {run.errors} {dict(run.statuses)}")
            print(f"[{backend}] ingest RSS: {_rss(run)}")
            qrun, per_metric = query_phase(url, a.viewers, a.seconds,
                                           set(a.metrics.split(",")) if a.metrics else None)
            print(f"[{backend}] dashboards: {qrun.units / qrun.seconds:,.1f} queries/s "
                  f"({len(per_metric)} metrics, {len(qrun.latencies):,} queries in {qrun.seconds:.1f} s); "
                  f"latency {_latency(qrun)}; errors {qrun.errors} {dict(qrun.statuses)}")
            print(f"[{backend}] query RSS: {_rss(qrun)}")
            slowest = sorted(per_metric.items(), key=lambda kv: -pct(kv[1], 95))[:4]
            print(f"[{backend}] slowest metrics (p95): "
                  + ", ".join(f"{m} {pct(v, 95):.0f} ms" for m, v in slowest))


if __name__ == "__main__":
    main()
