"""With the database stopped the receiver answers 503 with Retry-After and stores nothing; once
the database is back, the sender's retry (here the OpenTelemetry SDK's own exporter, and a plain
re-post) lands the data exactly once."""
from __future__ import annotations

import os
import tempfile
import threading
import time

import psycopg
import pytest
import requests
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from agent_analytics.app import create_app
from agent_analytics.cluster import LocalCluster, free_port
from agent_analytics.config import Config
from agent_analytics.sql.migrate import migrate
from tests.harness_support import INGEST_TOKEN, cluster_parent
from tests.ingest_support import Server, fixture_bytes, headers

FIXTURE = "claude-code-2.1.328-logs-1.pb"


@pytest.fixture
def own_cluster():
    data_dir = tempfile.mkdtemp(prefix="aa-outage-", dir=cluster_parent())
    os.chmod(data_dir, 0o755)
    cluster = LocalCluster(data_dir, free_port(), preload_timescaledb=False)
    cluster.init()
    cluster.start("-c fsync=off -c synchronous_commit=off")
    url = cluster.create_database("aa_outage")
    migrate(url, timescaledb="off", retention_days=0, compress_after_days=0)
    yield cluster, url
    cluster.destroy()


def _count(url: str) -> int:
    with psycopg.connect(url) as c:
        return c.execute("SELECT count(*) FROM llm_requests").fetchone()[0]


@pytest.mark.db  # starts PostgreSQL of its own
def test_database_down_503_then_retries_land(own_cluster):
    cluster, url = own_cluster
    cfg = Config(database_url=url, ingest_tokens=(INGEST_TOKEN,), db_timeout_s=1, db_pool_size=2,
                 retention_days=0)
    app = create_app(cfg, role="ingest")
    registry = app.extensions["aa_registry"]
    try:
        with Server(app) as server:
            assert requests.post(server.url + "/v1/logs", data=fixture_bytes(FIXTURE), headers=headers(),
                                 timeout=30).status_code == 200
            cluster.stop()
            r = requests.post(server.url + "/v1/logs", data=fixture_bytes("claude-code-2.1.328-logs-2.pb"),
                              headers=headers(), timeout=30)
            assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0

            # The SDK's exporter meets the 503, backs off and retries while we bring the database back.
            provider = LoggerProvider(resource=Resource.create({"service.name": "claude-code"}))
            provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(
                endpoint=server.url + "/v1/logs", headers={"Authorization": f"Bearer {INGEST_TOKEN}"},
                timeout=40)))
            provider.get_logger("com.anthropic.claude_code.events").emit(
                body="claude_code.api_request", timestamp=time.time_ns(),
                attributes={"event.name": "api_request", "session.id": "outage", "model": "claude-sonnet-4-5",
                            "input_tokens": 7, "output_tokens": 3, "cache_read_tokens": 0,
                            "cache_creation_tokens": 0, "cost_usd": 0.0001})
            flushed: list[bool] = []
            sender = threading.Thread(target=lambda: flushed.append(provider.force_flush(60_000)))
            sender.start()
            deadline = time.monotonic() + 30
            while (registry.get_sample_value("aa_ingest_requests_total", {"signal": "logs", "status": "503"})
                   or 0) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert registry.get_sample_value("aa_ingest_requests_total", {"signal": "logs", "status": "503"}) >= 2
            cluster.start("-c fsync=off -c synchronous_commit=off")
            sender.join(timeout=60)
            provider.shutdown()
            assert flushed == [True]

            # The plain sender retries its refused batch: it lands, once.
            for _ in range(2):
                r = requests.post(server.url + "/v1/logs", data=fixture_bytes("claude-code-2.1.328-logs-2.pb"),
                                  headers=headers(), timeout=30)
                assert r.status_code == 200
    finally:
        app.extensions["aa_db"].close()
    with psycopg.connect(url) as c:
        rows = c.execute("SELECT session_id, count(*) FROM llm_requests GROUP BY 1 ORDER BY 1").fetchall()
    assert len(rows) == 3 and all(n == 1 for _, n in rows)
    assert ("outage", 1) in rows
