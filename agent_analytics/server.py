"""Serving: the ingest and query apps on their own ports (waitress), an optional embedded
PostgreSQL, periodic housekeeping, and a clean stop on Ctrl-C / SIGTERM."""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import psycopg

from agent_analytics.app import create_app
from agent_analytics.cluster import LocalCluster
from agent_analytics.config import Config
from agent_analytics.http_server import guarded_server, shared_listener

log = logging.getLogger(__name__)

EMBEDDED_DB_NAME = "agent_analytics"
RESPAWN_INTERVAL_S = 5.0  # the least time between two starts of one receiver process
# Plain PostgreSQL's rollups are refreshed this long after each minute ends: the per-minute ones
# then hold every ended minute but in the first seconds of a minute (queries group the rest live).
REFRESH_AFTER_MINUTE_S = 2.0
INGEST_RECV_BYTES = 256 * 1024  # a typical OTLP batch (500 events, about 240 KiB) in one or two reads
TRIM_INTERVAL_S = 10.0  # how often memory freed by finished requests is handed back to the system


def next_refresh_in(now: float) -> float:
    """Seconds from `now` (epoch seconds) to REFRESH_AFTER_MINUTE_S past the next minute's start
    (past the current one's when that is still ahead)."""
    ahead = REFRESH_AFTER_MINUTE_S - now % 60.0
    return ahead if ahead > 0 else ahead + 60.0


def _say(line: str) -> None:
    print(line, flush=True)  # a phase line shows when the phase starts, also through a pipe


def start_embedded_database(cfg: Config, say: Callable[[str], None] = _say) -> tuple[LocalCluster, str]:
    t0 = time.monotonic()
    cluster = LocalCluster(cfg.data_dir, cfg.embedded_pg_port)
    say(f"database: starting the embedded PostgreSQL in {cluster.pgdata}"
        + ("" if cluster.initialized else " (creating it first: initdb)") + " ...")
    created = cluster.init()
    say(("created" if created else "reusing") + f" embedded PostgreSQL in {cluster.pgdata}"
        + (" (TimescaleDB preloaded)" if cluster.preload_timescaledb else " (no TimescaleDB on this machine)"))
    cluster.start()
    url = cluster.create_database(EMBEDDED_DB_NAME)
    say(f"embedded PostgreSQL listening on 127.0.0.1:{cluster.port} (ready in {time.monotonic() - t0:.0f} s)")
    return cluster, url


def worker_command() -> list[str]:
    """How the main process starts one more receiver process."""
    return [sys.executable, "-m", "agent_analytics.cli", "serve", "--role", "ingest", "--ingest-worker"]


