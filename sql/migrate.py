"""Apply the schema: numbered immutable migrations, then idempotent objects for the backend.

- `migrations/NNNN_name.sql`: applied once each, in order, inside a transaction, recorded with
  a checksum in `schema_migrations`; an applied file that changed is refused.
- `timescaledb/*.sql` or `plain/*.sql`: idempotent objects re-applied on every run.
- The aggregates, declared in `rollups/`, created or rebuilt for the backend (`aggregates.py`)
  and materialised.

The whole run holds an advisory lock, so two processes starting at once migrate once.
TimescaleDB refuses to create a continuous aggregate WITH DATA, or to refresh one, inside a
transaction: they are created WITH NO DATA and refreshed afterwards in autocommit mode.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import psycopg

from agent_analytics.sql import aggregates, rollups
# The aggregates' public names, where their callers have always imported them.
from agent_analytics.sql.aggregates import (AGGREGATES, MATERIALISED, aggregate_definitions, backend_of,
                                            checksum, refresh_aggregates, relation_exists)

log = logging.getLogger(__name__)

# Arbitrary but fixed: every agent-analytics process contends for the same lock.
MIGRATION_LOCK_ID = 0x4A61A17C5
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The schema cannot be brought up to date safely."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return checksum(self.sql)


@dataclass
class MigrateReport:
    backend: str
    applied: list[str] = field(default_factory=list)
    created_aggregates: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.created_aggregates)

    def summary(self) -> str:
        lines = [f"backend: {self.backend}"]
        lines.append("migrations applied: " + (", ".join(self.applied) if self.applied else "none (up to date)"))
        if self.created_aggregates:
            lines.append("aggregates created: " + ", ".join(self.created_aggregates))
        lines.extend(self.notes)
        return "\n".join(lines)


def _files(folder: str) -> list[tuple[str, str]]:
    root = resources.files("agent_analytics.sql").joinpath(folder)
    return sorted((p.name, p.read_text()) for p in root.iterdir() if p.name.endswith(".sql"))


def load_migrations() -> list[Migration]:
    """The numbered migrations in order; duplicate or malformed numbers are refused."""
    found: dict[int, Migration] = {}
    for name, text in _files("migrations"):
        m = _MIGRATION_NAME.match(name)
        if not m:
            raise MigrationError(f"migration file name {name!r} is not NNNN_name.sql")
        version = int(m.group(1))
        if version in found:
            raise MigrationError(f"two migrations share number {version:04d}: {found[version].name}, {name}")
        found[version] = Migration(version, name, text)
    return [found[v] for v in sorted(found)]


def _timescaledb_loadable(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),"
        " current_setting('shared_preload_libraries')"
    ).fetchone()
    return row is not None and bool(row[0]) and "timescaledb" in (row[1] or "")


def _choose_backend(conn: psycopg.Connection, wanted: str, report: MigrateReport) -> str:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_meta (key text PRIMARY KEY, value text NOT NULL)")
    row = conn.execute("SELECT value FROM schema_meta WHERE key = 'backend'").fetchone()
    recorded = row[0] if row else None
    loadable = _timescaledb_loadable(conn)
    if recorded == "timescaledb":
        if not loadable:
            raise MigrationError("this database was created on TimescaleDB, but the server cannot load it "
                                 "(is timescaledb in shared_preload_libraries?)")
        return recorded
    if recorded == "plain":
        if wanted == "on":
            raise MigrationError("AA_TIMESCALEDB=on, but this database was created on plain PostgreSQL; "
                                 "converting it needs a dump and restore into a fresh TimescaleDB database")
        if loadable and wanted == "auto":
            report.notes.append("note: TimescaleDB is available, but this database was created on plain "
                                "PostgreSQL and stays so")
        return recorded
    if wanted == "on" and not loadable:
        raise MigrationError("AA_TIMESCALEDB=on, but the server has no loadable TimescaleDB extension")
    backend = "timescaledb" if loadable and wanted != "off" else "plain"
    if backend == "timescaledb":
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    conn.execute("INSERT INTO schema_meta (key, value) VALUES ('backend', %s)", (backend,))
    return backend


def _unbound_decompression(conn: psycopg.Connection) -> None:
    """A migration that fills a new column of stored rows (0013's UPDATE) decompresses every
    compressed chunk it touches, far past TimescaleDB's default bound on the rows one transaction
    may decompress (100,000; a refusal after which nothing is applied): no bound for migrate's
    own session. (Versions without the setting have no bound.)"""
    conn.execute("SELECT set_config(name, '0', false) FROM pg_settings"
                 " WHERE name = 'timescaledb.max_tuples_decompressed_per_dml_transaction'")


def _apply_migrations(conn: psycopg.Connection, report: MigrateReport, upto: int | None = None) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    applied = {v: (n, c) for v, n, c in conn.execute("SELECT version, name, checksum FROM schema_migrations")}
    for mig in load_migrations():
        if upto is not None and mig.version > upto:
            break
        if mig.version in applied:
            name, recorded = applied[mig.version]
            if recorded != mig.checksum:
                raise MigrationError(f"migration {mig.name} was changed after it was applied (as {name}); "
                                     "migrations are immutable: add a new one instead")
            continue
        with conn.transaction():
            conn.execute(mig.sql)
            conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                         (mig.version, mig.name, mig.checksum))
        report.applied.append(mig.name)


def _scalar(conn: psycopg.Connection, query: str, params: tuple = ()) -> Any:
    """The one value of a query that always returns one row."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise MigrationError(f"no row from {query!r}")
    return row[0]


def _apply_idempotent(conn: psycopg.Connection, backend: str, retention_days: int, compress_after_days: int,
                      report: MigrateReport) -> bool:
    """Returns whether existing aggregates need materialising (plain rollups new to them)."""
    for _, text in _files(backend):
        with conn.transaction():
            conn.execute(text)
    materialise = aggregates.create(conn, backend, aggregate_definitions(), report)
    if backend == "timescaledb":
        _apply_policies(conn, retention_days, compress_after_days)
    return materialise


def _apply_policies(conn: psycopg.Connection, retention_days: int, compress_after_days: int) -> None:
    """(Re)set the TimescaleDB jobs. A running service's jobs run meanwhile: removing a policy
    whose job the scheduler is updating at that moment fails with "tuple concurrently deleted"
    (or "updated"), an internal error that a new attempt does not meet."""
    for attempt in range(10):
        try:
            conn.execute("SELECT aa_apply_policies(%s, %s)", (retention_days, compress_after_days))
            return
        except psycopg.errors.InternalError_ as e:
            if "concurrently" not in str(e) or attempt == 9:
                raise
            time.sleep(0.2)


# Rows stored before this migration were priced on another basis (a metric point as one request,
# 1-hour cache writes as 5-minute ones): they are priced again once it is applied. schema_meta
# records that the repricing finished, so a run stopped between the migration and its end
# (killed, or an aggregate that failed to rebuild) leaves it to the next run.
REPRICE_WITH = 8
_REPRICED = "repriced:0008"


def _reprice_pending(conn: psycopg.Connection) -> bool:
    return bool(_scalar(conn, "SELECT EXISTS (SELECT FROM schema_migrations WHERE version = %s)"
                              " AND NOT EXISTS (SELECT FROM schema_meta WHERE key = %s)", (REPRICE_WITH, _REPRICED)))


def _reprice(conn: psycopg.Connection, report: MigrateReport) -> None:
    from agent_analytics.ingest.reprice import reprice  # the receiver's pricing, imported only here

    done = reprice(conn)
    report.notes.append(done.summary())
    if done.points or done.requests:
        refresh_aggregates(conn, [n for n, a in rollups.AGGREGATES.items()
                                  if a.raw in ("llm_requests", "metric_points")])
    conn.execute("INSERT INTO schema_meta (key, value) VALUES (%s, 'done') ON CONFLICT (key) DO NOTHING",
                 (_REPRICED,))


def migrate(database_url: str, timescaledb: str = "auto", retention_days: int = 395,
            compress_after_days: int = 7, upto: int | None = None) -> MigrateReport:
    """Bring the database at `database_url` up to date; safe to run concurrently and repeatedly.

    `upto` stops after that migration number and skips the idempotent objects (upgrade tests)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET client_min_messages = warning")
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        try:
            report = MigrateReport(backend="")
            report.backend = _choose_backend(conn, timescaledb, report)
            if report.backend == "timescaledb":
                _unbound_decompression(conn)
            _apply_migrations(conn, report, upto)
            if upto is not None:
                return report
            materialise = _apply_idempotent(conn, report.backend, retention_days, compress_after_days, report)
            if report.created_aggregates or materialise:
                refresh_aggregates(conn, report.created_aggregates, by_day=True)
                aggregates.analyze(conn, report.backend, report.created_aggregates if not materialise else AGGREGATES)
            if _reprice_pending(conn):
                _reprice(conn, report)
            return report
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))


def pending(database_url: str) -> list[str]:
    """What `migrate` would still create: numbered migrations not applied, aggregates missing.
    Empty when the schema is current (the service refuses to serve otherwise)."""
    with psycopg.connect(database_url, connect_timeout=10) as conn:
        if not relation_exists(conn, "schema_migrations"):
            return ["the whole schema (never migrated)"]
        applied = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
        out = [m.name for m in load_migrations() if m.version not in applied]
        out += [f"aggregate {a}" for a in AGGREGATES if not relation_exists(conn, a)]
        recorded = aggregates.recorded_checksums(conn) if relation_exists(conn, "schema_meta") else {}
        out += [f"aggregate {a} (definition changed)" for a, text in aggregate_definitions().items()
                if relation_exists(conn, a) and aggregates.changed(conn, a, text, recorded.get(a))]
        if backend_of(conn) == "plain":
            out += [f"aggregate {a} (not materialised)" for a in AGGREGATES
                    if relation_exists(conn, a) and not relation_exists(conn, a + MATERIALISED)]
        return out
