"""Team attribution at ingest: the resource attributes a process was started with
(OTEL_RESOURCE_ATTRIBUTES: department, team.id, cost_center) become the attribution columns of
the LLM requests, tool calls and metric points it sends (Claude Code copies them onto its metric
points as well as its events: both are attributed); AA_ATTRIBUTION chooses the attributes; a
process that sends none is unattributed (NULL), never dropped; a database stored before the
columns existed is attributed from the attributes its facts kept."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from agent_analytics.config import ATTRIBUTION, Config, ConfigError, attribution
from agent_analytics.ingest import normalise
from agent_analytics.ingest.rows import Context
from agent_analytics.ingest.store import store
from agent_analytics.sql import migrate as migrate_module
from agent_analytics.sql.migrate import AGGREGATES, aggregate_definitions, load_migrations, migrate
from agent_analytics.sql.rollups import ATTRIBUTION as ATTRIBUTION_KEYS
from agent_analytics.sql.rollups import PRODUCTIVITY_FULL, PRODUCTIVITY_METRICS, PRODUCTIVITY_PER_USER, ROLLUPS
from tests.harness_support import NO_TSDB, TIMESCALEDB, refresh_aggregates
from tests.rollups_support import ADDED_BY
from tests.ingest_support import (CLAUDE_LOGS, fixture_bytes, logs_fixture, metrics_fixture, plain, post,
                                  set_value)

SCENARIO = "claude-code-2.1.332-edits-commit-pr"
LOGS = [f"{SCENARIO}-logs-{i}.pb" for i in (1, 2)]
METRICS = [f"{SCENARIO}-metrics-{i}.pb" for i in (1, 2)]
MCP_LOGS = "claude-code-2.1.332-mcp-connection-failures-logs-3.pb"
CODEX = "codex-0.171.0-escalation-rejected-logs-1.pb"
COLUMNS = ", ".join(d.name for d in ATTRIBUTION)


def _resource(request) -> dict:
    """The fixture's resource attributes, read out of the protobuf."""
    resources = getattr(request, "resource_logs", None) or request.resource_metrics
    return {kv.key: plain(kv.value) for kv in resources[0].resource.attributes}


def _expected(resource: dict) -> tuple:
    return tuple(resource.get(d.attribute) for d in ATTRIBUTION)


def _rows(conn, table: str, where: str = "TRUE", *params) -> set[tuple]:
    return set(conn.execute(f"SELECT {COLUMNS} FROM {table} WHERE {where}", params).fetchall())


def test_events_and_metric_points_carry_the_resource_attributes(client, conn):
    for name in LOGS:
        assert post(client, "/v1/logs", fixture_bytes(name)).status_code == 200
    for name in METRICS:
        assert post(client, "/v1/metrics", fixture_bytes(name)).status_code == 200
    want = _expected(_resource(logs_fixture(LOGS[0])))
    assert want == ("eng", "platform", "cc-42")  # (the capture's OTEL_RESOURCE_ATTRIBUTES)
    assert _expected(_resource(metrics_fixture(METRICS[0]))) == want
    assert conn.execute("SELECT count(*) FROM llm_requests").fetchone()[0] > 0
    assert conn.execute("SELECT count(*) FROM metric_points").fetchone()[0] > 0
    assert _rows(conn, "llm_requests") == {want}
    # What the spend bought too (migration 0018): Claude Code's productivity points.
    assert conn.execute("SELECT count(*) FROM productivity_points").fetchone()[0] > 0
    assert _rows(conn, "productivity_points") == {want}
    assert _rows(conn, "metric_points") == {want}


def test_mcp_tool_calls_and_codex_requests_are_attributed(client, conn):
    assert post(client, "/v1/logs", fixture_bytes(MCP_LOGS)).status_code == 200
    assert post(client, "/v1/logs", fixture_bytes(CODEX)).status_code == 200
    assert conn.execute("SELECT count(*) FROM tool_calls").fetchone()[0] > 0
    assert _rows(conn, "tool_calls") == {_expected(_resource(logs_fixture(MCP_LOGS)))}
    assert _rows(conn, "llm_requests", "source = 'codex'") == {_expected(_resource(logs_fixture(CODEX)))}


def test_a_process_without_the_attributes_is_unattributed_not_dropped(client, conn):
    for name in CLAUDE_LOGS:  # Claude Code 2.1.328, started without OTEL_RESOURCE_ATTRIBUTES
        assert post(client, "/v1/logs", fixture_bytes(name)).status_code == 200
    events = sum(1 for name in CLAUDE_LOGS for rl in logs_fixture(name).resource_logs for sl in rl.scope_logs
                 for rec in sl.log_records if rec.body.string_value == "claude_code.api_request")
    assert conn.execute("SELECT count(*) FROM llm_requests").fetchone()[0] == events > 0
    assert _rows(conn, "llm_requests") == {(None,) * len(ATTRIBUTION)}


