"""Test harness: one throwaway PostgreSQL cluster per run (as an unprivileged user when we are
root), started only when a selected test needs it; one migrated database per backend, emptied
before each test that takes it (tests/harness_support.py).

Tests that take the `backend` fixture run once per backend: plain PostgreSQL always, TimescaleDB
where the extension is installed (skipped with a visible reason elsewhere). The run's header
and summary say which backends ran. Tests that reach the cluster are marked `db`: `-m "not db"`
runs the others alone.
"""
from __future__ import annotations

import os
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

from agent_analytics.cluster import LocalCluster
from agent_analytics.config import Config
from tests import harness_support
from tests.harness_support import (BACKENDS, DB_FIXTURES, INGEST_TOKEN, LLM_TOKEN, NO_TSDB, QUERY_TOKEN,  # noqa: F401
                                   TIMESCALEDB, reset_database)

# The harness's state under the names test modules have imported from here.
_backends_ran = harness_support.backends_ran
_databases = harness_support.databases
_migrated_database = harness_support.migrated_database


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
    if not harness_support.clusters_started:
        terminalreporter.write_line("agent-analytics: test cluster: not started (no selected test needed it)")
    ran = ", ".join(sorted(_backends_ran)) or "none"
    terminalreporter.write_line(f"agent-analytics: database backends exercised: {ran}")
    if not TIMESCALEDB:
        terminalreporter.write_line(f"agent-analytics: {NO_TSDB}")
    from tests import grafana_js_support

    if grafana_js_support.RUNS:
        terminalreporter.write_line(f"agent-analytics: {grafana_js_support.summary()}")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    """Mark every test that reaches the cluster (through any fixture) `db`, before `-m` selects:
    `-m "not db"` runs the rest without starting PostgreSQL."""
    for item in items:
        if DB_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[LocalCluster]:
    cluster = harness_support.start_cluster()
    harness_support.clusters_started += 1
    yield cluster
    cluster.destroy()


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


@pytest.fixture(scope="module", params=BACKENDS)
def ds_app(request, pg_cluster):
    """A query app on the generated data source dataset (tests/datasource_dataset.py), loaded
    once per backend and only read."""
    from agent_analytics.app import create_app
    from tests.datasource_dataset import loaded_database

    _backends_ran.add(request.param)
    url = loaded_database(pg_cluster, request.param)
    application = create_app(Config(database_url=url, query_tokens=(QUERY_TOKEN,), llm_query_tokens=(LLM_TOKEN,),
                                    db_timeout_s=10, db_pool_size=4, retention_days=0, compress_after_days=0),
                             role="query")
    application.testing = True
    yield application
    application.extensions["aa_db"].close()


@pytest.fixture(scope="module")
def ds_client(ds_app):
    return ds_app.test_client()


@pytest.fixture
def fresh_database(pg_cluster, request) -> str:
    """An empty, unmigrated database of its own (for migration tests)."""
    # Migration tests choose their backend by a parameter (timescaledb "on"/"off"): the summary
    # names the backends they exercised too.
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    _backends_ran.update({"on": "timescaledb", "off": "plain"}[v] for v in params.values() if v in ("on", "off"))
    name = "aa_fresh_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:40]
    with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}"')
    return pg_cluster.create_database(name)
