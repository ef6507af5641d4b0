"""The Security tab's agent enforcement panels, answered by the JSON API from the captured Claude
Code 2.1.332 and Codex 0.171.0 runs (each Claude Code rejection also sent as an interrupt, which
is no block), on both backends: every figure equals what is counted here from the payloads, with
its previous period and under a user filter; the aggregates answer as the raw rows do."""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from tests.harness_support import QUERY_TOKEN, refresh_aggregates
from tests.ingest_support import FIXTURES, fixture_bytes, plain, post

CLAUDE_LOGS = sorted(p.name for p in FIXTURES.glob("claude-code-2.1.332-*-logs-*.pb"))
CODEX_LOGS = sorted(p.name for p in FIXTURES.glob("codex-0.171.0-*-logs-*.pb"))
AUTH = {"Authorization": f"Bearer {QUERY_TOKEN}"}
BLOCKING = {"config", "hook", "user_reject"}


def _shift(rec, days: int) -> None:
    """Move a log record `days` whole days earlier: its time, observed time and event.timestamp."""
    ns = days * 86_400 * 10**9
    rec.time_unix_nano -= ns if rec.time_unix_nano else 0
    rec.observed_time_unix_nano -= ns if rec.observed_time_unix_nano else 0
    for kv in rec.attributes:
        if kv.key == "event.timestamp":
            day = datetime.fromisoformat(kv.value.string_value[:10]) - timedelta(days=days)
            kv.value.string_value = day.date().isoformat() + kv.value.string_value[10:]


def _records(names: list[str], aborts: bool, days_earlier: int = 0) -> tuple[list[bytes], list[dict]]:
    """The payloads to send and every log record's attributes over its resource's (each
    Claude Code rejection also copied as an interrupt when `aborts`), with its time in ns;
    every record moved `days_earlier` whole days back."""
    bodies, events = [], []
    for name in names:
        req = ExportLogsServiceRequest.FromString(fixture_bytes(name))
        for rl in req.resource_logs:
            resource = {kv.key: plain(kv.value) for kv in rl.resource.attributes}
            for sl in rl.scope_logs:
                for rec in list(sl.log_records):
                    if days_earlier:
                        _shift(rec, days_earlier)
                    attrs = {kv.key: plain(kv.value) for kv in rec.attributes}
                    stamp = attrs.get("event.timestamp")  # Codex: its records' time is 0
                    t = rec.time_unix_nano or (int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                                                   * 1e9) if stamp else rec.observed_time_unix_nano)
                    events.append(resource | attrs | {"_ns": t})
                    if aborts and attrs.get("event.name") == "tool_decision" and attrs.get("decision") == "reject":
                        copy = sl.log_records.add()
                        copy.CopyFrom(rec)
                        copy.time_unix_nano += 1_000_000
                        for kv in copy.attributes:
                            if kv.key == "source":
                                kv.value.string_value = "user_abort"
                        events.append(resource | attrs | {"source": "user_abort", "_ns": t + 1_000_000})
        bodies.append(req.SerializeToString())
    return bodies, events


def _user(e: dict) -> str | None:
    for key in ("user.email", "user.account_uuid", "user.account_id", "user.id"):
        if e.get(key):
            return e[key]
    return None


def _tool(e: dict) -> tuple[str | None, str]:
    name = e["tool_name"]
    if name == "mcp_tool":
        params = json.loads(e["tool_parameters"])
        return params["mcp_server_name"], params["mcp_tool_name"]
    return None, name


