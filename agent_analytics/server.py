"""Serving: the ingest and query apps on their own ports (waitress), an optional embedded
PostgreSQL, periodic housekeeping, and a clean stop on Ctrl-C / SIGTERM."""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import psycopg
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher
from waitress.utilities import Error as HTTPError

from agent_analytics.app import create_app
from agent_analytics.auth import bearer_token_of, token_is_known
from agent_analytics.cluster import LocalCluster
from agent_analytics.config import Config

log = logging.getLogger(__name__)

EMBEDDED_DB_NAME = "agent_analytics"
RESPAWN_INTERVAL_S = 5.0  # the least time between two starts of one receiver process
HOUSEKEEPING_INTERVAL_S = 60.0
INGEST_RECV_BYTES = 256 * 1024  # a typical OTLP batch (500 events, about 240 KiB) in one or two reads
CLEANUP_INTERVAL_S = 1  # how often request deadlines and idle connections are checked
SHED_GRACE_S = 1.0  # how long a new connection has to send its request before it may be closed at the limit
TRIM_INTERVAL_S = 10.0  # how often memory freed by finished requests is handed back to the system


class QueueDepthIsNotAWarning(logging.Filter):
    """waitress warns "Task queue depth is N" whenever a request waits for a free thread: with a
    few threads per receiver process (AA_INGEST_THREADS) that is ordinary load, not a fault. Such
    records become DEBUG (shown with `-v`); everything else passes as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and str(record.msg).startswith("Task queue depth"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


QUEUE_LOGGER = "waitress.queue"  # waitress.task.ThreadedTaskDispatcher.queue_logger
if not any(isinstance(f, QueueDepthIsNotAWarning) for f in logging.getLogger(QUEUE_LOGGER).filters):
    logging.getLogger(QUEUE_LOGGER).addFilter(QueueDepthIsNotAWarning())


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


def shared_listener(host: str, port: int) -> socket.socket:
    """A listening socket other processes can bind too (SO_REUSEPORT): the kernel spreads new
    connections across the receiver processes."""
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(info[4])
    sock.listen(1024)
    return sock


class _Unauthorized(HTTPError):
    code = 401
    reason = "Unauthorized"

    def to_response(self, ident: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
        return (f"{self.code} {self.reason}", [("Content-Type", "text/plain; charset=utf-8"),
                                               ("WWW-Authenticate", "Bearer")], self.body.encode())


class _Parser(HTTPRequestParser):
    """waitress's request parser, refusing a body sent without a token this service knows as
    soon as the headers are read: waitress buffers a whole body before the application sees it
    (in memory up to 512 KiB, then in a temporary file), so without this every client could
    make each of its connections hold that much."""

    tokens: Any = None   # the service's Config (its tokens), or None to read every body
    # waitress's own attributes, as this class uses them
    completed: bool
    headers_finished: bool
    expect_continue: bool
    headers: dict[str, str]
    error: Any
    body_rcv: Any

    def received(self, data: bytes) -> int:
        had_headers = self.headers_finished
        consumed = super().received(data)
        if (self.tokens is not None and not had_headers and self.headers_finished and not self.completed
                and not token_is_known(self.tokens, bearer_token_of(self.headers.get("AUTHORIZATION", "")))):
            self.error = _Unauthorized("missing or invalid bearer token")
            self.body_rcv = None
            self.expect_continue = False
            self.completed = True
            return len(data)   # the body's first bytes too: the connection closes after the 401
        return consumed


class _Channel(HTTPChannel):
    """waitress's connection, remembering when the request it is receiving began: waitress
    itself only closes a connection silent for `channel_timeout`, which a client sending one
    byte every few seconds never is."""

    request_began: float | None = None   # time.time() of the first byte of a request not yet whole

    def received(self, data: bytes) -> bool:
        began = self.request_began if self.request is not None else time.time()
        result = super().received(data)
        # (a request made whole is handed to a thread: the connection no longer waits for it)
        self.request_began = began if self.request is not None else None
        return result

    def waiting_since(self) -> float | None:
        """Since when this connection has waited for its client (a request not yet whole, or
        idle between requests), or None while the application works on one of its requests."""
        if self.requests or self.will_close:
            return None
        return self.request_began if self.request_began is not None else self.last_activity


class _GuardedServer(TcpWSGIServer):
    """One listener of waitress, whose slow clients cannot lock the others out.

    - A request must arrive whole (headers and body) within `request_timeout` of its first byte,
      and an idle connection is closed after as long (waitress's `channel_timeout`).
    - At `connection_limit` open connections waitress stops accepting, so that a few hundred
      connections that send nothing, or a byte at a time, would leave every new client waiting
      in the backlog. Here the connections that have waited longest for their clients are
      closed instead (a tenth of the limit at a time), and accepting goes on: a legitimate
      request, sent at once, is always the newest, and a connection is given a second to send
      its request before it may be closed. Requests the application is working on are never
      closed.
    """

    channel_class = _Channel
    request_timeout: float = 20.0

    def _channels(self) -> list[_Channel]:
        return [c for c in self._map.values() if isinstance(c, _Channel)]

    def maintenance(self, now: float) -> None:
        super().maintenance(now)
        cutoff = now - self.request_timeout
        for channel in self._channels():
            if channel.request_began is not None and not channel.requests and channel.request_began < cutoff:
                channel.will_close = True

    def readable(self) -> bool:
        if self.accepting and len(self._map) >= self.adj.connection_limit:
            self._shed()
        return super().readable()

    def _shed(self) -> None:
        channels = self._channels()
        open_ = len(self._map) - sum(1 for c in channels if c.will_close or c.close_when_flushed)
        excess = open_ - self.adj.connection_limit + max(1, self.adj.connection_limit // 10)
        if excess <= 0:
            return
        # A connection just accepted has not been read yet: when the others are busy (requests
        # being answered cannot be closed), it would be among the few left to close, and a
        # legitimate request sent at once would be cut (a reset) before it was read.
        settled = time.time() - SHED_GRACE_S
        waiting = sorted((since, id(c), c) for c in channels
                         if (since := c.waiting_since()) is not None and since < settled)
        for _, _, channel in waiting[:excess]:
            channel.will_close = True
        if waiting:
            log.warning("%d connections open (limit %d): closed the %d waiting longest for their clients",
                        open_, self.adj.connection_limit, min(excess, len(waiting)))


def _channel_refusing_unknown_tokens(cfg: Config) -> type[_Channel]:
    class Parser(_Parser):
        tokens = cfg

    class Channel(_Channel):
        parser_class = Parser

    return Channel


def guarded_server(app: Any, cfg: Config, **kw: Any) -> MultiSocketServer:
    """waitress's `create_server`, with `_GuardedServer` listeners and the limits of `cfg`
    (AA_MAX_CONNECTIONS, AA_REQUEST_TIMEOUT_S); `sockets=[...]` or `host`/`port` as there."""
    adj = Adjustments(**kw, connection_limit=cfg.max_connections, channel_timeout=cfg.request_timeout_s,
                      cleanup_interval=CLEANUP_INTERVAL_S)
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    socket_map: dict = {}
    listening = []
    given = [(s, (s.family, s.type, s.proto, s.getsockname())) for s in adj.sockets] or \
        [(None, info) for info in adj.listen]
    last = None
    for sock, info in given:
        last = _GuardedServer(app, socket_map, True, sock, dispatcher=dispatcher, adj=adj,
                              bind_socket=sock is None, sockinfo=info)
        last.request_timeout = float(cfg.request_timeout_s)
        if not cfg.allow_no_auth:
            last.channel_class = _channel_refusing_unknown_tokens(cfg)
        listening.append((last.effective_host, last.effective_port))
    assert last is not None, "no address to listen on"
    return MultiSocketServer(socket_map, adj, listening, dispatcher, last.log_info)


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
        """Plain PostgreSQL has no background jobs: materialise the rollups every minute (as
        TimescaleDB's refresh policies do) and apply retention hourly, here."""
        last_retention = float("-inf")
        while not self._stopping.is_set():
            self._on_plain("refresh", "SELECT aa_refresh_rollups()")
            if self.cfg.retention_days > 0 and time.monotonic() - last_retention >= 3600:
                last_retention = time.monotonic()
                n = self._on_plain("retention", "SELECT aa_apply_retention(%s)", (self.cfg.retention_days,))
                if n:
                    log.info("retention: removed %d raw rows older than %d days", n, self.cfg.retention_days)
            self._stopping.wait(HOUSEKEEPING_INTERVAL_S)

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
        done = threading.Event()

        def handle(signum, frame):  # noqa: ARG001 - signal handler signature
            done.set()

        previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
        parent = os.getppid()
        try:
            while not done.wait(0.5):
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
