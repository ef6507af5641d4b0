"""Test harness: one throwaway PostgreSQL cluster per run (as an unprivileged user when we are
root), one migrated database per backend, every table emptied before each test.

Tests that take the `backend` fixture run once per backend: plain PostgreSQL always, TimescaleDB
where the extension is installed (skipped with a visible reason elsewhere). The run's header
and summary say which backends ran.
"""
from __future__ import annotations

import os
import tempfile
from typing import Iterator

import psycopg
import pytest
from hypothesis import settings

# Property-based tests explore new examples on every local run; in CI (CI=true) they replay a
# fixed sequence, so a landing never depends on the luck of the draw. Failures found locally
# become fixed bugs with their own tests.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

from agent_analytics.cluster import LocalCluster, free_port, timescaledb_installed
from agent_analytics.config import Config
from agent_analytics.sql.migrate import migrate, refresh_aggregates

TIMESCALEDB = timescaledb_installed()
NO_TSDB = "TimescaleDB extension not installed on this machine: TimescaleDB path not tested"
BACKENDS = [
    "plain",
    pytest.param("timescaledb", marks=pytest.mark.skipif(not TIMESCALEDB, reason=NO_TSDB)),
]
INGEST_TOKEN = "test-ingest-token"
QUERY_TOKEN = "test-query-token"
LLM_TOKEN = "test-llm-token"

_backends_ran: set[str] = set()
_databases: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _no_unforeseen_normalisation_errors(request, caplog) -> Iterator[None]:
    """A record our own code fails on is rejected alone (never a failed batch), which could let
    a test pass over a bug: any such failure logged in a test fails it, unless it is expected."""
    yield
    if request.node.get_closest_marker("internal_errors_expected"):
        return
    failed = [r.getMessage() for r in caplog.get_records("setup") + caplog.get_records("call")
              if r.name == "agent_analytics.ingest.normalise" and r.levelname == "ERROR"]
    assert not failed, f"normalisation failed in our own code: {failed} (traceback in the captured log)"


def pytest_report_header(config):
    if TIMESCALEDB:
        return "agent-analytics: backends under test: plain PostgreSQL and TimescaleDB"
    return f"agent-analytics: backends under test: plain PostgreSQL only ({NO_TSDB})"


def pytest_terminal_summary(terminalreporter):
    ran = ", ".join(sorted(_backends_ran)) or "none"
    terminalreporter.write_line(f"agent-analytics: database backends exercised: {ran}")
    if not TIMESCALEDB:
        terminalreporter.write_line(f"agent-analytics: {NO_TSDB}")
    from tests import grafana_js_support

    if grafana_js_support.RUNS:
        terminalreporter.write_line(f"agent-analytics: {grafana_js_support.summary()}")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[LocalCluster]:
    # Not under pytest's own tmp dir: that is private to root, and PostgreSQL runs as another user.
    data_dir = tempfile.mkdtemp(prefix="aa-test-cluster-", dir="/tmp")
    os.chmod(data_dir, 0o755)
    cluster = LocalCluster(data_dir, free_port(), preload_timescaledb=TIMESCALEDB)
    cluster.init()
    # Durability is irrelevant for a throwaway cluster; speed is not.
    cluster.start("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    yield cluster
    cluster.destroy()


def _migrated_database(cluster: LocalCluster, backend: str) -> str:
    if backend not in _databases:
        url = cluster.create_database(f"aa_test_{backend}")
        # No retention or compression jobs: they would race the tests' own data.
        migrate(url, timescaledb="on" if backend == "timescaledb" else "off",
                retention_days=0, compress_after_days=0)
        if backend == "timescaledb":
            with psycopg.connect(url, autocommit=True) as c:
                # Background refreshes would race the tests' explicit ones; tests refresh themselves.
                c.execute("SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs"
                          " WHERE proc_name = 'policy_refresh_continuous_aggregate'")
        _databases[backend] = url
    return _databases[backend]


def reset_database(url: str) -> None:
    """Empty every table (facts and directory) and the aggregates' materialisations."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename NOT IN ('schema_meta', 'schema_migrations', 'aa_rollups')")]
        conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")
        if "aa_rollups" in {r[0] for r in conn.execute("SELECT tablename FROM pg_tables")}:
            conn.execute("UPDATE aa_rollups SET watermark = '-infinity'")  # plain: materialised nothing yet
        refresh_aggregates(conn)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    _backends_ran.add(request.param)
    return request.param


@pytest.fixture
def db_url(pg_cluster, backend) -> str:
    url = _migrated_database(pg_cluster, backend)
    reset_database(url)
    return url


@pytest.fixture
def conn(db_url) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


@pytest.fixture
def config(db_url) -> Config:
    return Config(database_url=db_url, ingest_tokens=(INGEST_TOKEN,), query_tokens=(QUERY_TOKEN,),
                  llm_query_tokens=(LLM_TOKEN,), db_timeout_s=5, db_pool_size=4,
                  retention_days=0, compress_after_days=0)


@pytest.fixture
def app(config):
    from agent_analytics.app import create_app

    application = create_app(config, role="all")
    application.testing = True
    yield application
    application.extensions["aa_db"].close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def fresh_database(pg_cluster, request) -> str:
    """An empty, unmigrated database of its own (for migration tests)."""
    name = "aa_fresh_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:40]
    with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}"')
    return pg_cluster.create_database(name)