class Expected:
    """The panels' figures, counted from the payloads' events."""

    def __init__(self, events: list[dict]) -> None:
        by = lambda name: [e for e in events if e.get("event.name") == name]  # noqa: E731
        claude, codex = by("tool_decision"), by("codex.tool_decision")
        sandbox = by("codex.sandbox_outcome")
        # (agent, decision, source, blocked, policy, tool, user) per decision, as the tab names them.
        hooks = {(e["session.id"], e["prompt.id"]): e["hook_name"] for e in by("hook_execution_complete")
                 if int(e["num_blocking"]) > 0}
        self.decisions = []
        for e in claude:
            blocked = e["decision"] == "reject" and e["source"] in BLOCKING
            policy = None
            if blocked:
                hook = hooks.get((e["session.id"], e["prompt.id"])) if e["source"] == "hook" else None
                policy = f"claude_code:hook:{hook}" if hook else f"claude_code:{e['source']}"
            self.decisions.append(("claude-code", e["decision"], e["source"], blocked, policy, _tool(e), _user(e)))
        for e in codex:
            decision = "accept" if e["decision"].startswith("approved") else (
                "reject" if e["decision"] == "denied" else e["decision"])
            policy = ("codex:config" if e["source"].lower() == "config" else "codex:user") \
                if decision == "reject" else None
            self.decisions.append(("codex", decision, e["source"].lower(), policy is not None, policy,
                                   (None, e["tool_name"]), _user(e)))
        for e in sandbox:
            denied = e["outcome"] == "denied"
            self.decisions.append(("codex", e["outcome"], "sandbox", denied, "codex:sandbox" if denied else None,
                                   (None, e["tool_name"]), _user(e)))
        self.blocks = sum(d[3] for d in self.decisions)
        self.hook_blocks = sum(d[3] and d[2] == "hook" for d in self.decisions)
        self.policies = Counter(d[4] for d in self.decisions if d[3])
        self.by_source = Counter((d[0], d[1], d[2]) for d in self.decisions)
        self.blocks_by_source = Counter((d[0], d[1], d[2]) for d in self.decisions if d[3])
        self.by_tool_user = Counter((d[5][1], d[5][0], d[6], d[1], d[2]) for d in self.decisions)
        modes = [(e["permission_mode"], _user(e), e["user.id"], e["session.id"]) for e in claude
                 if e.get("permission_mode")]
        self.mode_sessions = Counter(k[:3] for k in set(modes))
        self.mode_decisions = Counter(k[:3] for k in modes)
        self.bypass = len({k[3] for k in modes if k[0] == "bypassPermissions"})
        failed = [e for e in by("mcp_server_connection") if e["status"] == "failed"]
        self.failures = Counter((e["server_name"], e["error_code"], _user(e)) for e in failed)
        times = [e["_ns"] for e in events]
        self.first, self.last = min(times), max(times)


def _send(client, conn, days_earlier: int = 0) -> Expected:
    claude, claude_events = _records(CLAUDE_LOGS, aborts=True, days_earlier=days_earlier)
    codex, codex_events = _records(CODEX_LOGS, aborts=False, days_earlier=days_earlier)
    for body in claude + codex:
        r = post(client, "/v1/logs", body)
        assert r.status_code == 200 and not r.data, r.data
    refresh_aggregates(conn)
    expected = Expected(claude_events + codex_events)
    # The captures hold every kind the panels show.
    assert expected.hook_blocks == 1 and expected.bypass >= 1 and expected.failures
    assert ("claude-code", "reject", "user_abort") in expected.by_source
    assert ("codex", "denied", "sandbox") in expected.blocks_by_source
    return expected


@pytest.fixture
def sent(client, conn) -> Expected:
    return _send(client, conn)


def _window(e: Expected) -> dict[str, int]:
    """Whole hours around the captures: the aggregates answer them (the edges from raw rows)."""
    start = datetime.fromtimestamp(e.first / 1e9, timezone.utc).replace(minute=0, second=0, microsecond=0)
    return {"from": int(start.timestamp() * 1000), "to": int((start + timedelta(hours=2)).timestamp() * 1000)}


def _rows(client, metric: str, **params) -> list[dict]:
    r = client.get(f"/api/v1/query/{metric}", headers=AUTH, query_string={**params, "page_size": 500})
    assert r.status_code == 200, r.data
    return r.get_json()["rows"]


def test_the_stats_and_their_previous_period(client, sent):
    window = _window(sent)
    for metric, value in (("security_agent_policy_blocks", sent.blocks), ("security_hook_blocks", sent.hook_blocks),
                          ("security_bypass_sessions", sent.bypass),
                          ("security_mcp_connection_failures", sum(sent.failures.values()))):
        [row] = _rows(client, metric, **window)
        assert (row["value"], row["previous"]) == (value, 0), metric
        # The next window: these are its previous period.
        span = window["to"] - window["from"]
        [after] = _rows(client, metric, **{"from": window["to"], "to": window["to"] + span})
        assert (after["value"], after["previous"]) == (0, value), metric
    series = _rows(client, "security_agent_blocks_over_time", **window)
    assert sum(r["current"] for r in series) == sent.blocks


