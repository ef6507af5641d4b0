"""A database as the previous release left it (migrations 0001-0007, its aggregates as they were
then, in tests/legacy/aggregates_0007, materialised over data) upgrades in place: migration 0008
takes sessions' cost from their events, request by request, the session totals are recounted and
the aggregates whose definitions changed are rebuilt, so the query API answers the new basis."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from agent_analytics.sql import migrate as migrate_module
from agent_analytics.sql.migrate import aggregate_definitions, load_migrations, migrate
from tests.harness_support import NO_TSDB, TIMESCALEDB, refresh_aggregates
from tests.ingest_support import assert_session_totals_match_the_rows
from tests.rawdata import load_raw_rows, raw_rows
from tests.rollups_support import ADDED

LEGACY = Path(__file__).parent / "legacy" / "aggregates_0007"
# The aggregates of the schemas these tests start from: none over migration 0012's table.
RELEASED = sorted(set(aggregate_definitions()) - ADDED)
BACKEND_CHOICES = ["off", pytest.param("on", marks=pytest.mark.skipif(not TIMESCALEDB, reason=NO_TSDB))]


def _previous_release(url: str, tsdb: str, monkeypatch) -> None:
    """migrate() as the previous release ran it: its migrations and its aggregate definitions."""
    with monkeypatch.context() as m:
        m.setattr(migrate_module, "load_migrations", lambda: [x for x in load_migrations() if x.version <= 7])
        m.setattr(migrate_module, "aggregate_definitions", lambda: {
            name: (LEGACY / f"{name}.sql").read_text() if (LEGACY / f"{name}.sql").exists() else select
            for name, select in aggregate_definitions().items() if name not in ADDED})
        migrate(url, timescaledb=tsdb, retention_days=0, compress_after_days=0)


@pytest.mark.parametrize("tsdb", BACKEND_CHOICES)
def test_upgrade_prices_sessions_from_their_events(fresh_database, tsdb, monkeypatch):
    assert len(list(LEGACY.glob("*.sql"))) == 18
    _previous_release(fresh_database, tsdb, monkeypatch)
    tool_calls, llm, points = raw_rows(seed=5)
    load_raw_rows(fresh_database, (tool_calls, llm, points), refresh=False)
    t0 = min(r[0] for r in llm)
    # A session that sent only metric points (priced from them, here at made-up prices), besides
    # the raw rows' sessions, which all sent both.
    only_points = [(t0 + timedelta(hours=i), f"\\x{hashlib.sha256(f'only{i}'.encode()).hexdigest()}",
                    Decimal(i + 1) / 1000) for i in range(3)]
    with psycopg.connect(fresh_database, autocommit=True) as c:
        for t, key, est in only_points:
            c.execute("INSERT INTO metric_points (time, source_key, source, session_id, user_id, agent_id, provider,"
                      " model, metric, token_type, value, estimated_cost_usd) VALUES (%s, %s, 'claude_code',"
                      " 'only-points', 'ann@x', 'claude-code', 'anthropic', 'claude-sonnet-4-5', 'tokens', 'output',"
                      " 100, %s)", (t, key, est))
        # What the previous receiver decided: sessions with metric points do not count events.
        c.execute("UPDATE sessions SET has_metrics = true")
        c.execute("UPDATE llm_requests SET counted = false WHERE session_id IS NOT NULL")
        c.execute("SELECT aa_rebuild_session_totals()")
        refresh_aggregates(c, RELEASED)  # (the schema's aggregates then)
        old = c.execute("SELECT sum(estimated_cost_usd) FROM llm_usage_hourly WHERE counted").fetchone()[0]
        assert old is None  # the old basis: these sessions' events priced nothing

    report = migrate(fresh_database, timescaledb=tsdb, retention_days=0, compress_after_days=0)
    # 0008 and every migration after it (the upgrade starts from 0007).
    assert report.applied == [m.name for m in load_migrations() if m.version >= 8]
    assert report.applied[:2] == ["0008_cost_per_request.sql", "0009_claude_code_metric_model_names.sql"]
    rebuilt = {n.split()[1] for n in report.notes if "rebuilt" in n}
    assert rebuilt == {p.stem for p in LEGACY.glob("*.sql")}

    per_session: dict[str, Decimal | None] = {}
    for r in llm:  # r[13]: the estimate, None where unpriced
        before = per_session.get(r[3])
        per_session[r[3]] = before if r[13] is None else (before or Decimal(0)) + r[13]
    # Its points are priced again at the base tier: 100 output tokens each at $15 per million.
    per_session["only-points"] = len(only_points) * 100 * Decimal(15) / 1_000_000
    with psycopg.connect(fresh_database, autocommit=True) as c:
        refresh_aggregates(c)
        flags = dict(c.execute("SELECT session_id, bool_or(cost_counted) FROM metric_points GROUP BY 1").fetchall())
        assert flags == {**{s: False for s in per_session if s != "only-points"}, "only-points": True}
        kept = dict(c.execute("SELECT id, estimated_cost_usd FROM sessions").fetchall())
        assert kept == per_session
        events = c.execute("SELECT sum(estimated_cost_usd) FROM llm_usage_hourly").fetchone()[0]
        from_points = c.execute("SELECT sum(estimated_cost_usd) FROM llm_metric_usage_hourly").fetchone()[0]
        assert (events, from_points) == (sum(r[13] for r in llm if r[13] is not None), per_session["only-points"])
        assert_session_totals_match_the_rows(c)


@pytest.mark.parametrize("tsdb", BACKEND_CHOICES)
def test_upgrade_reprices_what_the_previous_release_priced_otherwise(fresh_database, tsdb, monkeypatch):
    """Stored rows get this release's prices: a metrics-only session's point of 420K cache reads,
    priced at the long-context rate before, at the base rate; a request whose cache writes were
    8,000 1-hour of 12,000, priced all as 5-minute writes before, with its 1-hour writes at their
    rate. Oracles: Anthropic's list rates for Sonnet 4.5 (USD per million tokens)."""
    _previous_release(fresh_database, tsdb, monkeypatch)
    t = datetime(2026, 11, 2, 10, 30, tzinfo=timezone.utc)
    m = Decimal(1_000_000)
    old_point, new_point = 420_000 * Decimal("0.60") / m, 420_000 * Decimal("0.30") / m
    base = 1500 * Decimal(3) / m + 500 * Decimal(15) / m + 100_000 * Decimal("0.30") / m
    old_request = base + 12_000 * Decimal("3.75") / m
    new_request = base + 4_000 * Decimal("3.75") / m + 8_000 * Decimal(6) / m
    with psycopg.connect(fresh_database, autocommit=True) as c:
        c.execute("INSERT INTO metric_points (time, start_time, source_key, source, session_id, user_id, agent_id,"
                  " provider, model, metric, token_type, value, estimated_cost_usd) VALUES (%s, %s, '\\x01',"
                  " 'claude_code', 'points-only', 'ann@x', 'claude-code', 'anthropic', 'claude-sonnet-4-5[1m]',"
                  " 'tokens', 'cache_read', 420000, %s)", (t, t - timedelta(minutes=5), old_point))
        c.execute("INSERT INTO llm_requests (time, source_key, source, session_id, user_id, agent_id, provider, model,"
                  " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, estimated_cost_usd,"
                  " cost_basis, attributes) VALUES (%s, '\\x02', 'claude_code', 'with-events', 'ann@x', 'claude-code',"
                  " 'anthropic', 'claude-sonnet-4-5', 1500, 500, 100000, 12000, %s, 'list_price', %s)",
                  (t, old_request, json.dumps({"cache_creation_tokens": 12000, "cache_creation_5m_tokens": 4000,
                                               "cache_creation_1h_tokens": 8000})))
        c.execute("SELECT aa_rebuild_session_totals()")
        refresh_aggregates(c, RELEASED)  # (the schema's aggregates then)
    report = migrate(fresh_database, timescaledb=tsdb, retention_days=0, compress_after_days=0)
    assert any(n.startswith("repriced: 1 metric point(s)") and "1 request(s)" in n for n in report.notes), report.notes
    with psycopg.connect(fresh_database, autocommit=True) as c:
        assert c.execute("SELECT estimated_cost_usd FROM metric_points").fetchall() == [(new_point,)]
        assert c.execute("SELECT estimated_cost_usd FROM llm_requests").fetchall() == [(new_request,)]
        assert dict(c.execute("SELECT id, estimated_cost_usd FROM sessions").fetchall()) == {
            "points-only": new_point, "with-events": new_request}
        refresh_aggregates(c)
        events = c.execute("SELECT sum(estimated_cost_usd) FROM llm_usage_hourly").fetchone()[0]
        from_points = c.execute("SELECT sum(estimated_cost_usd) FROM llm_metric_usage_hourly").fetchone()[0]
        assert (events, from_points) == (new_request, new_point)
        assert_session_totals_match_the_rows(c)
    again = migrate(fresh_database, timescaledb=tsdb, retention_days=0, compress_after_days=0)
    assert not again.applied and not any(n.startswith("repriced") for n in again.notes)


