"""Faults: the database restarts (cleanly and by crash) while several senders keep sending; a
locked table; two receiver processes given the same batch at the same moment; a receiver killed
between receiving and committing, and a failure inside the transaction. Each ends in exact counts:
nothing lost, nothing counted twice, nothing half-written."""
from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import time

import psycopg
import pytest
import requests

from agent_analytics.app import create_app
from agent_analytics.cluster import LocalCluster, free_port
from agent_analytics.config import Config
from agent_analytics.db import PROBE_INTERVAL_S, Database, DatabaseDown
from psycopg_pool import PoolTimeout
from agent_analytics.sql.migrate import migrate
from tests.harness_support import INGEST_TOKEN, LLM_TOKEN, TIMESCALEDB, cluster_parent
from tests.hardening_support import SendStats, api_requests, receiver_process, send_until_stored
from tests.ingest_support import Server, cumulative_token_usage

PG_OPTIONS = "-c fsync=off"  # synchronous_commit stays on: an acknowledged batch must survive a crash


@pytest.fixture(scope="module")
def restart_cluster():
    data_dir = tempfile.mkdtemp(prefix="aa-hardening-", dir=cluster_parent())
    os.chmod(data_dir, 0o755)
    cluster = LocalCluster(data_dir, free_port(), preload_timescaledb=TIMESCALEDB)
    cluster.init()
    cluster.start(PG_OPTIONS)
    yield cluster
    cluster.destroy()


def _stored(url: str) -> list[tuple[str, int]]:
    with psycopg.connect(url) as c:
        return c.execute("SELECT attributes->>'request_id', input_tokens FROM llm_requests").fetchall()


def test_database_restarts_while_senders_keep_sending(restart_cluster, backend):
    cluster = restart_cluster
    url = cluster.create_database(f"aa_restart_{backend}")
    migrate(url, timescaledb="on" if backend == "timescaledb" else "off", retention_days=0, compress_after_days=0)
    app = create_app(Config(database_url=url, ingest_tokens=(INGEST_TOKEN,), db_timeout_s=1, db_pool_size=4,
                            retention_days=0), role="ingest")
    senders, batches, records = 4, 30, 10
    t0 = time.time_ns() - 3_600 * 10**9
    bodies = {s: [api_requests(f"{backend}-{s}-{b}", records, t0 + (s * batches + b) * 10**9,
                               first_tokens=(s * batches + b) * records + 1) for b in range(batches)]
              for s in range(senders)}
    expected = sorted(e for per_sender in bodies.values() for _, exp in per_sender for e in exp)
    stats = SendStats()
    deadline = time.monotonic() + 120
    failed: list = []

    def sender(s: int) -> None:
        for b, (body, _) in enumerate(bodies[s]):
            if not send_until_stored(server.url, body, stats, deadline):
                failed.append((s, b))
                return
            if b % 4 == 0:  # the answer "got lost": the sender sends the same batch again
                send_until_stored(server.url, body, stats, deadline)
            time.sleep(0.02)

    def wait_for(condition, limit: float = 30) -> None:
        end = time.monotonic() + limit
        while not condition() and time.monotonic() < end:
            time.sleep(0.05)

    try:
        with Server(app) as server:
            threads = [threading.Thread(target=sender, args=(s,)) for s in range(senders)]
            for t in threads:
                t.start()
            for mode, acked in (("fast", 10), ("immediate", 40)):
                wait_for(lambda: stats.acknowledged >= acked)
                refused = stats.refused_503
                cluster.stop(mode=mode)   # "immediate" is a crash: no shutdown checkpoint
                wait_for(lambda: stats.refused_503 >= refused + senders)
                time.sleep(0.5)
                cluster.start(PG_OPTIONS)
            for t in threads:
                t.join(timeout=150)
    finally:
        app.extensions["aa_db"].close()
        if not cluster.is_running():
            cluster.start(PG_OPTIONS)
    assert not failed and not stats.unexpected, (failed, stats.unexpected)
    assert stats.refused_503 >= 2 * senders, "the outages must have been felt by the senders"
    assert stats.retry_after and min(stats.retry_after) >= 1
    stored = sorted(_stored(url))
    assert len(stored) == len(expected) == senders * batches * records
    assert stored == expected  # every record once: no loss, no double count


def _connections(conn: psycopg.Connection, app_name: str) -> int:
    return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                        (app_name,)).fetchone()[0]