def test_the_tables(client, sent):
    window = _window(sent)
    policies = _rows(client, "security_top_agent_policies", **window)
    assert {r["policy_id"]: r["blocked"] for r in policies} == dict(sent.policies)
    hook = next(r for r in policies if r["policy_id"].startswith("claude_code:hook:"))
    assert "projectSettings" in hook["policy_description"] and hook["renamed"] is False
    by_source = _rows(client, "security_decisions_by_source", **window)
    assert {(r["agent_id"], r["decision"], r["decision_source"]): r["decisions"] for r in by_source} \
        == dict(sent.by_source)
    assert {(r["agent_id"], r["decision"], r["decision_source"]): r["blocked"] for r in by_source if r["blocked"]} \
        == dict(sent.blocks_by_source)
    by_tool = _rows(client, "security_decisions_by_tool_user", **window)
    assert {(r["tool"], r["mcp_server_id"], r["user_id"], r["decision"], r["decision_source"]): r["decisions"]
            for r in by_tool} == dict(sent.by_tool_user)
    modes = _rows(client, "security_permission_modes", **window)
    assert {(r["permission_mode"], r["user_id"], r["agent_instance_id"]): (r["sessions"], r["decisions"])
            for r in modes} == {k: (n, sent.mode_decisions[k]) for k, n in sent.mode_sessions.items()}
    # The riskiest first.
    assert [r["permission_mode"] for r in modes][:1] == ["bypassPermissions"]
    failures = _rows(client, "security_mcp_connection_failures_top", **window)
    assert {(r["mcp_server_id"], r["error_code"], r["user_id"]): r["failures"] for r in failures} \
        == dict(sent.failures)


def test_the_tables_name_their_rows_page_by_page(client, conn, sent):
    """Users, MCP servers and agent instances by their directory names (else their ids, else the
    placeholder), and the pages, one row each, add up to the whole ranked list."""
    window = _window(sent)
    user = next(u for (_, _, u, _, _) in sent.by_tool_user if u)
    server = next((s for (_, s, _), _ in sent.failures.items() if s), None)
    instance = next(i for (_, _, i) in sent.mode_sessions if i)
    conn.execute("UPDATE users SET display_name = 'Ada L.' WHERE id = %s", [user])
    if server:
        conn.execute("INSERT INTO mcp_servers (id, name) VALUES (%s, 'The server') "
                     "ON CONFLICT (id) DO UPDATE SET name = excluded.name", [server])
    conn.execute("UPDATE agent_instances SET name = %s WHERE id = %s", ["Ada's laptop", instance])
    conn.commit()
    for metric, key in (("security_decisions_by_tool_user", "user_id"), ("security_permission_modes", "user_id"),
                        ("security_mcp_connection_failures_top", "user_id")):
        rows = _rows(client, metric, **window)
        pages = []
        for page in range(1, len(rows) + 2):
            r = client.get(f"/api/v1/query/{metric}", headers=AUTH, query_string={**window, "page_size": 1, "page": page})
            assert r.status_code == 200, r.data
            assert r.get_json()["total"] == len(rows), metric
            pages += r.get_json()["rows"]
        assert pages == rows, metric
        for r in rows:
            assert r["user"] == ("Ada L." if r[key] == user else r[key] or "(no user)"), (metric, r)
    for r in _rows(client, "security_permission_modes", **window):
        assert r["agent_instance"] == ("Ada's laptop" if r["agent_instance_id"] == instance
                                       else r["agent_instance_id"] or "(no agent instance)")
    for metric in ("security_decisions_by_tool_user", "security_mcp_connection_failures_top"):
        for r in _rows(client, metric, **window):
            assert r["mcp"] == ("The server" if server and r["mcp_server_id"] == server
                                else r["mcp_server_id"] or "(no MCP server)"), (metric, r)


def test_a_user_filter_narrows_every_panel(client, sent):
    window = _window(sent)
    user = next(d[6] for d in sent.decisions if d[0] == "claude-code" and d[3] and d[2] == "hook")
    [row] = _rows(client, "security_agent_policy_blocks", user=user, **window)
    assert row["value"] == sum(d[3] for d in sent.decisions if d[6] == user)
    [row] = _rows(client, "security_hook_blocks", user=user, **window)
    assert row["value"] == 1
    [row] = _rows(client, "security_bypass_sessions", user=user, **window)
    assert row["value"] == 0  # the hook run was in default mode
    failures = _rows(client, "security_mcp_connection_failures_top", user=user, **window)
    assert failures == []