@pytest.mark.parametrize("tsdb", BACKEND_CHOICES)
def test_upgrade_interrupted_after_0008_reprices_on_the_next_run(fresh_database, tsdb, monkeypatch):
    """A migrate that applied 0008 and stopped before repricing (killed, or an aggregate rebuild
    that failed) leaves the stored rows on the old basis: the next run still reprices them, once.
    Oracle: Anthropic's list rates for Sonnet 4.5 (USD per million tokens), 420K cache reads
    priced at the long-context rate before and at the base rate after."""
    _previous_release(fresh_database, tsdb, monkeypatch)
    t = datetime(2026, 11, 2, 10, 30, tzinfo=timezone.utc)
    m = Decimal(1_000_000)
    old_point, new_point = 420_000 * Decimal("0.60") / m, 420_000 * Decimal("0.30") / m
    with psycopg.connect(fresh_database, autocommit=True) as c:
        c.execute("INSERT INTO metric_points (time, start_time, source_key, source, session_id, user_id, agent_id,"
                  " provider, model, metric, token_type, value, estimated_cost_usd) VALUES (%s, %s, '\\x01',"
                  " 'claude_code', 'points-only', 'ann@x', 'claude-code', 'anthropic', 'claude-sonnet-4-5',"
                  " 'tokens', 'cache_read', 420000, %s)", (t, t - timedelta(minutes=5), old_point))
        c.execute("SELECT aa_rebuild_session_totals()")
    # The run that applies 0008 stops right after the numbered migrations.
    assert migrate(fresh_database, timescaledb=tsdb, upto=8).applied == ["0008_cost_per_request.sql"]
    report = migrate(fresh_database, timescaledb=tsdb, retention_days=0, compress_after_days=0)
    assert "0008_cost_per_request.sql" not in report.applied
    assert any(n.startswith("repriced: 1 metric point(s)") for n in report.notes), report.notes
    with psycopg.connect(fresh_database, autocommit=True) as c:
        assert c.execute("SELECT estimated_cost_usd FROM metric_points").fetchall() == [(new_point,)]
        assert c.execute("SELECT estimated_cost_usd FROM sessions").fetchall() == [(new_point,)]
        refresh_aggregates(c)
        assert c.execute("SELECT sum(estimated_cost_usd) FROM llm_metric_usage_hourly").fetchone()[0] == new_point
        assert_session_totals_match_the_rows(c)
    again = migrate(fresh_database, timescaledb=tsdb, retention_days=0, compress_after_days=0)
    assert not any(n.startswith("repriced") for n in again.notes), again.notes


