"""The test harness's shared parts: the backends under test, the tokens the test apps accept, the
throwaway PostgreSQL cluster and its migrated databases, and emptying a database between tests.
conftest.py turns them into fixtures; test modules import constants from here."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Iterable

import psycopg
import pytest

from agent_analytics.cluster import LocalCluster, free_port, timescaledb_installed
from agent_analytics.sql import aggregates
from agent_analytics.sql.migrate import AGGREGATES, MATERIALISED, migrate

TIMESCALEDB = timescaledb_installed()
NO_TSDB = "TimescaleDB extension not installed on this machine: TimescaleDB path not tested"
BACKENDS = [
    "plain",
    pytest.param("timescaledb", marks=pytest.mark.skipif(not TIMESCALEDB, reason=NO_TSDB)),
]
INGEST_TOKEN = "test-ingest-token"
QUERY_TOKEN = "test-query-token"
LLM_TOKEN = "test-llm-token"

# A test whose fixture closure holds one of these is a database test (marked `db`): every fixture
# that reaches the test cluster starts from pg_cluster, and a test taking `backend` runs on one.
# A test that starts PostgreSQL some other way carries the mark itself.
DB_FIXTURES = frozenset({"pg_cluster", "backend"})

backends_ran: set[str] = set()
databases: dict[str, str] = {}
clusters_started = 0


# A throwaway cluster's files live in memory where the machine has room for them (tmpfs): the
# run creates, truncates and finally deletes tens of thousands of files, each a disk operation
# elsewhere (and a discard on an SSD mounted with it). A container's small /dev/shm (64 MB by
# default) is passed over for /tmp.
_IN_MEMORY, _IN_MEMORY_ROOM = "/dev/shm", 8 << 30


def cluster_parent() -> str:
    """Where a test cluster's directory goes: /dev/shm with 8 GiB free, else /tmp."""
    try:
        room = shutil.disk_usage(_IN_MEMORY).free
    except OSError:
        return "/tmp"
    return _IN_MEMORY if room >= _IN_MEMORY_ROOM and os.access(_IN_MEMORY, os.W_OK) else "/tmp"