def test_locked_table_answers_retryable_and_keeps_waits_bounded(config, conn):
    cfg = config.replace(db_timeout_s=1, db_pool_size=2)
    app = create_app(cfg, role="all")
    app_name = f"agent-analytics-{app.name}"
    body, expected = api_requests("locked", 5, time.time_ns() - 60 * 10**9)
    many = 5
    answers: list = []
    try:
        with Server(app) as server, psycopg.connect(config.database_url) as locker:
            locker.execute("LOCK TABLE llm_requests IN ACCESS EXCLUSIVE MODE")  # held until rollback

            def post() -> None:
                try:
                    r = requests.post(server.url + "/v1/logs", data=body, timeout=60, headers={
                        "Content-Type": "application/x-protobuf", "Authorization": f"Bearer {INGEST_TOKEN}"})
                    answers.append((r.status_code, r.headers.get("Retry-After")))
                except requests.RequestException as exc:  # a hung request would end here
                    answers.append((type(exc).__name__, None))

            threads = [threading.Thread(target=post) for _ in range(many)]
            for t in threads:
                t.start()
            peak = 0
            while any(t.is_alive() for t in threads):
                peak = max(peak, _connections(conn, app_name))
                time.sleep(0.05)
            # The dashboards' reads of the same table come back retryable too.
            q = requests.get(server.url + "/api/v1/query/llm_total_tokens", timeout=60,
                             headers={"Authorization": f"Bearer {LLM_TOKEN}"})
            assert q.status_code == 503
            stats = app.extensions["aa_db"].pool.get_stats()
            locker.rollback()
            assert len(answers) == many and all(status == 503 for status, _ in answers), answers
            assert all(int(retry_after) >= 1 for _, retry_after in answers)
            # However many requests pile up, the database sees at most the pool, and nobody queues forever.
            assert peak <= cfg.db_pool_size
            assert stats.get("requests_waiting", 0) == 0
            assert conn.execute("SELECT count(*) FROM llm_requests").fetchone()[0] == 0
            # A saturated pool is not a database down: the next request is served at once.
            ok = requests.post(server.url + "/v1/logs", data=body, timeout=60, headers={
                "Content-Type": "application/x-protobuf", "Authorization": f"Bearer {INGEST_TOKEN}"})
            assert ok.status_code == 200
    finally:
        app.extensions["aa_db"].close()
    assert sorted(conn.execute("SELECT attributes->>'request_id', input_tokens FROM llm_requests").fetchall()) \
        == sorted(expected)


