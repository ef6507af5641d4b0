"""AA_INGEST_PROCESSES: several receiver processes share the ingest port; every record is
stored once, /metrics sums every process's counts whichever process answers the scrape, a dead
receiver process is replaced, and stopping the main process stops them all."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import requests
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from agent_analytics.cluster import free_port
from tests.harness_support import INGEST_TOKEN, QUERY_TOKEN
from tests.ingest_support import headers, many_api_requests


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _listening(pid: int, port: int) -> bool:
    """Whether process `pid` holds a socket listening on `port` (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A: LISTEN
                inodes.add(fields[9])
    try:
        links = [os.readlink(f) for f in Path(f"/proc/{pid}/fd").iterdir()]
    except OSError:
        return False
    return any(link == f"socket:[{inode}]" for link in links for inode in inodes)


def _stored_total(base: str) -> float:
    text = requests.get(base + "/metrics", headers={"Authorization": f"Bearer {QUERY_TOKEN}"}, timeout=10).text
    return sum(s.value for fam in text_string_to_metric_families(text) if fam.name == "aa_ingest_rows_stored"
               for s in fam.samples if s.name == "aa_ingest_rows_stored_total")


def _start(db_url: str, metrics_dir: Path, port: int) -> tuple[subprocess.Popen, list[int]]:
    env = dict(os.environ, DATABASE_URL=db_url, AA_INGEST_TOKENS=INGEST_TOKEN, AA_QUERY_TOKENS=QUERY_TOKEN,
               AA_INGEST_PORT=str(port), AA_INGEST_PROCESSES="2", AA_RETENTION_DAYS="0",
               PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    proc = subprocess.Popen([sys.executable, "-m", "agent_analytics.cli", "serve", "--role", "ingest"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pids: list[int] = []
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        if line.startswith("receiver processes:"):
            pids = [int(p) for p in line.split(":", 1)[1].split()]
            break
        assert time.monotonic() < deadline, "the service did not start"
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep draining its output
    while not all(_listening(p, port) for p in pids):
        assert time.monotonic() < deadline and proc.poll() is None, "the receiver processes did not start"
        time.sleep(0.2)
    return proc, pids


def test_two_receiver_processes(db_url, tmp_path):
    port = free_port()
    proc, pids = _start(db_url, tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    try:
        assert len(pids) == 2 and pids[0] == proc.pid and all(_alive(p) for p in pids)
        body = many_api_requests(50)
        # Distinct bodies (the same events shifted in time), each on its own connection, all at once.
        bodies = []
        for k in range(16):
            req = ExportLogsServiceRequest.FromString(body)
            for rl in req.resource_logs:
                for sl in rl.scope_logs:
                    for rec in sl.log_records:
                        rec.time_unix_nano += k * 10**9
            bodies.append(req.SerializeToString())
        statuses: list[int] = []

        def send(chunk: list[bytes]) -> None:
            s = requests.Session()  # one connection each: the kernel spreads connections
            for b in chunk:
                statuses.append(s.post(base + "/v1/logs", data=b, headers=headers(), timeout=60).status_code)

        threads = [threading.Thread(target=send, args=([b],)) for b in bodies]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [200] * len(bodies)
        with psycopg.connect(db_url) as conn:
            (stored,) = conn.execute("SELECT count(*) FROM llm_requests").fetchone()
        assert stored > 16 * 50
        # Both processes served requests (each keeps its own values file) ...
        served = {int(f.stem.rsplit("_", 1)[1]) for f in tmp_path.glob("counter_*.db")}
        assert set(pids) <= served, (pids, served)
        # ... and any scrape, whichever process answers it, shows the sum of both.
        assert {_stored_total(base) for _ in range(6)} == {stored}

        # A receiver process that dies is replaced; what it counted stays counted.
        os.kill(pids[1], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _alive(pids[1]) or len(_workers(port)) < 1 or not all(_listening(p, port) for p in _workers(port)):
            assert time.monotonic() < deadline, "no receiver process replaced the dead one"
            time.sleep(0.2)
        assert requests.post(base + "/v1/logs", data=bodies[0], headers=headers(), timeout=30).status_code == 200
        assert _stored_total(base) == stored
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    deadline = time.monotonic() + 10
    while _workers(port):
        assert time.monotonic() < deadline, "receiver processes outlived the main process"
        time.sleep(0.2)


def _workers(port: int) -> list[int]:
    """Receiver processes still running for this port (the replacement included)."""
    found = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            cmdline = (proc_dir / "cmdline").read_bytes()
            environ = (proc_dir / "environ").read_bytes()
        except OSError:
            continue
        if b"--ingest-worker" in cmdline and f"AA_INGEST_PORT={port}\0".encode() in environ:
            found.append(int(proc_dir.name))
    return found


def test_receiver_threads_and_reads_are_its_own(db_url):
    """AA_INGEST_THREADS sets the receiver's request threads (the query listener keeps its
    own), the receiver reads bodies in large pieces, and with a single thread concurrent
    senders queue instead of failing."""
    from agent_analytics.config import Config
    from agent_analytics.server import INGEST_RECV_BYTES, Service

    cfg = Config(database_url=db_url, ingest_port=free_port(), query_port=free_port(), retention_days=0,
                 ingest_tokens=(INGEST_TOKEN,), ingest_threads=1)
    service = Service(cfg, roles=("ingest", "query"))
    service.start()
    try:
        by_port = {s.adj.port: s.adj for s in service._servers}
        assert (by_port[cfg.ingest_port].threads, by_port[cfg.ingest_port].recv_bytes) == (1, INGEST_RECV_BYTES)
        assert by_port[cfg.query_port].threads == 8
        body = many_api_requests(20)
        statuses: list[int] = []
        base = f"http://127.0.0.1:{cfg.ingest_port}"
        threads = [threading.Thread(target=lambda: statuses.append(
            requests.post(base + "/v1/logs", data=body, headers=headers(), timeout=60).status_code)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [200] * 6
        with psycopg.connect(db_url) as conn:
            assert conn.execute("SELECT count(*) FROM llm_requests").fetchone()[0] >= 20
    finally:
        service.stop()
