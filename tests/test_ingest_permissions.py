"""Claude Code's permission decisions, from the captured 2.1.332 runs: which rejections are
blocks, and the policy recorded for each says what happened (a rule or a tool not allowed, the
hook that blocked, the user), never "deny list"; an interrupt (`user_abort`) is no block.

The captures' tools are built-in ones (Bash, Write), which are not tool calls: the test renames
each decision's tool to an MCP tool (`mcp__<server>__<tool>`), keeping everything else as
captured. Expected counts are read out of the payloads here."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import psycopg
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from agent_analytics.sql.migrate import migrate
from tests.harness_support import QUERY_TOKEN, refresh_aggregates
from tests.ingest_support import PERMISSION_LOGS, as_mcp, fixture_bytes, plain, post, record_attr

def _events(event: str) -> list[dict]:
    out = []
    for name in PERMISSION_LOGS:
        req = ExportLogsServiceRequest.FromString(fixture_bytes(name))
        for rl in req.resource_logs:
            for sl in rl.scope_logs:
                for rec in sl.log_records:
                    if record_attr(rec, "event.name") == event:
                        out.append({kv.key: plain(kv.value) for kv in rec.attributes} | {"time": rec.time_unix_nano})
    return out


def _decisions() -> list[dict]:
    return _events("tool_decision")


def _policy(source: str) -> str:
    """The policy of a block from `source`: a hook's own (named by its blocking run), else by source."""
    if source == "hook":
        [hook] = {e["hook_name"] for e in _events("hook_execution_complete") if int(e["num_blocking"]) > 0}
        return f"claude_code:hook:{hook}"
    return f"claude_code:{source}"


def test_each_rejection_is_recorded_with_what_happened(client, conn):
    decisions = _decisions()
    sources = Counter((d["decision"], d["source"]) for d in decisions)
    # The captures hold every kind this test is about.
    assert sources[("reject", "config")] >= 2 and sources[("reject", "hook")] >= 1
    assert sources[("reject", "user_reject")] >= 1 and sources[("accept", "user_temporary")] >= 1
    # -p: `touch` has no rule at all, and reads reject/config exactly like the curl deny rule.
    no_rule = [d for d in decisions if d["decision"] == "reject" and d["source"] == "config"
               and "(no rule)" in d.get("tool_parameters", "")]
    assert no_rule, "the -p run rejects a tool that no rule names"

    aborts: list = []
    for name in PERMISSION_LOGS:
        r = post(client, "/v1/logs", as_mcp(name, aborts))
        assert r.status_code == 200 and not r.data, r.data
    assert aborts

    blocking = {"config", "hook", "user_reject"}
    expected = Counter(d["source"] for d in decisions if d["decision"] == "reject" and d["source"] in blocking)
    rows = conn.execute("SELECT policy_id, policy_name, policy_description, tool_name FROM tool_calls"
                        " WHERE outcome = 'blocked'").fetchall()
    assert Counter(r[0] for r in rows) == Counter({_policy(s): n for s, n in expected.items()})
    names = {r[0]: (r[1], r[2]) for r in rows}
    assert "deny list" not in " ".join(f"{n} {d}" for n, d in names.values())
    config_name, config_description = names["claude_code:config"]
    assert "not allowed" in config_name and "deny rule" in config_description and "no allow rule" in config_description
    assert "hook" in names[_policy("hook")][0].lower()
    assert "user rejected" in names["claude_code:user_reject"][0].lower()
    # The tools rejected for having no rule are among the config blocks.
    config_tools = Counter(r[3] for r in rows if r[0] == "claude_code:config")
    assert all(config_tools[d["tool_name"]] >= 1 for d in no_rule)
    # Interrupts are no blocks: nothing was stored for them.
    assert len(rows) == sum(expected.values())
    # The directory's policies carry the same names, and the Security tab shows them.
    assert dict(conn.execute("SELECT id, name FROM policies").fetchall()) == {p: n for p, (n, _) in names.items()}
    refresh_aggregates(conn)
    times = [d["time"] for d in decisions]
    window = {"from": int((datetime.fromtimestamp(min(times) / 1e9, timezone.utc) - timedelta(hours=1)).timestamp() * 1000),
              "to": int((datetime.fromtimestamp(max(times) / 1e9, timezone.utc) + timedelta(hours=1)).timestamp() * 1000)}
    auth = {"Authorization": f"Bearer {QUERY_TOKEN}"}
    top = client.get("/api/v1/query/security_top_policies", query_string=window, headers=auth).get_json()["rows"]
    assert {(t["policy_id"], t["policy_name"], t["blocked"], t["renamed"]) for t in top} == {
        (_policy(s), names[_policy(s)][0], n, False) for s, n in expected.items()}


def test_the_first_sight_policy_text_is_replaced_by_the_migration(fresh_database):
    """A database whose Claude Code policy rows still hold the first-sight "deny list" text gets
    the new text; a curated row is left alone."""
    migrate(fresh_database, timescaledb="off", upto=6)
    with psycopg.connect(fresh_database, autocommit=True) as c:
        c.execute("INSERT INTO policies (id, name, description) VALUES"
                  " ('claude_code:config', 'Claude Code permission rule',"
                  "  'Denied by a permission rule in Claude Code''s settings (managed, user or project deny list)'),"
                  " ('claude_code:hook', 'Our hook', 'Denied by a Claude Code PreToolUse hook')")
    migrate(fresh_database, timescaledb="off")
    with psycopg.connect(fresh_database) as c:
        rows = dict((i, (n, d)) for i, n, d in c.execute("SELECT id, name, description FROM policies"))
    assert "deny list" not in rows["claude_code:config"][1] and "not allowed" in rows["claude_code:config"][0]
    assert rows["claude_code:hook"] == ("Our hook", "Denied by a Claude Code PreToolUse hook")
