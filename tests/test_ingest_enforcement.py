"""The agents' own enforcement and health signals (migration 0012), from the captured Claude Code
2.1.332 and Codex 0.171.0 runs: every permission decision by source, tool and user; a hook's
block counted once with the hook as its policy; the permission mode of each session; Codex's
decisions and sandbox denials; MCP server connections and their failures. Stored facts and their
rollups, on both backends. Every expected number is read out of the payloads here."""
from __future__ import annotations

import json
from collections import Counter

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from tests.harness_support import refresh_aggregates
from tests.ingest_support import FIXTURES, fixture_bytes, plain, post

CLAUDE_LOGS = sorted(p.name for p in FIXTURES.glob("claude-code-2.1.332-*-logs-*.pb"))
CODEX_LOGS = sorted(p.name for p in FIXTURES.glob("codex-0.171.0-*-logs-*.pb"))
HOOK_LOGS = sorted(p.name for p in FIXTURES.glob("claude-code-2.1.332-hook-block-logs-*.pb"))
BLOCKING = {"config", "hook", "user_reject"}


def _events(names: list[str]) -> list[dict]:
    """Every log record's attributes over its resource's, in arrival order."""
    out = []
    for name in names:
        for rl in ExportLogsServiceRequest.FromString(fixture_bytes(name)).resource_logs:
            resource = {kv.key: plain(kv.value) for kv in rl.resource.attributes}
            out += [resource | {kv.key: plain(kv.value) for kv in rec.attributes}
                    for sl in rl.scope_logs for rec in sl.log_records]
    return out


def _user(e: dict) -> str | None:
    # The sender's user: the email where signed in, else the account, else Claude Code's install hash.
    for key in ("user.email", "user.account_uuid", "user.account_id", "user.id"):
        if e.get(key):
            return e[key]
    return None


def _tool(e: dict) -> tuple[str | None, str]:
    """(MCP server, tool): an MCP tool as its event names it (Claude Code writes `mcp_tool` and the
    names in tool_parameters, or mcp__<server>__<tool>); a built-in tool by its name."""
    name = e["tool_name"]
    if name == "mcp_tool":
        params = json.loads(e["tool_parameters"])
        return params["mcp_server_name"], params["mcp_tool_name"]
    if name.startswith("mcp__"):
        server, tool = name[len("mcp__"):].split("__", 1)
        return server, tool
    return None, name


def _with_aborts(name: str, copies: list) -> bytes:
    """The payload with each rejection also sent once as an interrupt (source user_abort), as
    Claude Code reports a tool the user stopped."""
    req = ExportLogsServiceRequest.FromString(fixture_bytes(name))
    for rl in req.resource_logs:
        for sl in rl.scope_logs:
            for rec in list(sl.log_records):
                attrs = {kv.key: kv.value.string_value for kv in rec.attributes}
                if attrs.get("event.name") == "tool_decision" and attrs.get("decision") == "reject":
                    copy = sl.log_records.add()
                    copy.CopyFrom(rec)
                    copy.time_unix_nano += 1_000_000
                    for kv in copy.attributes:
                        if kv.key == "source":
                            kv.value.string_value = "user_abort"
                    copies.append({kv.key: kv.value.string_value for kv in copy.attributes})
    return req.SerializeToString()


def _post_all(client) -> list[dict]:
    """Post every capture, each Claude Code rejection also as an interrupt; returns those copies."""
    aborts: list[dict] = []
    for name in CLAUDE_LOGS:
        r = post(client, "/v1/logs", _with_aborts(name, aborts))
        assert r.status_code == 200 and not r.data, (name, r.data)
    for name in CODEX_LOGS:
        r = post(client, "/v1/logs", fixture_bytes(name))
        assert r.status_code == 200 and not r.data, (name, r.data)
    return aborts


def _decisions_expected(aborts: list) -> Counter:
    claude = [e for e in _events(CLAUDE_LOGS) if e.get("event.name") == "tool_decision"] + aborts
    return Counter(("claude_code", e["decision"], e["source"], *_tool(e), _user(e)) for e in claude)