def start_cluster() -> LocalCluster:
    # Not under pytest's own tmp dir: that is private to root, and PostgreSQL runs as another user.
    data_dir = tempfile.mkdtemp(prefix="aa-test-cluster-", dir=cluster_parent())
    os.chmod(data_dir, 0o755)
    cluster = LocalCluster(data_dir, free_port(), preload_timescaledb=TIMESCALEDB)
    cluster.init()
    # Durability is irrelevant for a throwaway cluster; speed is not.
    cluster.start("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    return cluster


def refresh_aggregates(conn: psycopg.Connection, names: Iterable[str] = AGGREGATES) -> None:
    """The service's refresh (sql/aggregates.py), each aggregate's window in one batch: the tests'
    few rows spread over days would otherwise cost TimescaleDB a transaction per 10 buckets,
    most of them empty (seconds per test, most of the suite's time)."""
    aggregates.refresh_aggregates(conn, names, one_batch=True)


def disable_refresh_jobs(conn: psycopg.Connection) -> None:
    """Background refreshes would race the tests' explicit ones; tests refresh themselves."""
    conn.execute("SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs"
                 " WHERE proc_name = 'policy_refresh_continuous_aggregate'")


def migrated_database(cluster: LocalCluster, backend: str, prefix: str = "aa_test") -> str:
    """The run's database of that backend (created and migrated on first use); another `prefix`
    names another one (a module's own, loaded once and only read)."""
    key = backend if prefix == "aa_test" else f"{prefix}_{backend}"
    if key not in databases:
        url = cluster.create_database(f"{prefix}_{backend}")
        # No retention or compression jobs: they would race the tests' own data.
        migrate(url, timescaledb="on" if backend == "timescaledb" else "off",
                retention_days=0, compress_after_days=0)
        if backend == "timescaledb":
            with psycopg.connect(url, autocommit=True) as c:
                disable_refresh_jobs(c)
        databases[key] = url
    return databases[key]


@dataclass(frozen=True)
class _Shape:
    tables: tuple[str, ...]                            # the public tables a reset empties (quoted, qualified)
    aggregates: tuple[tuple[str, str, str], ...]       # TimescaleDB: (aggregate, its source, its materialisation)
    plain_rollups: bool
    # Plain: each rollup's table of buckets -> its raw table, whose TRUNCATE empties it
    # (aa_forget_rollups, plain/20_rollups.sql).
    raw_of_rollup: dict[str, str]


_shapes: dict[tuple[str, int, int], _Shape] = {}


def _shape(conn: psycopg.Connection, url: str) -> _Shape:
    # Known once per schema: a migration adds tables or aggregates (views), which changes the key.
    key = (url, *conn.execute("SELECT (SELECT count(*) FROM pg_tables WHERE schemaname = 'public'),"
                              " (SELECT count(*) FROM pg_views WHERE schemaname = 'public')").fetchone())
    if key not in _shapes:
        tables = tuple(f'"public"."{r[0]}"' for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename NOT IN ('schema_meta', 'schema_migrations', 'aa_rollups') ORDER BY 1"))
        aggregates: tuple[tuple[str, str, str], ...] = ()
        if conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')").fetchone()[0]:
            found = {view: (f'"{hs}"."{ht}"', f'"{ms}"."{mt}"') for view, hs, ht, ms, mt in conn.execute(
                "SELECT view_name, hypertable_schema, hypertable_name, materialization_hypertable_schema,"
                " materialization_hypertable_name FROM timescaledb_information.continuous_aggregates")}
            # In AGGREGATES' order, which refreshes an aggregate's sources before it.
            aggregates = tuple((name, *found[name]) for name in AGGREGATES if name in found)
        plain = conn.execute("SELECT to_regclass('aa_rollups') IS NOT NULL").fetchone()[0]
        raw_of_rollup = {f'"public"."{name}{MATERIALISED}"': f'"public"."{raw}"'
                         for name, raw in conn.execute("SELECT name, raw FROM aa_rollups")} if plain else {}
        _shapes[key] = _Shape(tables, aggregates, plain, raw_of_rollup)
    return _shapes[key]


# TimescaleDB's least timestamptz (microseconds from 2000-01-01): an aggregate's watermark before
# its first refresh.
_TIMESCALEDB_TIME_MIN = -210866803200000000


def reset_database(url: str) -> None:
    """Empty every table (facts and directory) and the aggregates' materialisations.

    Only what holds rows is emptied: a TRUNCATE replaces the files of each table and index it
    names, and refreshing TimescaleDB's aggregates costs as much again even over empty tables,
    while most tests write to a few tables. An aggregate is refreshed when its source or its
    materialisation held rows; the others are already empty. A plain rollup's table is left to
    its raw table's TRUNCATE, which deletes its few rows (84 tables truncated: 0.10 s; their 6
    raw tables alone: 0.015 s)."""
    with psycopg.connect(url, autocommit=True) as conn:
        shape = _shape(conn, url)
        probed = list(shape.tables) + [mat for _, _, mat in shape.aggregates]
        held = {r[0] for r in conn.execute(
            " UNION ALL ".join(f"(SELECT %s::text FROM {rel} LIMIT 1)" for rel in probed), probed)}
        tables = [t for t in shape.tables if t in held and shape.raw_of_rollup.get(t) not in held]
        if tables:
            conn.execute("TRUNCATE " + ", ".join(tables) + " CASCADE")
        if shape.plain_rollups:  # plain: materialised nothing yet
            conn.execute("UPDATE aa_rollups SET watermark = '-infinity' WHERE watermark <> '-infinity'")
        stale = [name for name, source, mat in shape.aggregates if source in held or mat in held]
        if stale:
            refresh_aggregates(conn, stale)
        if shape.aggregates and not shape.plain_rollups:
            # TimescaleDB: materialised nothing yet, as plain's watermarks above. A whole refresh
            # after rows of the current hour leaves the watermark past now, and a truncation does
            # not lower it: the next test's hours would read as materialised before any refresh.
            conn.execute("UPDATE _timescaledb_catalog.continuous_aggs_watermark SET watermark = %s"
                         " WHERE watermark <> %s", (_TIMESCALEDB_TIME_MIN, _TIMESCALEDB_TIME_MIN))
