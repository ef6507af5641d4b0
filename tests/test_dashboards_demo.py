"""The demo command: a deterministic plan, a directory document the directory API accepts, and
the command line sending it through a real port (refused loudly with a wrong token)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("agent_analytics.ingest.http")

from agent_analytics import demo  # noqa: E402
from agent_analytics.cli import main  # noqa: E402
from agent_analytics.ingest.directory import DocumentSchema  # noqa: E402
from tests.harness_support import INGEST_TOKEN  # noqa: E402
from tests.ingest_support import Server  # noqa: E402

NOW = datetime(2026, 3, 18, 15, 42, tzinfo=timezone.utc)


def test_plan_is_deterministic_and_covers_every_dimension():
    a, b = demo.plan(now=NOW), demo.plan(now=NOW + timedelta(minutes=10))
    assert a.counts() == b.counts() and [s.id for s in a.sessions] == [s.id for s in b.sessions]
    assert demo.plan(now=NOW, seed=8).counts() != a.counts()
    assert all(a.now - timedelta(days=30) <= s.start and s.end <= a.now for s in a.sessions)
    assert {s.agent for s in a.sessions} == {"claude-code", "codex"}
    outcomes = {c.outcome for s in a.sessions for c in s.tool_calls}
    assert outcomes == {"ok", "error", "blocked"}
    assert {c.policy for s in a.sessions for c in s.tool_calls if c.policy} == set(demo.POLICIES)
    assert {(c.server) for s in a.sessions for c in s.tool_calls} == set(demo.MCP_SERVERS)
    # Work happens on most days, and at many hours of the day (UTC).
    assert len({s.start.date() for s in a.sessions}) >= 20
    assert len({c.start.hour for s in a.sessions for c in s.tool_calls}) >= 12
    assert a.counts()["users"] == 12 and len({s.user.id for s in a.sessions}) == 12


def test_directory_document_is_valid_for_the_directory_api():
    doc = demo.plan(now=NOW).directory
    loaded = DocumentSchema().load(doc)
    assert {g["id"] for g in loaded["groups"]} == set(demo.GROUPS)
    assert all(g["members"] for g in loaded["groups"])
    assert all(a["tags"] for a in loaded["agents"]) and all(s["tags"] for s in loaded["mcp_servers"])
    assert any(t["tags"] for t in loaded["tools"])
    instances = {i["id"] for i in loaded["agent_instances"]}
    assert {s.instance for s in demo.plan(now=NOW).sessions} <= instances
    # A budget of every scope, the attribute one on a team some users' machines send.
    assert {b["scope"] for b in loaded["budgets"]} == {"organisation", "group", "user", "attribute"}
    [team] = [b for b in loaded["budgets"] if b["scope"] == "attribute"]
    assert any(s.user.resource.get("team.id") == team["target"] for s in demo.plan(now=NOW).sessions)


def test_cli_sends_the_demo_and_refuses_a_wrong_token(app, conn, capsys):
    with Server(app) as server:
        with pytest.raises(SystemExit) as exc:
            main(["demo", "--endpoint", server.url, "--token", "not-a-token", "--days", "2", "--users", "2"])
        assert "401" in str(exc.value)
        assert conn.execute("SELECT count(*) FROM llm_requests").fetchone()[0] == 0
        before = demo.plan(days=3, users=3).counts()
        assert main(["demo", "--endpoint", server.url, "--token", INGEST_TOKEN, "--days", "3", "--users", "3"]) == 0
        after = demo.plan(days=3, users=3).counts()  # the same unless the hour turned meanwhile
    stored = (conn.execute("SELECT count(*) FROM llm_requests").fetchone()[0],
              conn.execute("SELECT count(*) FROM tool_calls").fetchone()[0])
    assert stored in {(c["llm_requests"], c["tool_calls"]) for c in (before, after)}
    out = capsys.readouterr().out
    assert "demo: sent" in out and "sessions of 3 users over 3 days" in out


def test_sending_the_same_demo_twice_stores_it_once(app, conn):
    """The plan is anchored on the hour and seeded, so a rerun sends the very same records and
    the receiver's content keys absorb them."""
    now = datetime.now(timezone.utc)
    p = demo.plan(days=2, users=2, seed=11, now=now)
    with Server(app) as server:
        demo.send(p, server.url, INGEST_TOKEN, say=lambda s: None)
        first = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                 for t in ("llm_requests", "tool_calls", "metric_points")]
        demo.send(demo.plan(days=2, users=2, seed=11, now=now), server.url, INGEST_TOKEN, say=lambda s: None)
        second = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("llm_requests", "tool_calls", "metric_points")]
    assert first == second
    assert first[:2] == [p.counts()["llm_requests"], p.counts()["tool_calls"]]
    assert first[2] > 0


def test_demo_defaults_to_this_installations_address_port_and_first_token(app, conn, capsys, monkeypatch):
    """`agent-analytics demo` with no --endpoint or --token sends where `up` listens: AA_HOST (a
    wildcard address reached on loopback), a changed AA_INGEST_PORT and the first ingest token."""
    with Server(app) as server:
        assert server.port != 4318
        monkeypatch.setenv("AA_HOST", "0.0.0.0")
        monkeypatch.setenv("AA_INGEST_PORT", str(server.port))
        monkeypatch.setenv("AA_INGEST_TOKENS", f"{INGEST_TOKEN},a-second-token")
        before = demo.plan(days=2, users=2).counts()
        assert main(["demo", "--days", "2", "--users", "2"]) == 0
        after = demo.plan(days=2, users=2).counts()
    stored = (conn.execute("SELECT count(*) FROM llm_requests").fetchone()[0],
              conn.execute("SELECT count(*) FROM tool_calls").fetchone()[0])
    assert stored in {(c["llm_requests"], c["tool_calls"]) for c in (before, after)}
    assert stored[0] > 0 and stored[1] > 0
    assert f"to http://127.0.0.1:{server.port}" in capsys.readouterr().out


def test_demo_without_a_token_anywhere_says_where_to_give_one(monkeypatch):
    monkeypatch.delenv("AA_INGEST_TOKENS", raising=False)
    monkeypatch.delenv("AA_ALLOW_NO_AUTH", raising=False)
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--days", "1", "--users", "1"])
    assert "--token" in str(exc.value) and "AA_INGEST_TOKENS" in str(exc.value)
