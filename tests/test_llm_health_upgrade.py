"""A database as the release before migration 0013 left it, holding the captured scenarios'
requests and errors (compressed, on TimescaleDB), upgrades in place: nothing is lost, and the
stored rows gain their time to first token, main thread or subagent, effort, speed and attempt
from the attributes they kept, so the new rollups answer as for rows ingested afterwards."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import psycopg
import pytest

from agent_analytics.ingest import normalise
from agent_analytics.ingest.rows import Context
from agent_analytics.sql import migrate as migrate_module
from agent_analytics.sql.migrate import aggregate_definitions, load_migrations, migrate
from tests.harness_support import NO_TSDB, TIMESCALEDB
from tests.ingest_support import logs_fixture
from tests.llm_health_support import SCENARIOS, expected, files
from tests.rollups_support import ADDED_BY

BACKEND_CHOICES = ["off", pytest.param("on", marks=pytest.mark.skipif(not TIMESCALEDB, reason=NO_TSDB))]
NEW = ADDED_BY["0013"]
# Over tables or columns of later migrations, or over 0013's columns and declared since.
LATER = (ADDED_BY["0015"] | ADDED_BY["0017"] | ADDED_BY["origin-totals"] | ADDED_BY["bands"]
         | ADDED_BY["latency-totals"] | ADDED_BY["by-attribution"] | ADDED_BY["errors-totals"])


def _previous_release(url: str, tsdb: str, monkeypatch) -> None:
    with monkeypatch.context() as m:
        m.setattr(migrate_module, "load_migrations", lambda: [x for x in load_migrations() if x.version < 13])
        m.setattr(migrate_module, "aggregate_definitions",
                  lambda: {n: s for n, s in aggregate_definitions().items() if n not in NEW | LATER})
        migrate(url, timescaledb=tsdb, retention_days=0, compress_after_days=7)


def _ts(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)


def _stored(fresh_database: str, tsdb: str) -> tuple[list, list]:
    """The captured scenarios' requests and errors as the previous release stored them (its
    chunks compressed, on TimescaleDB)."""
    ctx = Context.now()
    requests, errors = [], []
    for scenario in SCENARIOS:
        for name in files(scenario, "logs"):
            batch = normalise.logs(logs_fixture(name), ctx)
            requests += batch.llm_requests
            # The previous receiver stored api errors, not api_retries_exhausted.
            errors += [e for e in batch.llm_errors if e.kind == "error"]
    with psycopg.connect(fresh_database, autocommit=True) as c:
        with c.cursor().copy("COPY llm_requests (time, source_key, source, session_id, user_id, agent_id, provider,"
                             " model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,"
                             " reported_cost_usd, latency_ms, attributes) FROM STDIN") as cp:
            for r in requests:
                cp.write_row((_ts(r.time_ns), r.source_key, r.source, r.session_id, r.user_id, r.agent_id, r.provider,
                              r.model, r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens,
                              r.reported_cost_usd, r.latency_ms, r.attributes_json))
        with c.cursor().copy("COPY llm_errors (time, source_key, source, session_id, user_id, agent_id, provider,"
                             " model, error, status_code, duration_ms, attributes) FROM STDIN") as cp:
            for e in errors:
                cp.write_row((_ts(e.time_ns), e.source_key, e.source, e.session_id, e.user_id, e.agent_id, e.provider,
                              e.model, e.error, e.status_code, e.duration_ms, e.attributes_json))
        if tsdb == "on":
            for table in ("llm_requests", "llm_errors"):
                compressed = c.execute(f"SELECT count(compress_chunk(ch, if_not_compressed => true))"
                                       f" FROM show_chunks('{table}') ch").fetchone()[0]
                assert compressed >= 1, table
    return requests, errors


@pytest.mark.parametrize("tsdb", BACKEND_CHOICES)
def test_stored_requests_and_errors_gain_the_new_columns(fresh_database, tsdb, monkeypatch):
    assert len(NEW) == 30 and NEW <= set(aggregate_definitions())
    _previous_release(fresh_database, tsdb, monkeypatch)
    requests, errors = _stored(fresh_database, tsdb)
    report = migrate(fresh_database, timescaledb=tsdb, retention_days=0, compress_after_days=7)
    assert report.applied == [m.name for m in load_migrations() if m.version >= 13]
    assert report.applied[0] == "0013_llm_health.sql"
    assert NEW <= set(report.created_aggregates)
    want = expected()
    with psycopg.connect(fresh_database, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM llm_requests").fetchone()[0] == len(requests)
        got = {(m, v): n for m, v, n in c.execute(
            "SELECT model, ttft_ms, sum(requests) FROM llm_ttft_by_model_daily GROUP BY 1, 2")}
        assert got == {(m, v): n for m, vs in want.ttfts.items() for v, n in Counter(vs).items()}
        got = {tuple(k): v for *k, v in c.execute(
            "SELECT query_source, agent_name, effort, speed, sum(input_tokens + output_tokens + cache_read_tokens"
            " + cache_write_tokens) FROM llm_usage_by_origin_daily WHERE provider = 'anthropic' GROUP BY 1, 2, 3, 4")}
        assert got == {tuple(k): v[0] for k, v in want.by_origin.items()}
        attempts = Counter(c.execute("SELECT session_id, attempt FROM llm_errors").fetchall())
        assert attempts == Counter((s, a) for s, xs in want.attempts.items() for a in xs)
        assert c.execute("SELECT DISTINCT kind FROM llm_errors").fetchall() == [("error",)]



@pytest.mark.skipif(not TIMESCALEDB, reason=NO_TSDB)
def test_compressed_rows_past_timescaledbs_decompression_bound_upgrade(fresh_database, monkeypatch):
    """TimescaleDB bounds the rows one transaction may decompress (100,000 by default; a real
    installation holds millions of compressed requests): set to 1 here for the few captured rows,
    migration 0013 still fills the stored rows' new columns, in place."""
    _previous_release(fresh_database, "on", monkeypatch)
    requests, _ = _stored(fresh_database, "on")
    name = psycopg.conninfo.conninfo_to_dict(fresh_database)["dbname"]
    with psycopg.connect(fresh_database, autocommit=True) as c:
        c.execute(f'ALTER DATABASE "{name}" SET timescaledb.max_tuples_decompressed_per_dml_transaction = 1')
    report = migrate(fresh_database, timescaledb="on", retention_days=0, compress_after_days=7)
    assert report.applied[0] == "0013_llm_health.sql"
    with psycopg.connect(fresh_database, autocommit=True) as c:
        filled = c.execute("SELECT count(*) FROM llm_requests WHERE query_source IS NOT NULL").fetchone()[0]
    assert filled == sum(1 for r in requests if r.source == "claude_code" and r.query_source) > 0