def _answers(client, metrics: tuple[str, ...], window: dict[str, int]) -> dict[str, dict]:
    out = {}
    for m in metrics:
        r = client.get(f"/api/v1/query/{m}", headers=AUTH, query_string={**window, "page_size": 500})
        assert r.status_code == 200, r.data
        out[m] = r.get_json()
    return out


def _raw_answers(app, client, metrics: tuple[str, ...], window: dict[str, int]) -> dict[str, dict]:
    kept = app.config["AA"]
    app.config["AA"] = kept.replace(read_aggregates=False)
    try:
        return _answers(client, metrics, window)
    finally:
        app.config["AA"] = kept


def test_the_aggregates_answer_as_the_raw_rows(app, client, sent):
    """The same questions with AA_READ_AGGREGATES=0 (every figure from the raw rows); with it on,
    the rollups answer."""
    window = _window(sent)
    metrics = ("security_agent_policy_blocks", "security_hook_blocks", "security_bypass_sessions",
               "security_mcp_connection_failures", "security_agent_blocks_over_time", "security_top_agent_policies",
               "security_decisions_by_source", "security_decisions_by_tool_user", "security_permission_modes",
               "security_mcp_connection_failures_top")

    with_aggregates = _answers(client, metrics, window)
    raw = _raw_answers(app, client, metrics, window)
    for m in metrics:
        assert raw[m]["rows"] == with_aggregates[m]["rows"], m
        assert all(not r.endswith("_hourly") for r in raw[m]["meta"]["relations"]), m
        assert any(r.endswith("_hourly") for r in with_aggregates[m]["meta"]["relations"]), m


def test_whole_days_come_from_the_narrow_daily_rollups(app, client, conn):
    """The captures sent three days back, asked over four days and some hours: the blocks, the
    agents' policies and the decisions come from the decisions' narrow rollups, whole UTC days
    from their daily twins, and every figure is the payloads' and the raw rows'."""
    sent = _send(client, conn, days_earlier=3)
    day = datetime.fromtimestamp(sent.first / 1e9, timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    # Seconds past the minute: the partial minutes at the edges come from the raw rows.
    start = day - timedelta(days=1, hours=2, minutes=17, seconds=5)
    end = day + timedelta(days=2, hours=1, minutes=23, seconds=7)
    window = {"from": int(start.timestamp() * 1000), "to": int(end.timestamp() * 1000)}
    metrics = ("security_agent_policy_blocks", "security_hook_blocks", "security_top_agent_policies",
               "security_decisions_by_source", "security_decisions_by_tool_user", "security_permission_modes",
               "security_bypass_sessions")
    answers = _answers(client, metrics, window)
    raw = _raw_answers(app, client, metrics, window)
    for m in metrics:
        assert answers[m]["rows"] == raw[m]["rows"], m
    rows = {m: answers[m]["rows"] for m in metrics}
    assert rows["security_agent_policy_blocks"][0]["value"] == sent.blocks
    assert rows["security_hook_blocks"][0]["value"] == sent.hook_blocks
    assert {r["policy_id"]: r["blocked"] for r in rows["security_top_agent_policies"]} == dict(sent.policies)
    assert {(r["agent_id"], r["decision"], r["decision_source"]): (r["decisions"], r["blocked"])
            for r in rows["security_decisions_by_source"]} \
        == {k: (n, sent.blocks_by_source[k]) for k, n in sent.by_source.items()}
    assert {(r["tool"], r["mcp_server_id"], r["user_id"], r["decision"], r["decision_source"]): r["decisions"]
            for r in rows["security_decisions_by_tool_user"]} == dict(sent.by_tool_user)
    assert {(r["permission_mode"], r["user_id"], r["agent_instance_id"]): (r["sessions"], r["decisions"])
            for r in rows["security_permission_modes"]} \
        == {k: (n, sent.mode_decisions[k]) for k, n in sent.mode_sessions.items()}
    assert rows["security_bypass_sessions"][0]["value"] == sent.bypass
    for m in ("security_permission_modes", "security_bypass_sessions"):
        assert answers[m]["meta"]["relations"][:2] == ["agent_permission_modes_daily",
                                                       "agent_permission_modes_hourly"], m
    for m in metrics[:4]:
        assert answers[m]["meta"]["relations"][:2] == ["agent_decisions_by_source_daily",
                                                       "agent_decisions_by_source_hourly"], m
    assert answers["security_decisions_by_tool_user"]["meta"]["relations"][:2] == [
        "agent_decisions_by_tool_user_daily", "agent_decisions_by_tool_user_hourly"]