@pytest.mark.parametrize("tsdb", BACKEND_CHOICES)
def test_upgrade_names_claude_code_points_by_their_events_model(fresh_database, tsdb, monkeypatch):
    """Points the previous release stored as `claude-sonnet-4-5[1m]` take the name the session's
    events give the model, so its tokens and its cost are one model's; the session's model list
    follows, other sources' names are left alone."""
    _previous_release(fresh_database, tsdb, monkeypatch)
    t = datetime(2026, 11, 2, 10, 30, tzinfo=timezone.utc)
    with psycopg.connect(fresh_database, autocommit=True) as c:
        for key, source, session, model in (("\\x01", "claude_code", "s1", "claude-sonnet-4-5[1m]"),
                                            ("\\x02", "claude_code", "s1", "claude-haiku-4-5"),
                                            ("\\x03", "genai", "g1", "my-model[v2]")):
            c.execute("INSERT INTO metric_points (time, source_key, source, session_id, user_id, agent_id, provider,"
                      " model, metric, token_type, value) VALUES (%s, %s, %s, %s, 'ann@x', 'a', 'anthropic', %s,"
                      " 'tokens', 'output', 100)", (t, key, source, session, model))
        c.execute("INSERT INTO llm_requests (time, source_key, source, session_id, user_id, agent_id, provider, model,"
                  " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_basis) VALUES"
                  " (%s, '\\x04', 'claude_code', 's1', 'ann@x', 'claude-code', 'anthropic', 'claude-sonnet-4-5',"
                  " 10, 100, 0, 0, 'list_price')", (t,))
        c.execute("SELECT aa_rebuild_session_totals()")
        assert dict(c.execute("SELECT id, models FROM sessions").fetchall())["s1"] == [
            "claude-haiku-4-5", "claude-sonnet-4-5", "claude-sonnet-4-5[1m]"]
    migrate(fresh_database, timescaledb=tsdb, retention_days=0, compress_after_days=0)
    with psycopg.connect(fresh_database, autocommit=True) as c:
        assert sorted(c.execute("SELECT source_key, model FROM metric_points").fetchall()) == [
            (b"\x01", "claude-sonnet-4-5"), (b"\x02", "claude-haiku-4-5"), (b"\x03", "my-model[v2]")]
        assert dict(c.execute("SELECT id, models FROM sessions").fetchall()) == {
            "s1": ["claude-haiku-4-5", "claude-sonnet-4-5"], "g1": ["my-model[v2]"]}
        refresh_aggregates(c)
        assert c.execute("SELECT DISTINCT model FROM llm_metric_usage_hourly WHERE model LIKE 'claude%'"
                         " ORDER BY 1").fetchall() == [("claude-haiku-4-5",), ("claude-sonnet-4-5",)]
        assert_session_totals_match_the_rows(c)