def test_the_configured_attribute_names_are_read():
    req = metrics_fixture(METRICS[0])
    resource = _resource(req)
    ctx = Context(now_ns=time.time_ns(), attribution=attribution("team=department, cost_center="))
    batch = normalise.normalise("metrics", req, ctx)
    assert batch.metric_points and not batch.rejections
    assert {p.attribution for p in batch.metric_points} == {(resource["department"], resource["department"], None)}
    cfg = Config.from_env({"AA_ATTRIBUTION": "team=squad"})
    assert dict(cfg.attribution) == {"department": "department", "team": "squad", "cost_center": "cost_center"}
    assert dict(Config.from_env({}).attribution) == {d.name: d.attribute for d in ATTRIBUTION}
    for bad in ("squad", "tribe=squad"):
        with pytest.raises(ConfigError, match="AA_ATTRIBUTION"):
            Config.from_env({"AA_ATTRIBUTION": bad})


def test_odd_values_are_unattributed_and_unstorable_ones_rejected_alone():
    req = logs_fixture(LOGS[0])
    records = [rec for rl in req.resource_logs for sl in rl.scope_logs for rec in sl.log_records
               if rec.body.string_value == "claude_code.api_request"]
    assert len(records) >= 2
    # The record's own attribute wins over the resource's: an array is no name, a NUL cannot be stored.
    for rec, value in ((records[0], ["a", "b"]), (records[1], "pla\x00tform")):
        kv = next(kv for kv in rec.attributes if kv.key == "team.id")
        set_value(kv.value, value)
    batch = normalise.normalise("logs", req, Context(now_ns=time.time_ns()))
    assert [r.reason for r in batch.rejections] == ["team.id contains a NUL character"]
    teams = [r.attribution[1] for r in batch.llm_requests]
    assert teams.count(None) == 1 and len(teams) == len(records) - 1


# ---- upgrade ---------------------------------------------------------------------------------

BACKEND_CHOICES = ["off", pytest.param("on", marks=pytest.mark.skipif(not TIMESCALEDB, reason=NO_TSDB))]
# The attributed rollups' aggregates, every width (the per-minute twins included).
_ATTRIBUTED = {r.name for r in ROLLUPS if set(ATTRIBUTION_KEYS) <= set(r.keys)}
_NEW = {a for a in AGGREGATES if any(a.startswith(f"{name}_") for name in _ATTRIBUTED)}
_VERSION = next(m.version for m in load_migrations() if m.name.endswith("_attribution.sql"))


