"""Serving: the ingest and query apps on their own ports (waitress), an optional embedded
PostgreSQL, periodic housekeeping, and a clean stop on Ctrl-C / SIGTERM."""
from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field
from typing import Callable

import psycopg
from waitress.server import create_server

from agent_analytics.app import create_app
from agent_analytics.cluster import LocalCluster
from agent_analytics.config import Config

log = logging.getLogger(__name__)

EMBEDDED_DB_NAME = "agent_analytics"


def start_embedded_database(cfg: Config, say: Callable[[str], None] = print) -> tuple[LocalCluster, str]:
    cluster = LocalCluster(cfg.data_dir, cfg.embedded_pg_port)
    created = cluster.init()
    say(("created" if created else "reusing") + f" embedded PostgreSQL in {cluster.pgdata}"
        + (" (TimescaleDB preloaded)" if cluster.preload_timescaledb else " (no TimescaleDB on this machine)"))
    cluster.start()
    url = cluster.create_database(EMBEDDED_DB_NAME)
    say(f"embedded PostgreSQL listening on 127.0.0.1:{cluster.port}")
    return cluster, url


@dataclass
class Service:
    """Both listeners and the housekeeping thread; `stop()` ends them all."""
    cfg: Config
    roles: tuple[str, ...] = ("ingest", "query")
    _servers: list = field(default_factory=list)
    _threads: list = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    apps: dict = field(default_factory=dict)

    def start(self) -> None:
        ports = {"ingest": self.cfg.ingest_port, "query": self.cfg.query_port}
        for role in self.roles:
            app = create_app(self.cfg, role=role)
            self.apps[role] = app
            # waitress reads a whole body before the app sees it: cap it at the receiver's own
            # limit, so an oversized or never-ending body is refused (413) before it is buffered.
            server = create_server(app, host=self.cfg.host, port=ports[role], map={}, threads=8,
                                   ident="agent-analytics", clear_untrusted_proxy_headers=True,
                                   max_request_body_size=self.cfg.max_body_bytes)
            self._servers.append(server)
            t = threading.Thread(target=server.run, name=f"http-{role}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._housekeeping, name="housekeeping", daemon=True)
        t.start()
        self._threads.append(t)

    def _housekeeping(self) -> None:
        """Plain PostgreSQL has no background jobs: apply retention here, hourly."""
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.cfg.database_url, autocommit=True, connect_timeout=5) as conn:
                    backend = conn.execute("SELECT value FROM schema_meta WHERE key = 'backend'").fetchone()
                    if backend and backend[0] == "plain" and self.cfg.retention_days > 0:
                        n = conn.execute("SELECT aa_apply_retention(%s)", (self.cfg.retention_days,)).fetchone()[0]
                        if n:
                            log.info("retention: removed %d raw rows older than %d days", n, self.cfg.retention_days)
            except psycopg.Error as exc:
                log.warning("housekeeping skipped: %s", exc.__class__.__name__)
            self._stopping.wait(3600)

    def stop(self) -> None:
        self._stopping.set()
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
        try:
            while not done.wait(0.5):
                pass
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            self.stop()