@pytest.mark.parametrize("tsdb", BACKEND_CHOICES)
def test_upgrade_counts_each_sessions_unpriced_tokens(fresh_database, tsdb):
    """A database at 0010 with stored sessions: 0011 gives each session the tokens of its events
    without an estimate or without a reported cost, as counted here from the raw rows."""
    assert migrate(fresh_database, timescaledb=tsdb, upto=10).applied[-1] == "0010_ingest_stats.sql"
    tool_calls, llm, points = raw_rows(seed=5)
    load_raw_rows(fresh_database, (tool_calls, llm, points), refresh=False)
    want: dict[str, list[float]] = {}
    for r in llm:  # r[3] session, r[8:12] tokens, r[12] reported, r[13] estimated cost
        if r[3] is None:
            continue
        w = want.setdefault(r[3], [0.0, 0.0])
        w[0] += sum(r[8:12]) if r[13] is None else 0
        w[1] += sum(r[8:12]) if r[12] is None else 0
    tokens = {}
    for r in llm:
        tokens[r[3]] = tokens.get(r[3], 0) + sum(r[8:12])
    assert any(0 < e < tokens[sid] for sid, (e, _) in want.items())  # partly priced sessions
    with psycopg.connect(fresh_database, autocommit=True) as c:
        # As the receiver decides: the raw rows' sessions all sent events, so their points'
        # cost does not count.
        c.execute("UPDATE metric_points SET cost_counted = false WHERE session_id IS NOT NULL")
        c.execute("SELECT aa_rebuild_session_totals()")
    report = migrate(fresh_database, timescaledb=tsdb, retention_days=0, compress_after_days=0)
    assert report.applied == [m.name for m in load_migrations() if m.version > 10]
    with psycopg.connect(fresh_database, autocommit=True) as c:
        got = {sid: [e, r] for sid, e, r in c.execute(
            "SELECT id, estimated_unpriced_tokens, reported_unpriced_tokens FROM sessions")}
    assert got == want
