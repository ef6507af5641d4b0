"""A database as the previous release left it (migrations 0001-0005, its aggregates as they were
then, in tests/legacy/aggregates_0005, materialised over data) upgrades in place: migration 0006
takes sessions' cost from their events, request by request, the session totals are recounted and
the aggregates whose definitions changed are rebuilt, so the query API answers the new basis."""
from __future__ import annotations

import hashlib
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from agent_analytics.sql import migrate as migrate_module
from agent_analytics.sql.migrate import aggregate_definitions, load_migrations, migrate, refresh_aggregates
from tests.conftest import NO_TSDB, TIMESCALEDB
from tests.ingest_support import assert_session_totals_match_the_rows
from tests.rawdata import load_raw_rows, raw_rows

LEGACY = Path(__file__).parent / "legacy" / "aggregates_0005"
BACKEND_CHOICES = ["off", pytest.param("on", marks=pytest.mark.skipif(not TIMESCALEDB, reason=NO_TSDB))]


def _previous_release(url: str, tsdb: str, monkeypatch) -> None:
    """migrate() as the previous release ran it: its migrations and its aggregate definitions."""
    with monkeypatch.context() as m:
        m.setattr(migrate_module, "load_migrations", lambda: [x for x in load_migrations() if x.version <= 5])
        m.setattr(migrate_module, "aggregate_definitions", lambda: {
            name: (LEGACY / f"{name}.sql").read_text() if (LEGACY / f"{name}.sql").exists() else select
            for name, select in aggregate_definitions().items()})
        migrate(url, timescaledb=tsdb, retention_days=0, compress_after_days=0)


@pytest.mark.parametrize("tsdb", BACKEND_CHOICES)
def test_upgrade_prices_sessions_from_their_events(fresh_database, tsdb, monkeypatch):
    assert len(list(LEGACY.glob("*.sql"))) == 18
    _previous_release(fresh_database, tsdb, monkeypatch)
    tool_calls, llm, points = raw_rows(seed=5)
    load_raw_rows(fresh_database, (tool_calls, llm, points), refresh=False)
    t0 = min(r[0] for r in llm)
    # A session that sent only metric points (priced from them), besides the raw rows' sessions,
    # which all sent both.
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
        refresh_aggregates(c)
        old = c.execute("SELECT sum(estimated_cost_usd) FROM llm_usage_hourly WHERE counted").fetchone()[0]
        assert old is None  # the old basis: these sessions' events priced nothing

    report = migrate(fresh_database, timescaledb=tsdb, retention_days=0, compress_after_days=0)
    assert report.applied == ["0006_cost_per_request.sql"]
    rebuilt = {n.split()[1] for n in report.notes if "rebuilt" in n}
    assert rebuilt == {p.stem for p in LEGACY.glob("*.sql")}

    per_session: dict[str, Decimal | None] = {}
    for r in llm:  # r[13]: the estimate, None where unpriced
        before = per_session.get(r[3])
        per_session[r[3]] = before if r[13] is None else (before or Decimal(0)) + r[13]
    per_session["only-points"] = sum(est for _, _, est in only_points)
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
