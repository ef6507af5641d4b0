"""The connection pool, owned by the Flask app (Flask tutorial's `init_app` pattern), and the one
table that turns database failures into what a caller should do about them."""
from __future__ import annotations

from typing import Any

import psycopg
from flask import Flask, current_app
from psycopg_pool import ConnectionPool, PoolTimeout


class Database:
    """A psycopg pool with bounded waits: a slow or absent database becomes a retryable error
    within AA_DB_TIMEOUT_S seconds instead of a hung request."""

    def __init__(self, url: str, size: int = 8, timeout_s: float = 10, name: str = "agent-analytics",
                 serial: bool = False) -> None:
        self.url = url
        self.timeout_s = timeout_s
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
        )

    def open(self) -> None:
        # wait=False: the service starts (and answers 503) even while the database is down.
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    def connection(self, **kwargs: Any):
        return self.pool.connection(**kwargs)


def is_retryable(exc: BaseException) -> bool:
    """True when the sender should retry later (database unreachable, overloaded or slow);
    False for errors that will recur on retry (a bug, bad data)."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, psycopg.errors.QueryCanceled):  # statement_timeout
        return True
    if isinstance(exc, (psycopg.errors.LockNotAvailable, psycopg.errors.SerializationFailure,
                        psycopg.errors.DeadlockDetected, psycopg.errors.AdminShutdown,
                        psycopg.errors.CannotConnectNow, psycopg.errors.TooManyConnections)):
        return True
    if isinstance(exc, psycopg.errors.ProgramLimitExceeded):
        return False  # e.g. a value too large for an index: the same request fails again
    if isinstance(exc, psycopg.OperationalError):
        return True
    return False


def init_app(app: Flask) -> Database:
    cfg = app.config["AA"]
    db = Database(cfg.database_url, size=cfg.db_pool_size, timeout_s=cfg.db_timeout_s,
                  name=f"agent-analytics-{app.name}", serial=cfg.read_aggregates)
    db.open()
    app.extensions["aa_db"] = db
    return db


def get_db() -> Database:
    return current_app.extensions["aa_db"]