@dataclass
class Service:
    """Both listeners and the housekeeping thread; `stop()` ends them all. With
    AA_INGEST_PROCESSES > 1 the main process also starts and watches that many receiver
    processes less one (`worker`: such a process, which serves its listener and nothing else)."""
    cfg: Config
    roles: tuple[str, ...] = ("ingest", "query")
    worker: bool = False
    _servers: list = field(default_factory=list)
    _threads: list = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _children: list = field(default_factory=list)
    apps: dict = field(default_factory=dict)

    @property
    def ingest_processes(self) -> int:
        return max(1, self.cfg.ingest_processes) if "ingest" in self.roles else 1

    def start(self) -> None:
        ports = {"ingest": self.cfg.ingest_port, "query": self.cfg.query_port}
        for role in self.roles:
            app = create_app(self.cfg, role=role)
            self.apps[role] = app
            shared = role == "ingest" and self.ingest_processes > 1
            where = ({"sockets": [shared_listener(self.cfg.host, ports[role])]} if shared
                     else {"host": self.cfg.host, "port": ports[role]})
            # waitress reads a whole body before the app sees it: cap it at the receiver's own
            # limit, so an oversized or never-ending body is refused (413) before it is buffered.
            # poll, not select: no limit of 1024 descriptors, and closing the sockets at shutdown
            # wakes the loop instead of failing it (EBADF).
            # Receiver: few threads (see AA_INGEST_THREADS) and whole OTLP batches read in a few
            # calls rather than 8 KiB at a time, each of which waits for the interpreter lock.
            tuning = ({"threads": self.cfg.ingest_threads, "recv_bytes": INGEST_RECV_BYTES} if role == "ingest"
                      else {"threads": 8})
            server = guarded_server(app, self.cfg, **where, **tuning, asyncore_use_poll=True,
                                    ident="agent-analytics", clear_untrusted_proxy_headers=True,
                                    max_request_body_size=self.cfg.max_body_bytes)
            self._servers.append(server)
            t = threading.Thread(target=server.run, name=f"http-{role}", daemon=True)
            t.start()
            self._threads.append(t)
        trim = _malloc_trim()
        if trim is not None:
            t = threading.Thread(target=self._trim_memory, args=(trim,), name="trim", daemon=True)
            t.start()
            self._threads.append(t)
        if self.worker:
            return
        self._children = [self._spawn() for _ in range(self.ingest_processes - 1)]
        if self._children:
            t = threading.Thread(target=self._watch_children, name="receivers", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._housekeeping, name="housekeeping", daemon=True)
        t.start()
        self._threads.append(t)

    @property
    def child_pids(self) -> list[int]:
        return [c.pid for c in self._children]

    def _spawn(self) -> subprocess.Popen:
        # The database may be the embedded one `up` started: hand over its URL explicitly.
        return subprocess.Popen(worker_command(), env={**os.environ, "DATABASE_URL": self.cfg.database_url})

    def _watch_children(self) -> None:
        """A receiver process that dies is replaced (its metrics are folded into the dead ones);
        at most one start per slot every few seconds, so a process that cannot start does not spin."""
        started = [time.monotonic()] * len(self._children)
        while not self._stopping.wait(1.0):
            for i, child in enumerate(self._children):
                if child.poll() is None or self._stopping.is_set():
                    continue
                if time.monotonic() - started[i] < RESPAWN_INTERVAL_S:
                    continue
                log.warning("receiver process %d exited (%s); starting another", child.pid, child.returncode)
                _mark_dead(child.pid)
                self._children[i] = self._spawn()
                started[i] = time.monotonic()

    def _trim_memory(self, trim: Callable[[int], int]) -> None:
        """glibc keeps what a burst of large requests freed (a query service at 250 MB kept 205
        MB idle); malloc_trim gives the free pages of every arena back."""
        while not self._stopping.wait(TRIM_INTERVAL_S):
            trim(0)

    def _housekeeping(self) -> None:
        """Plain PostgreSQL has no background jobs: materialise the rollups every minute, just
        after it ends (as TimescaleDB's refresh policies do), and apply retention hourly, here."""
        last_retention = float("-inf")
        while not self._stopping.is_set():
            self._on_plain("refresh", "SELECT aa_refresh_rollups()")
            if self.cfg.retention_days > 0 and time.monotonic() - last_retention >= 3600:
                last_retention = time.monotonic()
                n = self._on_plain("retention", "SELECT aa_apply_retention(%s)", (self.cfg.retention_days,))
                if n:
                    log.info("retention: removed %d raw rows older than %d days", n, self.cfg.retention_days)
            self._stopping.wait(next_refresh_in(time.time()))

    def _on_plain(self, what: str, query: str, params: tuple = ()) -> Any:
        """One housekeeping statement's value, on plain PostgreSQL only; each step on its own, so
        a failing refresh does not hold retention back, nor the reverse."""
        try:
            with psycopg.connect(self.cfg.database_url, autocommit=True, connect_timeout=5) as conn:
                backend = conn.execute("SELECT value FROM schema_meta WHERE key = 'backend'").fetchone()
                if backend and backend[0] == "plain":
                    row = conn.execute(query, params).fetchone()
                    return row[0] if row else None
        except psycopg.Error as exc:
            log.warning("housekeeping (%s) skipped: %s", what, exc.__class__.__name__)
        return None

    def stop(self) -> None:
        self._stopping.set()
        for child in self._children:
            child.terminate()
        for child in self._children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
            _mark_dead(child.pid)
        for server in self._servers:
            server.close()
        for app in self.apps.values():
            app.extensions["aa_db"].close()

    def wait(self) -> None:
        """Block until SIGINT or SIGTERM, then stop."""
        # A plain flag: the handler runs on the main thread between bytecodes, possibly while
        # that thread holds a lock (an Event's inside its own wait), so it must take none.
        stopping: list[int] = []

        def handle(signum, frame):  # noqa: ARG001 - signal handler signature
            stopping.append(signum)

        previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
        parent = os.getppid()
        try:
            while not stopping:
                time.sleep(0.5)
                if self.worker and os.getppid() != parent:
                    log.warning("the main process is gone: this receiver process stops too")
                    break
        finally:
            # Stop while our handlers are still in place: a second Ctrl-C must not cut the
            # shutdown short (receiver processes would be left behind).
            try:
                self.stop()
            finally:
                for s, h in previous.items():
                    signal.signal(s, h)


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None on another C library."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    # int malloc_trim(size_t pad): without argtypes ctypes passes a 32-bit int, and the upper
    # half of the register is whatever it held.
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def _mark_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
