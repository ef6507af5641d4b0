"""Team attribution through the query faces: the department, team and cost-centre filters and
tables, and the group filter's mapping rule, from the captured Claude Code sessions (attributes on
their events and their metric points, each request counted once) and from the generated dataset
against its oracle, through the JSON API and the Grafana face; the rule set through the directory
API and `directory load`."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

import yaml

from tests.attribution_data import DIMENSIONS, RULES
from tests.datasource_dataset import ANCHOR, DATA, Oracle
from tests.datasource_support import api, assert_rows, field, grafana, iso, same
from tests.harness_support import INGEST_TOKEN, LLM_TOKEN, refresh_aggregates
from tests.ingest_support import CLAUDE_LOGS, fixture_bytes, log_events, logs_fixture, metrics_fixture, plain, post

AUTH = {"Authorization": f"Bearer {INGEST_TOKEN}"}
SCENARIO = "claude-code-2.1.332-edits-commit-pr"
ATTRIBUTED_LOGS = [f"{SCENARIO}-logs-{i}.pb" for i in (1, 2)]
ATTRIBUTED_METRICS = [f"{SCENARIO}-metrics-{i}.pb" for i in (1, 2)]
PLAIN_METRICS = ("claude-code-2.1.328-metrics-1.pb", "claude-code-2.1.328-metrics-2.pb")
ORACLE = Oracle(DATA)
START, END = ANCHOR - timedelta(days=7), ANCHOR


# ---- the captured sessions -------------------------------------------------------------------

def _metric_tokens(names) -> float:
    """The token.usage points' values, read out of the protobuf (delta sums)."""
    return sum(dp.as_double for n in names for rm in metrics_fixture(n).resource_metrics for sm in rm.scope_metrics
               for m in sm.metrics if m.name == "claude_code.token.usage" for dp in m.sum.data_points)


def _requests(names) -> int:
    return sum(1 for n in names for _, rec in log_events(logs_fixture(n))
               if rec.body.string_value == "claude_code.api_request")


def _team(name: str) -> str:
    return next(plain(kv.value) for kv in logs_fixture(name).resource_logs[0].resource.attributes
                if kv.key == "team.id")


def _post_sessions(client, conn) -> None:
    for name in (*ATTRIBUTED_LOGS, *CLAUDE_LOGS):
        assert post(client, "/v1/logs", fixture_bytes(name)).status_code == 200
    for name in (*ATTRIBUTED_METRICS, *PLAIN_METRICS):
        assert post(client, "/v1/metrics", fixture_bytes(name)).status_code == 200
    refresh_aggregates(conn)


def test_a_session_attributed_on_events_and_points_counts_once(client, conn):
    _post_sessions(client, conn)
    team = _team(ATTRIBUTED_LOGS[0])
    # Each session sent metric points: its tokens are theirs, its requests its events.
    attributed, unattributed = _metric_tokens(ATTRIBUTED_METRICS), _metric_tokens(PLAIN_METRICS)
    assert attributed > 0 and unattributed > 0
    start, end = datetime(2026, 11, 1, tzinfo=timezone.utc), datetime.now(timezone.utc) + timedelta(hours=1)
    rows = api(client, "llm_cost_by_team", start, end)["rows"]
    assert [(r["team"], r["attributed"], r["tokens"], r["requests"]) for r in sorted(rows, key=lambda r: r["team"])] \
        == [("(unattributed)", False, unattributed, _requests(CLAUDE_LOGS)),
            (team, True, attributed, _requests(ATTRIBUTED_LOGS))]
    [total] = api(client, "llm_total_tokens", start, end)["rows"]
    assert total["value"] == attributed + unattributed  # the table adds up to the headline
    [narrowed] = api(client, "llm_total_tokens", start, end, team=team)["rows"]
    assert narrowed["value"] == attributed
    # A group without members whose rule maps the team: the same usage, through the Grafana face too.
    assert client.put("/api/v1/directory/groups/platform", json={"attribution": {"team": [team]}},
                      headers=AUTH).status_code == 200
    [by_group] = api(client, "llm_total_tokens", start, end, group="platform")["rows"]
    assert by_group["value"] == attributed
    scoped = {"group": {"text": "platform", "value": ["platform"]}, "team": {"text": "All", "value": ["$__all"]}}
    frames = grafana(client, [{"refId": "A", "target": "llm_cost_by_team", "payload": {}}], start, end,
                     scoped={"__interval": {"text": "1h", "value": "1h"}, **scoped})
    assert (field(frames[0], "team"), field(frames[0], "tokens")) == ([team], [attributed])


# ---- the generated dataset, against its oracle -----------------------------------------------

