"""TimescaleDB: a batch retried after its chunk was compressed still stores nothing twice."""
from __future__ import annotations

import pytest

from tests.harness_support import TIMESCALEDB
from tests.ingest_support import fixture_bytes, post

pytestmark = pytest.mark.skipif(not TIMESCALEDB, reason="TimescaleDB not installed")


@pytest.mark.parametrize("backend", ["timescaledb"], indirect=True)
def test_retry_into_compressed_chunk(client, conn, backend):
    body = fixture_bytes("claude-code-2.1.328-logs-1.pb")
    assert post(client, "/v1/logs", body).status_code == 200
    conn.execute("ALTER TABLE llm_requests SET (timescaledb.compress, timescaledb.compress_orderby = 'time DESC')")
    try:
        n = conn.execute("SELECT count(compress_chunk(c)) FROM show_chunks('llm_requests') c").fetchone()[0]
        assert n >= 1
        assert post(client, "/v1/logs", body).status_code == 200
        assert conn.execute("SELECT count(*) FROM llm_requests").fetchone()[0] == 1
    finally:
        conn.execute("SELECT decompress_chunk(c, true) FROM show_chunks('llm_requests') c")
        conn.execute("ALTER TABLE llm_requests SET (timescaledb.compress = false)")
