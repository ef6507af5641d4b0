"""Shared by the benchmarks: a throwaway cluster (or a given database), the service started as a
real process on loopback, and small statistics helpers."""
from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Iterator

import psycopg
import requests

from agent_analytics.cluster import LocalCluster, free_port, timescaledb_installed
from agent_analytics.sql.migrate import migrate

TOKEN = "bench-token"


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def backends(wanted: str) -> list[str]:
    available = ["timescaledb", "plain"] if timescaledb_installed() else ["plain"]
    return available if wanted == "both" else [b for b in available if b == wanted]


@contextlib.contextmanager
def cluster() -> Iterator[LocalCluster]:
    data_dir = tempfile.mkdtemp(prefix="aa-bench-", dir="/tmp")
    os.chmod(data_dir, 0o755)
    c = LocalCluster(data_dir, free_port())
    c.init()
    c.start("-c shared_buffers=1GB -c max_wal_size=4GB -c synchronous_commit=off")
    try:
        yield c
    finally:
        c.destroy()


def fresh_database(c: LocalCluster, name: str, backend: str) -> str:
    with psycopg.connect(c.url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    url = c.create_database(name)
    migrate(url, timescaledb="on" if backend == "timescaledb" else "off", retention_days=0, compress_after_days=0)
    return url


def _serve_command(role: str, port: int, env: dict[str, str]) -> list[str]:
    """`agent-analytics serve`, or with AA_BENCH_SERVER=gunicorn the same app under gunicorn
    (gthread workers: AA_INGEST_PROCESSES processes of AA_INGEST_THREADS threads for the receiver,
    one of 8 threads for queries, as `serve` runs them), to compare the two servers (bench/README.md)."""
    if os.environ.get("AA_BENCH_SERVER", "serve") != "gunicorn":
        return [sys.executable, "-m", "agent_analytics.cli", "serve", "--role", role]
    if role not in ("ingest", "query"):
        raise ValueError("AA_BENCH_SERVER=gunicorn serves one role, ingest or query")
    workers, threads = ((env.get("AA_INGEST_PROCESSES", "1"), env.get("AA_INGEST_THREADS", "2")) if role == "ingest"
                        else ("1", "8"))
    return [sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--workers", workers, "--threads", threads,
            "--bind", f"127.0.0.1:{port}", "--backlog", "1024", f"agent_analytics.app:create_app(role={role!r})"]


@contextlib.contextmanager
def service(database_url: str, role: str = "all", extra_env: dict | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """`agent-analytics serve` as its own process; yields its base URL."""
    port = free_port()
    env = dict(os.environ, DATABASE_URL=database_url, AA_INGEST_TOKENS=TOKEN, AA_LLM_QUERY_TOKENS=TOKEN,
               AA_INGEST_PORT=str(port), AA_QUERY_PORT=str(port), AA_RETENTION_DAYS="0", **(extra_env or {}))
    proc = subprocess.Popen(_serve_command(role, port, env), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):   # (gunicorn accepts before its workers run)
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the service did not start")
            time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    """Direct child processes of `pid` (e.g. extra receiver processes)."""
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its direct children alive now (a receiver's processes, or a
    PostgreSQL postmaster and its backends)."""
    return sum(cpu_seconds(p) for p in [pid, *children(pid)])


def postmaster_pid(c: LocalCluster) -> int:
    with open(os.path.join(c.pgdata, "postmaster.pid")) as f:
        return int(f.readline())


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]
