"""Apply the schema: numbered immutable migrations, then idempotent objects for the backend.

- `migrations/NNNN_name.sql`: applied once each, in order, inside a transaction, recorded with
  a checksum in `schema_migrations`; an applied file that changed is refused.
- The aggregates, declared in `rollups.py`: each renders one SELECT, the single definition for
  both backends: a continuous aggregate with real-time aggregation on TimescaleDB; on plain
  PostgreSQL the same made by hand (plain/20_rollups.sql): a table of materialised buckets and a
  view adding the raw rows after its watermark. Each records the checksum of its SELECT (not of
  the comment above it), and one whose SELECT changed (or, made before checksums were kept, whose
  columns differ) is rebuilt.
- `timescaledb/*.sql` or `plain/*.sql`: idempotent objects re-applied on every run.

The whole run holds an advisory lock, so two processes starting at once migrate once.
TimescaleDB refuses to create a continuous aggregate WITH DATA, or to refresh one, inside a
transaction: they are created WITH NO DATA and refreshed afterwards in autocommit mode.
"""
from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Iterable

import psycopg
from psycopg import sql

from agent_analytics.sql import rollups

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
        return _checksum(self.sql)


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


def aggregate_definitions() -> dict[str, str]:
    """Every aggregate's SELECT, by name."""
    return {name: a.select for name, a in rollups.AGGREGATES.items()}


# Every aggregate, hourly and daily, by name.
AGGREGATES: tuple[str, ...] = tuple(rollups.AGGREGATES)


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
            name, checksum = applied[mig.version]
            if checksum != mig.checksum:
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


def _relation_exists(conn: psycopg.Connection, name: str) -> bool:
    return bool(_scalar(conn, "SELECT to_regclass(%s) IS NOT NULL", (name,)))


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _recorded_aggregates(conn: psycopg.Connection) -> dict[str, str]:
    """name -> checksum of the definition each aggregate was created from (schema_meta)."""
    return {k[len("aggregate:"):]: v for k, v in
            conn.execute("SELECT key, value FROM schema_meta WHERE key LIKE 'aggregate:%'")}


def _columns(conn: psycopg.Connection, relation: sql.Composable) -> list[str]:
    cur = conn.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(relation))
    return [d.name for d in cur.description or ()]


def _aggregate_checksum(select: str) -> str:
    """The checksum of an aggregate's definition: its SELECT without the comment lines above it,
    which may change without rebuilding it."""
    lines = select.splitlines(keepends=True)
    while lines and lines[0].startswith("--"):
        lines.pop(0)
    return _checksum("".join(lines))


def _changed(conn: psycopg.Connection, name: str, select: str, recorded: str | None) -> bool:
    """Whether the existing aggregate `name` was made from another definition than `select`:
    by its recorded checksum (or that of its whole text, comment included, as releases up to
    migration 0008 recorded it), or (made before checksums were recorded) by its columns."""
    if recorded is not None:
        return recorded not in (_aggregate_checksum(select), _checksum(select))
    return _columns(conn, sql.Identifier(name)) != _columns(conn, sql.SQL("({}) q").format(sql.SQL(select)))


def _drop_aggregate(conn: psycopg.Connection, name: str, backend: str) -> None:
    if backend == "timescaledb":
        conn.execute(sql.SQL("DROP MATERIALIZED VIEW {}").format(sql.Identifier(name)))
        return
    conn.execute(sql.SQL("DROP VIEW {}").format(sql.Identifier(name)))
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name + MATERIALISED)))
    conn.execute("DELETE FROM aa_rollups WHERE name = %s", (name,))


# Plain PostgreSQL's rollups (plain/20_rollups.sql): `name` is a view over `name_mat`.
MATERIALISED = "_mat"
_FILTERED = {"user_id", "agent_id", "mcp_server_id", "provider", "model"}


def _plain_rollup(conn: psycopg.Connection, name: str, select: str) -> bool:
    """The table of materialised buckets, the rollup's row (a new one starts empty: watermark
    -infinity, everything read live until the first refresh) and the view the queries read.
    True when the table is new (a new aggregate, or a database from before plain rollups)."""
    created = not _relation_exists(conn, name + MATERIALISED)
    declared = rollups.AGGREGATES[name]  # its raw table and width (`select` may be an older one's)
    raw, width = declared.raw, declared.width
    mat = sql.Identifier(name + MATERIALISED)
    conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} AS {} WITH NO DATA").format(mat, sql.SQL(select)))
    columns = _columns(conn, mat)
    conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (bucket)").format(
        sql.Identifier(name + MATERIALISED + "_bucket"), mat))
    # As TimescaleDB indexes a continuous aggregate's grouping columns, here those the
    # dashboards' filters test (datasource/filters.py).
    for column in set(columns) & _FILTERED:
        conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({}, bucket)").format(
            sql.Identifier(f"{name}{MATERIALISED}_{column}"), mat, sql.Identifier(column)))
    conn.execute("INSERT INTO aa_rollups (name, raw, width, fill) VALUES (%s, %s, %s::interval, %s)"
                 " ON CONFLICT (name) DO UPDATE SET raw = excluded.raw, width = excluded.width, fill = excluded.fill",
                 (name, raw, width, rollups.narrowed(select, raw, "time >= $1 AND time < $2")))
    live = rollups.plain_live(name, select, raw, declared.seconds, columns)
    conn.execute(sql.SQL("CREATE OR REPLACE VIEW {} AS SELECT * FROM {} WHERE bucket < aa_watermark({})"
                         " UNION ALL {}").format(sql.Identifier(name), mat, sql.Literal(name), sql.SQL(live)))
    return created