def test_the_grafana_face_filters_by_team_and_by_a_groups_rule(ds_client):
    scoped = {"__interval": {"text": "1h", "value": "1h"}, "team": {"text": ["t-red"], "value": ["t-red"]},
              "group": {"text": "Operations", "value": "g-ops"}}
    targets = [{"refId": "A", "target": "llm_cost_by_team", "payload": {}},
               {"refId": "B", "target": "mcp_executions_by_team", "payload": {}},
               {"refId": "C", "target": "llm_total_tokens", "payload": {}},
               {"refId": "D", "target": "security_blocked_calls", "payload": {}}]
    frames = grafana(ds_client, targets, START, END, scoped=scoped)
    f = {"team": ["t-red"], "group": ["g-ops"]}
    want = ORACLE.top("llm_cost_by_team", START, END, f)
    assert field(frames[0], "team") == [r["team"] for r in want] == ["t-red"]
    assert all(same(a, r["tokens"]) for a, r in zip(field(frames[0], "tokens"), want))
    assert field(frames[1], "executions") == [r["executions"] for r in ORACLE.top("mcp_executions_by_team",
                                                                                  START, END, f)]
    assert same(field(frames[2], "value")[0], ORACLE.stat("llm_total_tokens", START, END, f))
    assert field(frames[3], "value") == [ORACLE.stat("security_blocked_calls", START, END, f)]


def test_the_group_rule_adds_the_mapped_usage_to_the_members(ds_client):
    """g-ops' rule maps team t-red: more usage than its members' own, each row once."""
    members_only = Oracle(DATA)
    members = DATA.members["g-ops"]
    own = sum(1 for r in members_only.calls(START, END, {}, False) if r["user_id"] in members)
    mapped = sum(1 for r in members_only.calls(START, END, {}, False)
                 if r["user_id"] in members or r["team"] in RULES["g-ops"]["team"])
    assert mapped > own
    [row] = api(ds_client, "mcp_tool_executions", START, END, group="g-ops")["rows"]
    assert row["value"] == mapped
    # The sessions hold no attribution: there the group is its members.
    body = api(ds_client, "session_metrics", START, END, group="g-ops")
    assert body["rows"][0]["sessions"] == len(ORACLE.sessions(START, END, {"group": ["g-ops"]}))


def test_each_dimension_lists_its_values(ds_client):
    for dim in DIMENSIONS:
        want = ({r[dim] for r in DATA.tool_calls + DATA.llm + DATA.points if r[dim]}
                | {v for rule in RULES.values() for v in rule.get(dim, [])})
        got = ds_client.post("/grafana/variable", json={"payload": {"target": dim},
                                                         "range": {"from": iso(START), "to": iso(END)}},
                             headers={"Authorization": f"Bearer {LLM_TOKEN}"}).get_json()
        assert {v["__value"] for v in got} == want, dim
        rows = ds_client.get(f"/api/v1/variables/{dim}", headers={"Authorization": f"Bearer {LLM_TOKEN}"}).get_json()
        assert [r["value"] for r in rows["rows"]] == sorted(want)
    for metric in ("llm_cost_by_department", "llm_cost_by_cost_center"):
        body = api(ds_client, metric, START, END, page_size=1000, department="eng")
        assert_rows(body["rows"], ORACLE.top(metric, START, END, {"department": ["eng"]}), metric)


# ---- the rule in the directory ---------------------------------------------------------------

def test_the_rule_is_set_listed_and_replaced_through_the_api_and_yaml(client, conn, db_url, tmp_path):
    r = client.put("/api/v1/directory/groups/web", json={"name": "Web", "attribution": {"team": ["web", "sre"]}},
                   headers=AUTH)
    assert r.status_code == 200
    [group] = client.get("/api/v1/directory/groups", headers=AUTH).get_json()["groups"]
    assert group["attribution"] == {"team": ["sre", "web"]}
    # An unknown dimension: 400, and nothing of the document applied.
    bad = client.post("/api/v1/directory", json={"users": [{"id": "x@y"}], "groups": [
        {"id": "web", "attribution": {"squad": ["a"]}}]}, headers=AUTH)
    assert bad.status_code == 400 and "attribution" in str(bad.get_json()["details"])
    assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 0
    path = tmp_path / "directory.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"id": "web", "attribution": {"department": ["product"]}}]}))
    proc = subprocess.run([sys.executable, "-m", "agent_analytics.cli", "directory", "load", str(path)],
                          capture_output=True, text=True, env={"DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"},
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert conn.execute("SELECT dimension, value, group_id FROM attribution_groups").fetchall() == [
        ("department", "product", "web")]
    exported = client.get("/api/v1/directory", headers=AUTH).get_json()
    assert client.post("/api/v1/directory", json=exported, headers=AUTH).status_code == 200
    assert conn.execute("SELECT count(*) FROM attribution_groups").fetchone()[0] == 1
