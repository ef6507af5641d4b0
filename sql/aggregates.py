"""The aggregates on the database, from their declarations in `rollups/`: created for the
backend (a continuous aggregate with real-time aggregation on TimescaleDB; on plain PostgreSQL a
table of materialised buckets and a view adding the raw rows after its watermark,
plain/20_rollups.sql), rebuilt when their SELECT changed, materialised and analysed.

Each records the checksum of its SELECT (not of the comment above it) in `schema_meta`; one whose
SELECT changed (or, made before checksums were kept, whose columns differ) is dropped and built
again: a continuous aggregate cannot be altered.
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import TYPE_CHECKING, Iterable

import psycopg
from psycopg import sql

from agent_analytics.datasource.filters import INDEXED_COLUMNS
from agent_analytics.sql import rollups

if TYPE_CHECKING:
    from agent_analytics.sql.migrate import MigrateReport


def aggregate_definitions() -> dict[str, str]:
    """Every aggregate's SELECT, by name."""
    return {name: a.select for name, a in rollups.AGGREGATES.items()}


# Every aggregate, hourly and daily, by name.
AGGREGATES: tuple[str, ...] = tuple(rollups.AGGREGATES)


def relation_exists(conn: psycopg.Connection, name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def backend_of(conn: psycopg.Connection) -> str | None:
    if not relation_exists(conn, "schema_meta"):
        return None
    row = conn.execute("SELECT value FROM schema_meta WHERE key = 'backend'").fetchone()
    return row[0] if row else None


def recorded_checksums(conn: psycopg.Connection) -> dict[str, str]:
    """name -> checksum of the definition each aggregate was created from (schema_meta)."""
    return {k[len("aggregate:"):]: v for k, v in
            conn.execute("SELECT key, value FROM schema_meta WHERE key LIKE 'aggregate:%'")}


def _columns(conn: psycopg.Connection, relation: sql.Composable) -> list[str]:
    cur = conn.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(relation))
    return [d.name for d in cur.description or ()]


def aggregate_checksum(select: str) -> str:
    """The checksum of an aggregate's definition: its SELECT without the comment lines above it,
    which may change without rebuilding it."""
    lines = select.splitlines(keepends=True)
    while lines and lines[0].startswith("--"):
        lines.pop(0)
    return checksum("".join(lines))


def changed(conn: psycopg.Connection, name: str, select: str, recorded: str | None) -> bool:
    """Whether the existing aggregate `name` was made from another definition than `select`:
    by its recorded checksum (or that of its whole text, comment included, as releases up to
    migration 0008 recorded it), or (made before checksums were recorded) by its columns."""
    if recorded is not None:
        return recorded not in (aggregate_checksum(select), checksum(select))
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


def _plain_rollup(conn: psycopg.Connection, name: str, select: str) -> bool:
    """The table of materialised buckets, the rollup's row (a new one starts empty: watermark
    -infinity, everything read live until the first refresh) and the view the queries read.
    True when the table is new (a new aggregate, or a database from before plain rollups)."""
    created = not relation_exists(conn, name + MATERIALISED)
    declared = rollups.AGGREGATES[name]  # its raw table and width (`select` may be an older one's)
    raw, width = declared.raw, declared.width
    mat = sql.Identifier(name + MATERIALISED)
    conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} AS {} WITH NO DATA").format(mat, sql.SQL(select)))
    columns = _columns(conn, mat)
    conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (bucket)").format(
        sql.Identifier(name + MATERIALISED + "_bucket"), mat))
    # As TimescaleDB indexes a continuous aggregate's grouping columns, here those of the
    # filters declared `indexed` (datasource/filters.py).
    for column in set(columns) & INDEXED_COLUMNS:
        conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({}, bucket)").format(
            sql.Identifier(f"{name}{MATERIALISED}_{column}"), mat, sql.Identifier(column)))
    conn.execute("INSERT INTO aa_rollups (name, raw, width, fill) VALUES (%s, %s, %s::interval, %s)"
                 " ON CONFLICT (name) DO UPDATE SET raw = excluded.raw, width = excluded.width, fill = excluded.fill",
                 (name, raw, width, rollups.narrowed(select, raw, "time >= $1 AND time < $2")))
    live = rollups.plain_live(name, select, raw, declared.seconds, columns)
    conn.execute(sql.SQL("CREATE OR REPLACE VIEW {} AS SELECT * FROM {} WHERE bucket < aa_watermark({})"
                         " UNION ALL {}").format(sql.Identifier(name), mat, sql.Literal(name), sql.SQL(live)))
    return created


def _declared_indexes(conn: psycopg.Connection, name: str, backend: str) -> None:
    """The indexes its rollup declares (rollups.Rollup.indexes): on the continuous aggregate
    (TimescaleDB puts them on its materialisation) or on the plain rollup's table of buckets."""
    table = name if backend == "timescaledb" else name + MATERIALISED
    for suffix, columns in rollups.AGGREGATES[name].rollup.indexes:
        conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
            sql.Identifier(f"{table}_{suffix}"), sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, columns))))