def test_every_decision_is_stored_once_by_source_tool_and_user(client, conn):
    aborts = _post_all(client)
    expected = _decisions_expected(aborts)
    # The captures hold every kind this is about.
    sources = {(k[1], k[2]) for k in expected}
    assert {("reject", "config"), ("reject", "hook"), ("reject", "user_reject"), ("accept", "user_temporary"),
            ("accept", "config"), ("reject", "user_abort")} <= sources
    assert any(k[3] for k in expected), "an MCP tool among them"
    rows = conn.execute("SELECT source, outcome, decision_source, mcp_server_id, tool_name, user_id, blocked"
                        " FROM agent_enforcement WHERE kind = 'decision' AND source = 'claude_code'").fetchall()
    assert Counter(r[:6] for r in rows) == expected
    # Blocks: rejections by config, a hook or the user; an interrupt is none.
    assert all(r[6] == (r[1] == "reject" and r[2] in BLOCKING) for r in rows)
    assert not any(r[6] for r in rows if r[2] == "user_abort")

    # Sent again (an exporter's retry): nothing is stored twice.
    assert _post_all(client) == aborts
    assert conn.execute("SELECT count(*) FROM agent_enforcement WHERE kind = 'decision' AND source = 'claude_code'"
                        ).fetchone()[0] == sum(expected.values())

    # The rollup holds the same, by the same keys.
    refresh_aggregates(conn)
    rolled = conn.execute("SELECT source, outcome, decision_source, mcp_server_id, tool_name, user_id, sum(events)"
                          " FROM agent_decisions_hourly WHERE kind = 'decision' AND source = 'claude_code'"
                          " GROUP BY 1, 2, 3, 4, 5, 6").fetchall()
    assert {r[:6]: r[6] for r in rolled} == dict(expected)


def test_a_hook_block_is_one_block_with_the_hook_as_its_policy(client, conn):
    events = _events(HOOK_LOGS)
    blocking_runs = [e for e in events if e.get("event.name") == "hook_execution_complete"
                     and int(e["num_blocking"]) > 0]
    rejections = [e for e in events if e.get("event.name") == "tool_decision" and e.get("source") == "hook"]
    registered = [e for e in events if e.get("event.name") == "hook_registered"]
    # The capture: one blocking run, one rejection by the hook, of the same prompt.
    assert len(blocking_runs) == len(rejections) == 1 and registered
    assert blocking_runs[0]["prompt.id"] == rejections[0]["prompt.id"]
    hook = blocking_runs[0]["hook_name"]  # "<hook event>:<matcher>"
    event, matcher = hook.split(":", 1)
    assert (event, matcher) == (registered[0]["hook_event"], registered[0]["hook_matcher"])

    for name in HOOK_LOGS:
        assert post(client, "/v1/logs", fixture_bytes(name)).status_code == 200
    blocks = conn.execute("SELECT tool_name, decision_source, policy_id, policy_name, user_id, session_id"
                          " FROM agent_enforcement WHERE blocked").fetchall()
    # Counted once: the hook run and its rejection are one block.
    assert blocks == [(rejections[0]["tool_name"], "hook", f"claude_code:hook:{hook}",
                       f"Claude Code hook {hook}", _user(rejections[0]), rejections[0]["session.id"])]
    name, description = conn.execute("SELECT name, description FROM policies WHERE id = %s",
                                     (f"claude_code:hook:{hook}",)).fetchone()
    # The directory says where the hook was configured and what it matches.
    assert name == f"Claude Code hook {hook}"
    assert registered[0]["hook_source"] in description and matcher in description and event in description
    # The run that passed made nothing; the accept that followed it is a decision, no block.
    assert conn.execute("SELECT count(*) FROM agent_enforcement").fetchone()[0] == sum(
        1 for e in events if e.get("event.name") == "tool_decision")


