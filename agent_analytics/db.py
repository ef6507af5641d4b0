"""The connection pool, owned by the Flask app (Flask tutorial's `init_app` pattern). What a
database failure means for the caller is decided in agent_analytics/errors.py."""
from __future__ import annotations

import threading
import time
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Iterator

import psycopg
from flask import Flask, current_app
from psycopg_pool import ConnectionPool, PoolTimeout

# While the database is unreachable, one request at a time tries it, at most this often; the
# others are refused at once. Without it each request held a thread for AA_DB_TIMEOUT_S, and
# /healthz and /metrics on the same port queued behind them (40 s with the receiver's 2 threads).
PROBE_INTERVAL_S = 1.0


class DatabaseDown(PoolTimeout):
    """Refused without waiting: a recent request found no connection within the timeout while
    the pool could open none, and another is trying the database now (or did less than
    PROBE_INTERVAL_S ago)."""


class Database:
    """A psycopg pool with bounded waits: a slow or absent database becomes a retryable error
    within AA_DB_TIMEOUT_S seconds instead of a hung request."""

    def __init__(self, url: str, size: int = 8, timeout_s: float = 10, name: str = "agent-analytics",
                 serial: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._clock = clock
        self._state = threading.Lock()
        self._down = False        # a request found no connection in time, and the pool could make none
        self._probing = False     # a request is trying the database while it is down
        self._next_probe = 0.0
        self._epoch = 0           # changes whenever _down does
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, size),
            timeout=timeout_s,
            open=False,
            name=name,
            # statement_timeout bounds every query; connect_timeout bounds reconnects. JIT off:
            # dashboard queries are short, and compiling them cost seconds on aggregate scans.
            # work_mem: grouping a month of sessions (~75k) in memory instead of spilling to disk.
            # `serial`: no parallel workers. Reading aggregates, the dashboards' statements are
            # many and short, and starting workers cost more than they saved (the per-instance
            # distinct count on TimescaleDB: 57 -> 44 ms); raw reads keep the server's default.
            kwargs={"connect_timeout": max(1, int(timeout_s)),
                    "options": f"-c statement_timeout={int(timeout_s * 1000)} -c jit=off -c work_mem=32MB"
                               + (" -c max_parallel_workers_per_gather=0" if serial else ""),
                    "application_name": name},
            reconnect_timeout=0,  # keep trying forever in the background; requests fail fast meanwhile
            check=self._check,
        )

    def _check(self, conn: psycopg.Connection) -> None:
        """Run on every connection as it is handed out (one empty query): a restarted or failed-over
        database leaves every idle connection dead, and a request given one would fail for it."""
        try:
            ConnectionPool.check_connection(conn)
        except Exception:
            # The idle ones died with it: replace them all now. Otherwise each later request, and
            # this one's next tries (after the second, the pool waits 1 s, then 2 s, 4 s...), would
            # meet one dead connection after another.
            self.pool.check()
            raise

    def open(self) -> None:
        # wait=False: the service starts (and answers 503) even while the database is down.
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def connection(self, **kwargs: Any) -> Iterator[psycopg.Connection]:
        """A pooled connection; PoolTimeout after the timeout, or DatabaseDown at once while the
        database is known to be unreachable and another request is trying it (or did less than
        PROBE_INTERVAL_S ago)."""
        probing, epoch = self._admit()
        failed_before = self.pool.get_stats().get("connections_errors", 0)
        with ExitStack() as stack:
            try:
                conn = stack.enter_context(self.pool.connection(**kwargs))
            except PoolTimeout:
                # Down only when the pool could not connect: it holds no connection at all, or
                # its attempts failed meanwhile. A full pool of busy connections is a saturated
                # database, whose requests wait their turn as usual.
                stats = self.pool.get_stats()
                unreachable = stats.get("pool_available") == 0 and (
                    stats.get("pool_size") == 0 or stats.get("connections_errors", 0) > failed_before)
                self._settle(probing, epoch, reached=False if unreachable else None)
                raise
            except BaseException:
                self._settle(probing, epoch, reached=None)  # it did not get as far as the database
                raise
            if probing or self._down:
                self._settle(probing, epoch, reached=True)
            yield conn

    def _admit(self) -> tuple[bool, int]:
        """Whether this request is the one trying a database that is down (raises DatabaseDown
        for the others), and the state it saw."""
        with self._state:
            if not self._down:
                return False, self._epoch
            if self._probing or self._clock() < self._next_probe:
                raise DatabaseDown("database unavailable (failing fast: it could not be reached just now)")
            self._probing = True
            self._next_probe = self._clock() + PROBE_INTERVAL_S
            return True, self._epoch

    def _settle(self, probing: bool, epoch: int, reached: bool | None) -> None:
        """Record what a request found; a request that began before the state last changed
        says nothing about the state now."""
        with self._state:
            if probing:
                self._probing = False
            if reached is None or epoch != self._epoch or self._down == (not reached):
                return
            self._down = not reached
            self._epoch += 1
            if self._down:  # just found down: the next try waits a while
                self._next_probe = self._clock() + PROBE_INTERVAL_S


def init_app(app: Flask) -> Database:
    cfg = app.config["AA"]
    db = Database(cfg.database_url, size=cfg.db_pool_size, timeout_s=cfg.db_timeout_s,
                  name=f"agent-analytics-{app.name}", serial=cfg.read_aggregates)
    db.open()
    app.extensions["aa_db"] = db
    return db


def get_db() -> Database:
    return current_app.extensions["aa_db"]