def create(conn: psycopg.Connection, backend: str, definitions: dict[str, str], report: MigrateReport) -> bool:
    """Create every aggregate of `definitions` (name -> SELECT) missing and rebuild those whose
    definition changed, recording each one's checksum. Returns whether existing aggregates need
    materialising (plain rollups new to them)."""
    recorded = recorded_checksums(conn)
    materialise = False
    if backend == "plain":
        # What records the invalidations of a raw table's rollups (plain/20_rollups.sql), on the
        # raw table of each rollup.
        for raw in sorted({rollups.AGGREGATES[name].raw for name in definitions}):
            conn.execute("SELECT aa_watch_raw(%s)", (raw,))
    for name, select in definitions.items():
        ident = sql.Identifier(name)
        body = sql.SQL(select)  # our own files, never user input
        existed = relation_exists(conn, name)
        if existed and changed(conn, name, select, recorded.get(name)):
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
        _declared_indexes(conn, name, backend)
        if not existed:
            report.created_aggregates.append(name)
        conn.execute("INSERT INTO schema_meta (key, value) VALUES (%s, %s)"
                     " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                     ("aggregate:" + name, aggregate_checksum(select)))
    return materialise


# TimescaleDB's refresh options: the whole window in one batch (see refresh_aggregates).
_ONE_BATCH = '{"buckets_per_batch": 0}'


def _takes_options(conn: psycopg.Connection) -> bool:
    """Whether this TimescaleDB's refresh takes options (those that split a refresh into batches)."""
    row = conn.execute("SELECT EXISTS (SELECT FROM pg_proc WHERE proname = 'refresh_continuous_aggregate'"
                       " AND pg_get_function_arguments(oid) LIKE '%options%')").fetchone()
    return bool(row and row[0])


def _day_of_buckets(name: str) -> str | None:
    """Batches of a UTC day's buckets, never fewer than TimescaleDB's 10 (its own for an
    aggregate not declared here)."""
    declared = rollups.AGGREGATES.get(name)
    return json.dumps({"buckets_per_batch": max(10, 86400 // declared.seconds)}) if declared else None


def refresh_aggregates(conn: psycopg.Connection, names: Iterable[str] = AGGREGATES, *,
                       one_batch: bool = False, by_day: bool = False) -> None:
    """Materialise the aggregates now: on TimescaleDB the named continuous aggregates, wholly; on
    plain PostgreSQL every rollup, up to the current bucket (as the service does every minute).

    TimescaleDB refreshes a window in batches of 10 buckets, each its own transaction at about a
    millisecond however few rows it holds: a day of a per-minute aggregate is 144 of them.
    `one_batch` refreshes each window in one transaction instead (the same rows materialised),
    for small data over long windows (the tests'); the batches bound a big refresh's locks and
    memory. `by_day`: batches of a UTC day's buckets (1,440 for a per-minute aggregate), which
    `migrate` fills the aggregates it creates with: a year of history is then 365 batches, not
    52,560.

    Needs an autocommit connection: TimescaleDB refuses to refresh inside a transaction.
    """
    backend = backend_of(conn)
    if backend == "plain" and relation_exists(conn, "aa_rollups"):  # (made by plain/20_rollups.sql)
        conn.execute("SELECT aa_refresh_rollups()")
    if backend != "timescaledb":
        return
    takes = (one_batch or by_day) and _takes_options(conn)
    for name in names:
        options = (_ONE_BATCH if one_batch else _day_of_buckets(name)) if takes else None
        for attempt in range(50):
            try:
                if options:
                    conn.execute("CALL refresh_continuous_aggregate(%s::regclass, NULL, NULL, options => %s::jsonb)",
                                 (name, options))
                else:
                    conn.execute("CALL refresh_continuous_aggregate(%s::regclass, NULL, NULL)", (name,))
                break
            except psycopg.errors.LockNotAvailable:
                # The refresh policy's job is refreshing the same aggregate: wait for it.
                if attempt == 49:
                    raise
                time.sleep(0.2)


def analyze(conn: psycopg.Connection, backend: str, names: Iterable[str]) -> None:
    """Statistics for aggregates just filled: until autovacuum gets to them the planner takes
    them for empty, and picks an index over every row where one over a user's rows is at hand."""
    if backend == "timescaledb":
        tables = [sql.Identifier(schema, table) for schema, table in conn.execute(
            "SELECT materialization_hypertable_schema, materialization_hypertable_name"
            " FROM timescaledb_information.continuous_aggregates WHERE view_name = ANY(%s)", (list(names),))]
    else:
        tables = [sql.Identifier(name + MATERIALISED) for name in names]
    for table in tables:
        conn.execute(sql.SQL("ANALYZE {}").format(table))