def test_two_receiver_processes_store_a_batch_sent_to_both_once(db_url, conn):
    rounds = 8
    t0 = time.time_ns() - 3_600 * 10**9
    logs = [api_requests(f"twin-{r}", 20, t0 + r * 10**9, first_tokens=r * 20 + 1) for r in range(rounds)]
    s = t0
    cumulative = [cumulative_token_usage([(s, s + 10**9 * (r + 1), 10.0 * (r + 1))]) for r in range(rounds)]
    errors: list = []
    with receiver_process(db_url) as (a, _), receiver_process(db_url) as (b, _):
        for r in range(rounds):
            for path, body in (("/v1/logs", logs[r][0]), ("/v1/metrics", cumulative[r])):
                barrier = threading.Barrier(2)

                def send(url: str) -> None:
                    try:
                        barrier.wait(timeout=10)
                        resp = requests.post(url + path, data=body, timeout=60, headers={
                            "Content-Type": "application/x-protobuf", "Authorization": f"Bearer {INGEST_TOKEN}"})
                        if resp.status_code != 200:
                            errors.append((url, path, resp.status_code, resp.text[:200]))
                    except Exception as exc:  # surfaced below
                        errors.append((url, path, repr(exc)))

                threads = [threading.Thread(target=send, args=(u,)) for u in (a, b)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
    assert not errors
    stored = sorted(conn.execute("SELECT attributes->>'request_id', input_tokens FROM llm_requests").fetchall())
    assert stored == sorted(e for _, exp in logs for e in exp)
    # The cumulative series: one delta per point, summing to its last value.
    assert conn.execute("SELECT count(*), sum(value) FROM metric_points WHERE session_id = 'cum-1'").fetchone() \
        == (rounds, 10.0 * rounds)
    assert conn.execute("SELECT count(*) FROM sessions WHERE id LIKE 's-twin-%'").fetchone()[0] == rounds


FAULT_TRIGGER = """
CREATE FUNCTION aa_test_fault() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF {action} THEN RAISE EXCEPTION 'injected fault'; END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER aa_test_fault AFTER INSERT ON sessions FOR EACH STATEMENT EXECUTE FUNCTION aa_test_fault();
"""
DROP_FAULT = "DROP TRIGGER IF EXISTS aa_test_fault ON sessions; DROP FUNCTION IF EXISTS aa_test_fault();"
EVERYTHING = {t: f"SELECT count(*) FROM {t}" for t in (
    "llm_requests", "llm_errors", "tool_calls", "metric_points", "sessions", "users", "agents",
    "metric_series_state")}


def _everything(conn) -> dict[str, int]:
    return {t: conn.execute(q).fetchone()[0] for t, q in EVERYTHING.items()}


def test_failure_inside_the_transaction_leaves_nothing_half_written(client, conn):
    """Sessions are written last: a failure there must take the facts and directory rows with it."""
    logs, expected = api_requests("half", 10, time.time_ns() - 60 * 10**9)
    metrics = cumulative_token_usage([(time.time_ns() - 120 * 10**9, time.time_ns() - 60 * 10**9, 42.0)])
    conn.execute(FAULT_TRIGGER.format(action="true"))
    try:
        h = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {INGEST_TOKEN}"}
        for path, body in (("/v1/logs", logs), ("/v1/metrics", metrics)):
            resp = client.post(path, data=body, headers=h)
            assert resp.status_code >= 500
            assert all(n == 0 for n in _everything(conn).values()), _everything(conn)
    finally:
        conn.execute(DROP_FAULT)
    for _ in range(2):  # the sender's retry, and a duplicate of it
        assert client.post("/v1/logs", data=logs, headers=h).status_code == 200
        assert client.post("/v1/metrics", data=metrics, headers=h).status_code == 200
    counts = _everything(conn)
    assert counts["llm_requests"] == 10 and counts["metric_points"] == 1 and counts["metric_series_state"] == 1
    assert conn.execute("SELECT sum(value) FROM metric_points").fetchone()[0] == 42.0
    assert sorted(conn.execute("SELECT attributes->>'request_id', input_tokens FROM llm_requests").fetchall()) \
        == sorted(expected)


SLOW_TRIGGER = """
CREATE FUNCTION aa_test_fault() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$;
CREATE TRIGGER aa_test_fault AFTER INSERT ON sessions FOR EACH STATEMENT EXECUTE FUNCTION aa_test_fault();
"""


def _backend_in_trigger(conn) -> int | None:
    row = conn.execute("SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
                       " AND application_name LIKE 'agent-analytics-%'").fetchone()
    return row[0] if row else None


def _wait(condition, limit: float = 30):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def test_receiver_killed_between_receiving_and_committing(db_url, conn):
    body, expected = api_requests("killed", 10, time.time_ns() - 60 * 10**9)
    h = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {INGEST_TOKEN}"}
    conn.execute(SLOW_TRIGGER)
    outcome: list = []
    try:
        with receiver_process(db_url) as (url, proc):
            def post() -> None:
                try:
                    outcome.append(requests.post(url + "/v1/logs", data=body, headers=h, timeout=60).status_code)
                except requests.RequestException as exc:
                    outcome.append(type(exc).__name__)

            t = threading.Thread(target=post)
            t.start()
            pid = _wait(lambda: _backend_in_trigger(conn))
            # Facts and directory rows are written by now, inside the open transaction: invisible.
            assert all(n == 0 for n in _everything(conn).values())
            proc.send_signal(signal.SIGKILL)   # the receiver dies before it can commit
            proc.wait(timeout=10)
            t.join(timeout=60)
            _wait(lambda: conn.execute("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = %s",
                                       (pid,)).fetchone()[0])
        assert outcome and outcome[0] != 200
        assert all(n == 0 for n in _everything(conn).values()), _everything(conn)
    finally:
        conn.execute(DROP_FAULT)
    with receiver_process(db_url) as (url, _):   # the sender retries against a fresh receiver
        for _ in range(2):
            assert requests.post(url + "/v1/logs", data=body, headers=h, timeout=60).status_code == 200
    assert sorted(conn.execute("SELECT attributes->>'request_id', input_tokens FROM llm_requests").fetchall()) \
        == sorted(expected)


def test_connection_killed_mid_transaction_is_retried_once_and_stored_once(config, conn):
    """The database ends the receiver's session mid-transaction (pg_terminate_backend, as a
    failover or an administrator would): the receiver's one fresh attempt stores it, once."""
    body, expected = api_requests("terminated", 10, time.time_ns() - 60 * 10**9)
    app = create_app(config, role="ingest")
    conn.execute(SLOW_TRIGGER)
    outcome: list = []
    try:
        with Server(app) as server:
            def post() -> None:
                outcome.append(requests.post(server.url + "/v1/logs", data=body, timeout=60, headers={
                    "Content-Type": "application/x-protobuf", "Authorization": f"Bearer {INGEST_TOKEN}"}).status_code)

            t = threading.Thread(target=post)
            t.start()
            pid = _wait(lambda: _backend_in_trigger(conn))
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            t.join(timeout=60)
    finally:
        conn.execute(DROP_FAULT)
        app.extensions["aa_db"].close()
    assert outcome == [200]
    assert sorted(conn.execute("SELECT attributes->>'request_id', input_tokens FROM llm_requests").fetchall()) \
        == sorted(expected)


def test_slow_database_times_out_into_a_retryable_answer(config, conn):
    """Every write is slower than AA_DB_TIMEOUT_S (a sleeping trigger): the statement timeout
    turns it into 503 + Retry-After, the transaction leaves nothing, and the retry lands once."""
    body, expected = api_requests("slow", 5, time.time_ns() - 60 * 10**9)
    app = create_app(config.replace(db_timeout_s=1), role="ingest")
    h = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {INGEST_TOKEN}"}
    conn.execute(SLOW_TRIGGER)
    try:
        with Server(app) as server:
            r = requests.post(server.url + "/v1/logs", data=body, headers=h, timeout=60)
            assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1
            assert all(n == 0 for n in _everything(conn).values()), _everything(conn)
            conn.execute(DROP_FAULT)
            for _ in range(2):
                assert requests.post(server.url + "/v1/logs", data=body, headers=h, timeout=60).status_code == 200
    finally:
        conn.execute(DROP_FAULT)
        app.extensions["aa_db"].close()
    assert sorted(conn.execute("SELECT attributes->>'request_id', input_tokens FROM llm_requests").fetchall()) \
        == sorted(expected)


def _unreachable_url() -> str:
    return f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"  # nothing listens there


def test_an_unreachable_database_is_tried_by_one_request_at_a_time(db_url):
    """After a request finds no connection in time, the others are refused at once
    (DatabaseDown, retryable) instead of each waiting AA_DB_TIMEOUT_S; one request at a time
    tries again, at most every PROBE_INTERVAL_S; the first that reaches the database ends it."""
    now = [1000.0]
    db = Database(_unreachable_url(), timeout_s=0.3, clock=lambda: now[0])
    db.open()
    try:
        with pytest.raises(PoolTimeout) as first, db.connection():
            pass
        assert not isinstance(first.value, DatabaseDown)  # it waited for the pool
        with pytest.raises(DatabaseDown), db.connection():
            pass
        now[0] += PROBE_INTERVAL_S
        probe_started, results = threading.Event(), []

        def probe() -> None:
            probe_started.set()
            try:
                with db.connection():
                    results.append("reached")
            except PoolTimeout as exc:
                results.append(type(exc).__name__)

        t = threading.Thread(target=probe)
        t.start()
        probe_started.wait()
        while not db._probing and t.is_alive():
            time.sleep(0.01)
        with pytest.raises(DatabaseDown), db.connection():  # while the probe is out
            pass
        t.join()
        assert results == ["PoolTimeout"]
        with pytest.raises(DatabaseDown), db.connection():  # and until the next interval
            pass
    finally:
        db.close()

    # A database that answers again: the next probe reaches it, and everyone gets through.
    db = Database(db_url, timeout_s=5, clock=lambda: now[0])
    db.open()
    try:
        db._down, db._next_probe = True, now[0] + PROBE_INTERVAL_S
        with pytest.raises(DatabaseDown), db.connection():
            pass
        now[0] += PROBE_INTERVAL_S
        with db.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with db.connection() as conn, db.connection() as other:
            assert conn.execute("SELECT 2").fetchone() == (2,) and other.execute("SELECT 3").fetchone() == (3,)
    finally:
        db.close()


def test_a_busy_pool_is_not_a_database_down(db_url):
    """Waiting longer than allowed for a connection while all of them are busy is a saturated
    database, not an outage: the next request waits its turn instead of being refused."""
    db = Database(db_url, size=1, timeout_s=5)
    db.open()
    try:
        with db.connection() as busy:
            busy.execute("SELECT 1")
            with pytest.raises(PoolTimeout) as waited, db.connection(timeout=0.2):
                pass
            assert not isinstance(waited.value, DatabaseDown)
        with db.connection() as conn:  # not refused
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert not db._down
    finally:
        db.close()


def test_receiver_answers_metrics_and_health_while_the_database_is_down(caplog):
    """With the database unreachable and more senders than request threads, the senders after
    the first are refused at once, so /metrics and /healthz on the same port are not stuck
    behind requests each waiting AA_DB_TIMEOUT_S."""
    from agent_analytics.server import Service

    cfg = Config(database_url=_unreachable_url(), ingest_port=free_port(), query_port=free_port(),
                 retention_days=0, ingest_tokens=(INGEST_TOKEN,), metrics_tokens=("m",), ingest_threads=2,
                 db_timeout_s=2)
    body, _ = api_requests("down", 3, time.time_ns() - 60 * 10**9)
    base = f"http://127.0.0.1:{cfg.ingest_port}"
    service = Service(cfg, roles=("ingest",))
    service.start()
    statuses: list = []
    try:
        def post() -> None:
            statuses.append(requests.post(base + "/v1/logs", data=body, timeout=60, headers={
                "Content-Type": "application/x-protobuf", "Authorization": f"Bearer {INGEST_TOKEN}"}).status_code)

        threads = [threading.Thread(target=post) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [503] * 8
        refusals = [r.getMessage().rsplit(": ", 1)[1] for r in caplog.records
                    if "refused, database unavailable" in r.getMessage()]
        # Only the requests already running when the database was found down waited for it.
        assert refusals.count("PoolTimeout") <= cfg.ingest_threads and refusals.count("DatabaseDown") >= 6, refusals
        metrics = requests.get(base + "/metrics", headers={"Authorization": "Bearer m"}, timeout=60)
        assert metrics.status_code == 200 and 'aa_ingest_requests_total{signal="logs",status="503"} 8.0' in metrics.text
        assert requests.get(base + "/healthz", timeout=60).status_code == 503
    finally:
        service.stop()


def test_the_first_requests_after_a_database_restart_are_served(restart_cluster, backend):
    """A restart kills every pooled connection while it sits idle. Each connection is checked as
    it is handed out, and one found dead has the others checked with it: the first request after
    the restart, and every one after it, is answered by a live connection (the query service's
    pool of 8 and the directory API's of 2, both full when the database went away)."""
    cluster = restart_cluster
    url = cluster.create_database(f"aa_pool_restart_{backend}")
    migrate(url, timescaledb="on" if backend == "timescaledb" else "off", retention_days=0, compress_after_days=0)
    base = Config(database_url=url, ingest_tokens=(INGEST_TOKEN,), llm_query_tokens=(LLM_TOKEN,), db_timeout_s=5,
                  retention_days=0)
    query_app = create_app(base.replace(db_pool_size=8), role="query")
    ingest_app = create_app(base.replace(db_pool_size=2), role="ingest")
    requests_per_app = {"query": ("GET", "/api/v1/query/llm_total_tokens?from=now-1d&to=now", LLM_TOKEN),
                        "ingest": ("GET", "/api/v1/directory/users", INGEST_TOKEN)}
    try:
        with Server(query_app) as q, Server(ingest_app) as i:
            servers = {"query": (q, query_app), "ingest": (i, ingest_app)}
            for name, (server, app) in servers.items():
                db = app.extensions["aa_db"]
                with contextlib.ExitStack() as held:  # every connection of the pool opened, then idle
                    for _ in range(db.pool.max_size):
                        held.enter_context(db.connection()).execute("SELECT 1")
                assert db.pool.get_stats()["pool_available"] == db.pool.max_size, name
            cluster.stop(mode="fast")
            cluster.start(PG_OPTIONS)
            answers = {name: [] for name in servers}
            for name, (server, app) in servers.items():
                method, path, token = requests_per_app[name]
                for _ in range(app.extensions["aa_db"].pool.max_size + 2):
                    r = requests.request(method, server.url + path, timeout=60,
                                         headers={"Authorization": f"Bearer {token}"})
                    answers[name].append(r.status_code)
            assert answers == {name: [200] * (app.extensions["aa_db"].pool.max_size + 2)
                               for name, (_, app) in servers.items()}
    finally:
        query_app.extensions["aa_db"].close()
        ingest_app.extensions["aa_db"].close()
        if not cluster.is_running():
            cluster.start(PG_OPTIONS)