def test_permission_modes_by_session_user_and_agent_instance(client, conn):
    aborts = _post_all(client)
    decisions = [e for e in _events(CLAUDE_LOGS) if e.get("event.name") == "tool_decision"] + aborts
    expected = Counter((e["permission_mode"], e["session.id"], _user(e), e["user.id"]) for e in decisions
                       if e.get("permission_mode"))
    assert {k[0] for k in expected} >= {"default", "acceptEdits", "bypassPermissions"}
    refresh_aggregates(conn)
    rows = conn.execute("SELECT permission_mode, session_id, user_id, agent_instance_id, sum(events)"
                        " FROM agent_permission_modes_hourly GROUP BY 1, 2, 3, 4").fetchall()
    assert {r[:4]: r[4] for r in rows} == dict(expected)
    bypass = {k[1] for k in expected if k[0] == "bypassPermissions"}
    assert conn.execute("SELECT count(DISTINCT session_id) FROM agent_permission_modes_hourly"
                        " WHERE permission_mode = 'bypassPermissions'").fetchone()[0] == len(bypass) >= 1


def test_codex_decisions_and_sandbox_denials_are_enforcement(client, conn):
    _post_all(client)
    events = _events(CODEX_LOGS)
    decisions = [e for e in events if e.get("event.name") == "codex.tool_decision"]
    sandbox = [e for e in events if e.get("event.name") == "codex.sandbox_outcome"]
    results = {e["call_id"]: e for e in events if e.get("event.name") == "codex.tool_result"}
    denied = [e for e in sandbox if e["outcome"] == "denied"]
    # The capture: the sandbox refused a command whose tool_result says success.
    assert denied and all(results[e["call_id"]]["success"] == "true" for e in denied)
    accepts = Counter((e["tool_name"], e["source"].lower()) for e in decisions if e["decision"].startswith("approved"))
    rows = conn.execute("SELECT kind, tool_name, outcome, decision_source, blocked, policy_id, session_id"
                        " FROM agent_enforcement WHERE source = 'codex'").fetchall()
    assert Counter((r[1], r[3]) for r in rows if r[0] == "decision" and r[2] == "accept") == accepts
    assert len([r for r in rows if r[0] == "decision"]) == len(decisions)
    assert sorted((r[1], r[2], r[4], r[5], r[6]) for r in rows if r[0] == "sandbox") == sorted(
        (e["tool_name"], e["outcome"], e["outcome"] == "denied", "codex:sandbox" if e["outcome"] == "denied" else None,
         e["conversation.id"]) for e in sandbox)
    refresh_aggregates(conn)
    assert conn.execute("SELECT sum(events) FROM agent_decisions_hourly WHERE source = 'codex' AND blocked"
                        ).fetchone()[0] == len(denied) + sum(e["decision"] == "denied" for e in decisions)


def test_mcp_server_connection_failures_by_server_error_code_and_user(client, conn):
    _post_all(client)
    connections = [e for e in _events(CLAUDE_LOGS) if e.get("event.name") == "mcp_server_connection"]
    failures = Counter((e["server_name"], e["error_code"], _user(e)) for e in connections if e["status"] == "failed")
    # The capture: three servers failing three ways, one of them retried.
    assert len({k[0] for k in failures}) == 3 and max(failures.values()) > 1
    refresh_aggregates(conn)
    rows = conn.execute("SELECT mcp_server_id, error_code, user_id, sum(events) FROM mcp_connections_hourly"
                        " WHERE outcome = 'failed' GROUP BY 1, 2, 3").fetchall()
    assert {r[:3]: r[3] for r in rows} == dict(failures)
    statuses = Counter(e["status"] for e in connections)
    assert dict(conn.execute("SELECT outcome, sum(events) FROM mcp_connections_hourly GROUP BY 1").fetchall()) \
        == dict(statuses)
    # The servers are in the directory, for the MCP filter.
    assert {k[0] for k in failures} <= {r[0] for r in conn.execute("SELECT id FROM mcp_servers")}