def _apply_idempotent(conn: psycopg.Connection, backend: str, retention_days: int, compress_after_days: int,
                      report: MigrateReport) -> bool:
    """Returns whether existing aggregates need materialising (plain rollups new to them)."""
    for _, text in _files(backend):
        with conn.transaction():
            conn.execute(text)
    recorded = _recorded_aggregates(conn)
    materialise = False
    for name, select in aggregate_definitions().items():
        ident = sql.Identifier(name)
        body = sql.SQL(select)  # our own files, never user input
        existed = _relation_exists(conn, name)
        if existed and _changed(conn, name, select, recorded.get(name)):
            # A continuous aggregate cannot be altered: one whose definition changed is rebuilt.
            _drop_aggregate(conn, name, backend)
            report.notes.append(f"aggregate {name} rebuilt: its definition changed")
            existed = False
        if backend == "timescaledb":
            if not existed:
                conn.execute(sql.SQL(
                    "CREATE MATERIALIZED VIEW {} WITH (timescaledb.continuous, timescaledb.materialized_only = false)"
                    " AS {} WITH NO DATA").format(ident, body))
        elif _plain_rollup(conn, name, select) and existed:
            report.notes.append(f"aggregate {name} materialised (a view over raw rows before)")
            materialise = True
        if not existed:
            report.created_aggregates.append(name)
        conn.execute("INSERT INTO schema_meta (key, value) VALUES (%s, %s)"
                     " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                     ("aggregate:" + name, _aggregate_checksum(select)))
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


def refresh_aggregates(conn: psycopg.Connection, names: Iterable[str] = AGGREGATES) -> None:
    """Materialise the aggregates now: on TimescaleDB the named continuous aggregates, wholly; on
    plain PostgreSQL every rollup, up to the current bucket (as the service does every minute).

    Needs an autocommit connection: TimescaleDB refuses to refresh inside a transaction.
    """
    backend = backend_of(conn)
    if backend == "plain" and _relation_exists(conn, "aa_rollups"):  # (before, the aggregates were views)
        conn.execute("SELECT aa_refresh_rollups()")
    if backend != "timescaledb":
        return
    for name in names:
        for attempt in range(50):
            try:
                conn.execute("CALL refresh_continuous_aggregate(%s::regclass, NULL, NULL)", (name,))
                break
            except psycopg.errors.LockNotAvailable:
                # The refresh policy's job is refreshing the same aggregate: wait for it.
                if attempt == 49:
                    raise
                time.sleep(0.2)


def _analyze(conn: psycopg.Connection, backend: str, names: Iterable[str]) -> None:
    """Statistics for aggregates just filled: until autovacuum gets to them the planner takes
    them for empty, and chose an index over every row where one over a user's rows was at hand."""
    if backend == "timescaledb":
        tables = [sql.Identifier(schema, table) for schema, table in conn.execute(
            "SELECT materialization_hypertable_schema, materialization_hypertable_name"
            " FROM timescaledb_information.continuous_aggregates WHERE view_name = ANY(%s)", (list(names),))]
    else:
        tables = [sql.Identifier(name + MATERIALISED) for name in names]
    for table in tables:
        conn.execute(sql.SQL("ANALYZE {}").format(table))


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


def backend_of(conn: psycopg.Connection) -> str | None:
    if not _relation_exists(conn, "schema_meta"):
        return None
    row = conn.execute("SELECT value FROM schema_meta WHERE key = 'backend'").fetchone()
    return row[0] if row else None


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
            _apply_migrations(conn, report, upto)
            if upto is not None:
                return report
            materialise = _apply_idempotent(conn, report.backend, retention_days, compress_after_days, report)
            if report.created_aggregates or materialise:
                refresh_aggregates(conn, report.created_aggregates)
                _analyze(conn, report.backend, report.created_aggregates if not materialise else AGGREGATES)
            if _reprice_pending(conn):
                _reprice(conn, report)
            return report
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))


def pending(database_url: str) -> list[str]:
    """What `migrate` would still create: numbered migrations not applied, aggregates missing.
    Empty when the schema is current (the service refuses to serve otherwise)."""
    with psycopg.connect(database_url, connect_timeout=10) as conn:
        if not _relation_exists(conn, "schema_migrations"):
            return ["the whole schema (never migrated)"]
        applied = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
        out = [m.name for m in load_migrations() if m.version not in applied]
        out += [f"aggregate {a}" for a in AGGREGATES if not _relation_exists(conn, a)]
        recorded = _recorded_aggregates(conn) if _relation_exists(conn, "schema_meta") else {}
        out += [f"aggregate {a} (definition changed)" for a, text in aggregate_definitions().items()
                if _relation_exists(conn, a) and _changed(conn, a, text, recorded.get(a))]
        if backend_of(conn) == "plain":
            out += [f"aggregate {a} (not materialised)" for a in AGGREGATES
                    if _relation_exists(conn, a) and not _relation_exists(conn, a + MATERIALISED)]
        return out