@pytest.mark.parametrize("tsdb", BACKEND_CHOICES)
def test_upgrade_attributes_the_stored_facts_from_their_attributes(fresh_database, tsdb, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(migrate_module, "load_migrations", lambda: [x for x in load_migrations() if x.version < _VERSION])
        m.setattr(migrate_module, "aggregate_definitions",
                  lambda: {n: s for n, s in aggregate_definitions().items() if n not in _NEW})
        migrate(fresh_database, timescaledb=tsdb, retention_days=0, compress_after_days=0)
    t0 = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    # (attributes as stored, the columns expected): the default attribute names; a number is a
    # name, an empty string or a map is not.
    cases = [({"team.id": "platform", "department": "eng", "cost_center": "cc-42"}, ("eng", "platform", "cc-42")),
             ({"team.id": 7}, (None, "7", None)),
             ({"team.id": "", "department": {"a": 1}}, (None, None, None)),
             ({"user.id": "x"}, (None, None, None))]
    with psycopg.connect(fresh_database, autocommit=True) as c:
        for i, (attrs, _) in enumerate(cases):
            key = hashlib.sha256(f"r{i}".encode()).digest()
            c.execute("INSERT INTO llm_requests (time, source_key, source, session_id, user_id, provider, model,"
                      " input_tokens, attributes) VALUES (%s, %s, 'claude_code', 's', 'u', 'anthropic', 'm', %s, %s)",
                      (t0 + timedelta(minutes=i), key, 10 * (i + 1), json.dumps(attrs)))
            c.execute("INSERT INTO tool_calls (time, source_key, source, user_id, tool_name, outcome, attributes)"
                      " VALUES (%s, %s, 'claude_code', 'u', 't', 'ok', %s)", (t0 + timedelta(minutes=i), key,
                                                                             json.dumps(attrs)))
        c.execute("INSERT INTO metric_points (time, source_key, source, session_id, provider, model, metric,"
                  " token_type, value) VALUES (%s, %s, 'claude_code', 's', 'anthropic', 'm', 'tokens', 'output', 5)",
                  (t0, b"p"))
        refresh_aggregates(c, [n for n in aggregate_definitions() if n not in _NEW])
        before = c.execute("SELECT sum(input_tokens) FROM llm_usage_hourly").fetchone()[0]

    report = migrate(fresh_database, timescaledb=tsdb, retention_days=0, compress_after_days=0)
    assert [n for n in report.applied if n.endswith("_attribution.sql")]
    assert set(report.created_aggregates) >= _NEW
    with psycopg.connect(fresh_database, autocommit=True) as c:
        refresh_aggregates(c)
        for table in ("llm_requests", "tool_calls"):
            got = [tuple(r) for r in c.execute(f"SELECT {COLUMNS} FROM {table} ORDER BY time").fetchall()]
            assert got == [want for _, want in cases], table
        assert c.execute(f"SELECT {COLUMNS} FROM metric_points").fetchall() == [(None, None, None)]
        # Nothing lost: the old aggregate as it was, the new one from the same rows, by team.
        assert c.execute("SELECT sum(input_tokens) FROM llm_usage_hourly").fetchone()[0] == before
        by_team = dict(c.execute("SELECT team, sum(input_tokens) FROM llm_usage_attributed_hourly"
                                 " GROUP BY team").fetchall())
        assert by_team == {"platform": 10, "7": 20, None: 30 + 40}


# The productivity rollups as migration 0018 found them: without the attribution keys.
_PRODUCTIVITY_BEFORE = [replace(r, keys=tuple(k for k in r.keys if k not in ATTRIBUTION_KEYS))
                        for r in (PRODUCTIVITY_FULL, PRODUCTIVITY_PER_USER)]
_PRODUCTIVITY_VERSION = next(m.version for m in load_migrations() if m.name.endswith("_productivity_attribution.sql"))
# Declared since over the columns migration 0018 adds: not there before it.
_OVER_0018 = frozenset(a for a in ADDED_BY["by-attribution"] if a.startswith("productivity_"))


@pytest.mark.parametrize("tsdb", BACKEND_CHOICES)
def test_upgrade_keeps_the_stored_productivity_points_unattributed(fresh_database, tsdb, monkeypatch):
    """Productivity points stored before migration 0018 kept no attributes: they stay, NULL in
    every dimension, and the rollups rebuilt with the dimensions as keys hold the same sums;
    points received afterwards are attributed."""
    before = {a.name: a.select for r in _PRODUCTIVITY_BEFORE for a in (r.at(w) for w in r.widths)}
    assert set(before) == {a for a in AGGREGATES if a.startswith(("productivity_hourly", "productivity_minutely",
                                                                    "productivity_per_user_"))}
    with monkeypatch.context() as m:
        m.setattr(migrate_module, "load_migrations",
                  lambda: [x for x in load_migrations() if x.version < _PRODUCTIVITY_VERSION])
        m.setattr(migrate_module, "aggregate_definitions",
                  lambda: {**{k: v for k, v in aggregate_definitions().items() if k not in _OVER_0018}, **before})
        migrate(fresh_database, timescaledb=tsdb, retention_days=0, compress_after_days=0)
    ctx = Context(now_ns=time.time_ns())
    stored, later = (normalise.normalise("metrics", metrics_fixture(n), ctx).productivity_points for n in METRICS)
    assert stored and later and all(p.attribution == ("eng", "platform", "cc-42") for p in stored + later)
    old_columns = ("time", "start_time", "source_key", "source", "session_id", "user_id", "agent_id", "model", "metric",
                   "language", "tool_name", "decided_by", "activity", "value")
    sums = "SELECT user_id, model, sum(lines_added), sum(commits), sum(edits_accepted) FROM {} GROUP BY 1, 2 ORDER BY 1, 2"
    with psycopg.connect(fresh_database, autocommit=True) as c:
        with c.cursor().copy(f"COPY productivity_points ({', '.join(old_columns)}) FROM STDIN") as cp:
            for p in stored:
                cp.write_row((datetime.fromtimestamp(p.time_ns / 1e9, timezone.utc),
                              p.start_time_ns and datetime.fromtimestamp(p.start_time_ns / 1e9, timezone.utc),
                              p.source_key, p.source, p.session_id, p.user_id, p.agent_id, p.model, p.metric,
                              p.language, p.tool_name, p.decided_by, p.activity, p.value))
        refresh_aggregates(c, sorted(set(aggregate_definitions()) - _OVER_0018))
        kept = {a: c.execute(sums.format(a)).fetchall() for a in ("productivity_hourly", "productivity_per_user_daily")}
        assert all(kept.values()), kept

    report = migrate(fresh_database, timescaledb=tsdb, retention_days=0, compress_after_days=0)
    assert report.applied == ["0018_productivity_attribution.sql"] + [
        m.name for m in load_migrations() if m.version > _PRODUCTIVITY_VERSION]
    assert set(before) <= set(report.created_aggregates)  # rebuilt: their definition changed
    with psycopg.connect(fresh_database, autocommit=True) as c:
        refresh_aggregates(c)
        assert c.execute(f"SELECT DISTINCT {COLUMNS} FROM productivity_points").fetchall() == [(None, None, None)]
        for name, rows in kept.items():  # nothing lost: the same sums, from the same rows, unattributed
            assert c.execute(sums.format(name)).fetchall() == rows, name
            assert c.execute(f"SELECT DISTINCT {COLUMNS} FROM {name}").fetchall() == [(None, None, None)], name
        batch = normalise.normalise("metrics", metrics_fixture(METRICS[1]), ctx)
        store(c, batch)
        refresh_aggregates(c)
        every = " + ".join(f"coalesce(sum({m}), 0)" for m in PRODUCTIVITY_METRICS)
        got = dict(c.execute(f"SELECT team, {every} FROM productivity_per_user_daily GROUP BY 1").fetchall())
        assert got == {None: sum(p.value for p in stored), "platform": sum(p.value for p in later)}
