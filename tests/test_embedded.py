"""`agent-analytics up` with no DATABASE_URL: starts its own PostgreSQL, migrates, answers on
both ports, stops cleanly on Ctrl-C, and a second start reuses the data."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import psycopg
import pytest
import requests

from agent_analytics.cluster import free_port
from tests.harness_support import cluster_parent


def _start(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agent_analytics.cli", "up"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"agent-analytics up exited early:\n{proc.stdout.read()}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    proc.kill()
    pytest.fail(f"agent-analytics up did not become healthy:\n{proc.stdout.read()}")


def _interrupt(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out


@pytest.mark.db  # starts PostgreSQL of its own
def test_up_embedded_restart_keeps_data():
    data_dir = tempfile.mkdtemp(prefix="aa-test-up-", dir=cluster_parent())
    os.chmod(data_dir, 0o755)
    pg_port, ingest_port, query_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(AA_DATA_DIR=os.path.join(data_dir, "d"), AA_EMBEDDED_PG_PORT=str(pg_port),
               AA_INGEST_PORT=str(ingest_port), AA_QUERY_PORT=str(query_port), AA_ALLOW_NO_AUTH="1",
               AA_RETENTION_DAYS="0")
    url = f"postgresql://agent_analytics@127.0.0.1:{pg_port}/agent_analytics"
    proc = _start(env)
    try:
        _wait_healthy(ingest_port, proc)
        _wait_healthy(query_port, proc)
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("INSERT INTO users (id, email) VALUES ('kept@example.com', 'kept@example.com')")
        out = _interrupt(proc)
        assert "created embedded PostgreSQL" in out and "backend:" in out
        # Each database phase says when it starts and how long it took.
        assert "database: starting the embedded PostgreSQL" in out and "(creating it first: initdb)" in out
        assert re.search(r"listening on 127\.0\.0\.1:\d+ \(ready in \d+ s\)", out)
        assert "database: migrating the schema ..." in out and re.search(r"database: ready in \d+ s", out)
        assert "embedded PostgreSQL stopped" in out
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2)

        proc = _start(env)
        _wait_healthy(ingest_port, proc)
        with psycopg.connect(url) as c:
            assert c.execute("SELECT count(*) FROM users WHERE id = 'kept@example.com'").fetchone()[0] == 1
        out = _interrupt(proc)
        assert "reusing embedded PostgreSQL" in out
        assert "migrations applied: none (up to date)" in out
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["rm", "-rf", data_dir])


def test_ctrl_c_while_the_servers_start_stops_cleanly(monkeypatch, capsys):
    """Ctrl-C between the receiver's server and the data source's: what started is stopped, and
    the command ends as after a Ctrl-C once up (no traceback, status 0)."""
    import agent_analytics.server as server
    from agent_analytics.cli import _serve
    from agent_analytics.config import Config

    made = []
    real = server.guarded_server

    def guarded_server(app, cfg, **kwargs):
        if made:
            raise KeyboardInterrupt
        made.append(real(app, cfg, **kwargs))
        return made[-1]

    monkeypatch.setattr(server, "guarded_server", guarded_server)
    cfg = Config(database_url="postgresql://nobody@127.0.0.1:1/none", host="127.0.0.1",
                 ingest_port=free_port(), query_port=free_port(), allow_no_auth=True)
    assert _serve(cfg, ("ingest", "query")) == 0
    assert "stopped" in capsys.readouterr().out
    with pytest.raises(requests.ConnectionError):  # the receiver that had started is closed
        requests.get(f"http://127.0.0.1:{cfg.ingest_port}/healthz", timeout=2)


def test_without_the_server_binaries_the_message_names_the_install_command(monkeypatch):
    """As a user who is not root, on a machine without PostgreSQL (made so here: nothing on PATH,
    no Debian layout)."""
    import agent_analytics.cluster as cluster

    monkeypatch.setattr(cluster.shutil, "which", lambda name: None)
    monkeypatch.setattr(cluster.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(cluster.os, "geteuid", lambda: 1000)
    with pytest.raises(cluster.ClusterError, match=r"sudo apt-get install postgresql\) or set DATABASE_URL"):
        cluster.find_pg_bindir()
