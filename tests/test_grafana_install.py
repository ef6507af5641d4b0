"""`agent-analytics grafana install` / `export` against Grafana's HTTP API, mocked with `responses`
in the shapes Grafana documents (tests/grafana_fake.py), including its failure answers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
import responses
import yaml

from agent_analytics.cli import main
from agent_analytics.grafana import sources
from agent_analytics.grafana.plan import Kind, plan_dashboard
from tests.grafana_fake import BASE, FakeGrafana

INFINITY = "yesoreyeram-infinity-datasource"
FILE_DS_UID = "aa-infinity-file"  # the uid the generated files use
QUERY_TOKEN = "aa-query-secret-123"


# -- fixtures: generated files in the documented formats ----------------------------------------
def _dashboards() -> list[dict]:
    ds = {"type": INFINITY, "uid": FILE_DS_UID}
    usage = {
        "uid": "aa-mcp-usage", "title": "MCP Usage", "tags": ["agents"], "schemaVersion": 42,
        "time": {"from": "now-7d", "to": "now"},
        "templating": {"list": [
            {"name": "user", "type": "query", "datasource": ds, "query": {"url": "/api/v1/variables/user"}},
            {"name": "ds", "type": "datasource", "query": INFINITY,
             "current": {"text": "Agent Analytics", "value": FILE_DS_UID}},
        ]},
        "panels": [
            {"id": 1, "type": "timeseries", "title": "Calls", "datasource": ds,
             "targets": [{"refId": "A", "datasource": ds, "url": "/api/v1/calls", "parser": "backend"}],
             "fieldConfig": {"defaults": {"min": 0.0, "decimals": 2}}},
            {"id": 2, "type": "stat", "title": "Blocked", "datasource": "${ds}",
             "targets": [{"refId": "A", "datasource": {"type": INFINITY, "uid": "${ds}"}}]},
            {"id": 3, "type": "text", "title": "Help", "datasource": {"type": "grafana", "uid": "-- Grafana --"}},
        ],
    }
    llm = {"uid": "aa-llm-usage", "title": "LLM Usage", "tags": [], "panels": [
        {"id": 1, "type": "table", "title": "Sessions", "datasource": FILE_DS_UID,
         "targets": [{"refId": "A", "datasource": ds}]}]}
    return [usage, llm]


def _alert_file() -> dict:
    return {"apiVersion": 1, "groups": [{
        "orgId": 1, "name": "agent-analytics", "folder": "Agent Analytics", "interval": "1m",
        "rules": [
            {"uid": "aa-blocked-calls", "title": "Blocked MCP calls", "condition": "C", "for": "5m",
             "noDataState": "OK", "execErrState": "Error", "labels": {"team": "platform"},
             "annotations": {"summary": "MCP calls are being blocked"}, "dashboardUid": "aa-mcp-usage",
             "panelId": 2,
             "data": [
                 {"refId": "A", "relativeTimeRange": {"from": 600, "to": 0}, "datasourceUid": FILE_DS_UID,
                  "model": {"refId": "A", "type": "json", "parser": "backend", "url": "/api/v1/alerts/blocked",
                            "datasource": {"type": INFINITY, "uid": FILE_DS_UID}}},
                 {"refId": "B", "datasourceUid": "__expr__", "relativeTimeRange": {"from": 0, "to": 0},
                  "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": "last"}},
                 {"refId": "C", "datasourceUid": "__expr__", "relativeTimeRange": {"from": 0, "to": 0},
                  "model": {"refId": "C", "type": "threshold", "expression": "B",
                            "conditions": [{"evaluator": {"type": "gt", "params": [0]}}]}},
             ]},
            {"uid": "aa-ingest-rejects", "title": "Telemetry rejected", "condition": "B", "for": "1h30m",
             "data": [
                 {"refId": "A", "relativeTimeRange": {"from": 3600, "to": 0}, "datasourceUid": FILE_DS_UID,
                  "model": {"refId": "A", "url": "/api/v1/alerts/rejected", "parser": "backend"}},
                 {"refId": "B", "datasourceUid": "__expr__",
                  "model": {"refId": "B", "type": "threshold", "expression": "A",
                            "conditions": [{"evaluator": {"type": "gt", "params": [10]}}]}},
             ]},
        ]}]}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    dash_dir = tmp_path / "dashboards" / "infinity"
    dash_dir.mkdir(parents=True)
    for d in _dashboards():
        (dash_dir / f"{d['uid']}.json").write_text(json.dumps(d, indent=2))
    prov = tmp_path / "provisioning"
    (prov / "datasources").mkdir(parents=True)
    (prov / "alerting").mkdir()
    (prov / "datasources" / "agent-analytics.yaml").write_text(yaml.safe_dump({"apiVersion": 1, "datasources": [
        {"name": "Agent Analytics", "type": INFINITY, "uid": FILE_DS_UID, "access": "proxy",
         "url": "http://service:8080", "jsonData": {"httpHeaderName1": "Authorization"},
         "secureJsonData": {"httpHeaderValue1": "Bearer ${AA_QUERY_TOKEN}"}}]}))
    (prov / "alerting" / "rules.yaml").write_text(yaml.safe_dump(_alert_file()))
    return {"dashboards": dash_dir, "provisioning": prov, "root": tmp_path}


@pytest.fixture
def grafana():
    fake = FakeGrafana()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake.register(rsps)
        yield fake


def install(files, *extra: str, token: str = "glsa_good") -> int:
    return main(["grafana", "install", "--url", BASE, "--token", token, "--query-token", QUERY_TOKEN,
                 "--service-url", "http://aa.internal:8080",
                 "--dashboards-dir", str(files["dashboards"]), "--provisioning-dir", str(files["provisioning"]),
                 *extra])


def _panels_ds(model: dict) -> list:
    out = []
    for p in model["panels"]:
        out.append(p.get("datasource"))
        out.extend(t.get("datasource") for t in p.get("targets", []))
    return out


# -- a fresh install, then a second run -----------------------------------------------------------
def test_fresh_install_creates_everything_then_second_run_changes_nothing(files, grafana, capsys):
    assert install(files) == 0
    out = capsys.readouterr().out
    assert QUERY_TOKEN not in out  # the query token is never printed
    assert "summary: 5 created, 0 updated, 0 unchanged" in out  # data source, folder, 2 dashboards, 1 group
    assert "FAILED" not in out and "INCOMPLETE" not in out

    # Data source: pointing at the service, token as a secure header, Infinity's allowed hosts.
    ds = grafana.datasources[FILE_DS_UID]
    assert ds["type"] == INFINITY and ds["url"] == "http://aa.internal:8080" and ds["access"] == "proxy"
    assert ds["jsonData"] == {"httpHeaderName1": "Authorization", "allowedHosts": ["http://aa.internal:8080"]}
    assert ds["secureJsonFields"] == {"httpHeaderValue1": True}
    assert grafana.secrets[(FILE_DS_UID, "httpHeaderValue1")] == f"Bearer {QUERY_TOKEN}"
    # Folder and dashboards in it, carrying our tag.
    assert grafana.folders["agent-analytics"]["title"] == "Agent Analytics"
    assert {d["folderUid"] for d in grafana.dashboards.values()} == {"agent-analytics"}
    usage = grafana.dashboards["aa-mcp-usage"]["dashboard"]
    assert "agent-analytics" in usage["tags"] and "agents" in usage["tags"]
    # Alert rules: one group PUT, in our folder, with a 1m interval and Grafana's provenance lock.
    group = grafana.rule_groups[("agent-analytics", "agent-analytics")]
    assert group["interval"] == 60 and [r["uid"] for r in group["rules"]] == ["aa-blocked-calls", "aa-ingest-rejects"]
    blocked = group["rules"][0]
    assert blocked["provenance"] == "api" and blocked["for"] == "5m"
    assert blocked["annotations"] == {"summary": "MCP calls are being blocked", "__dashboardUid__": "aa-mcp-usage",
                                      "__panelId__": "2"}
    assert [q["datasourceUid"] for q in blocked["data"]] == [FILE_DS_UID, "__expr__", "__expr__"]
    put = [c for c in grafana.writes if "/rule-groups/" in c[1]][0]
    assert "X-Disable-Provenance" not in put[3]

    first_writes = len(grafana.writes)
    assert install(files) == 0
    out = capsys.readouterr().out
    assert len(grafana.writes) == first_writes, grafana.writes[first_writes:]  # a second run writes nothing
    assert "summary: 0 created, 0 updated, 5 unchanged, 0 left alone" in out


def test_install_rewrites_datasource_uid_to_the_one_in_that_grafana(files, grafana, capsys):
    # The team already made an Infinity data source with our name by hand: it is adopted, not duplicated.
    grafana._store_ds({"uid": "P8E80F9AEF21F6940", "name": "Agent Analytics", "type": INFINITY,
                       "url": "http://old:8080", "jsonData": {"timeoutInSeconds": 60}}, None)
    assert install(files) == 0
    out = capsys.readouterr().out
    assert "uid P8E80F9AEF21F6940: updated" in out
    assert set(grafana.datasources) == {"P8E80F9AEF21F6940"}
    ds = grafana.datasources["P8E80F9AEF21F6940"]
    assert ds["url"] == "http://aa.internal:8080" and ds["jsonData"]["timeoutInSeconds"] == 60  # theirs kept
    usage = grafana.dashboards["aa-mcp-usage"]["dashboard"]
    ours = {"type": INFINITY, "uid": "P8E80F9AEF21F6940"}
    assert _panels_ds(usage) == [ours, ours, "${ds}", {"type": INFINITY, "uid": "${ds}"},
                                 {"type": "grafana", "uid": "-- Grafana --"}]
    variables = {v["name"]: v for v in usage["templating"]["list"]}
    assert variables["user"]["datasource"] == ours
    assert variables["ds"]["current"]["value"] == "P8E80F9AEF21F6940"
    llm = grafana.dashboards["aa-llm-usage"]["dashboard"]
    assert _panels_ds(llm) == [ours, ours]  # a legacy string reference too
    rules = grafana.rule_groups[("agent-analytics", "agent-analytics")]["rules"]
    assert rules[0]["data"][0]["datasourceUid"] == "P8E80F9AEF21F6940"
    assert rules[0]["data"][0]["model"]["datasource"]["uid"] == "P8E80F9AEF21F6940"
    assert not json.dumps(grafana.dashboards).count(FILE_DS_UID)


# -- plugin missing ------------------------------------------------------------------------------
def test_missing_plugin_says_how_to_install_it_and_writes_nothing(files, grafana, capsys):
    grafana.plugins = {"simpod-json-datasource"}
    assert install(files) == 1
    out = capsys.readouterr().out
    assert f"the {INFINITY} plugin is not installed in this Grafana: nothing was written" in out
    assert f"grafana cli plugins install {INFINITY}" in out and "GF_PLUGINS_PREINSTALL_SYNC" in out
    assert grafana.writes == []
    assert out.count("not attempted") >= 5


# -- failures from Grafana -----------------------------------------------------------------------
def test_401_bad_token_is_explained_and_nothing_written(files, grafana, capsys):
    assert install(files, token="glsa_wrong") == 1
    out = capsys.readouterr().out
    assert "Grafana refused the token (401" in out and "'Invalid API key'" in out
    assert grafana.writes == []
    assert "summary: 0 created, 0 updated, 0 unchanged, 0 left alone, 0 skipped, 0 failed, 5 not attempted" in out


def test_403_on_the_data_source_stops_before_anything_depending_on_it(files, grafana, capsys):
    grafana.fail("POST", "/api/datasources", 403,
                 {"message": "You'll need additional permissions to perform this action. Permissions needed: "
                             "datasources:create"})
    assert install(files) == 1
    out = capsys.readouterr().out
    assert "the token lacks a permission (403 on POST /api/datasources)" in out
    assert "datasources:create" in out
    assert "INCOMPLETE" in out and "4 not attempted" in out
    assert grafana.folders == {} and grafana.dashboards == {} and grafana.rule_groups == {}


def test_403_on_one_dashboard_installs_the_rest_and_says_what_is_missing(files, grafana, capsys):
    original = grafana._dash_save

    def save(body, request):
        if body["dashboard"]["uid"] == "aa-llm-usage":
            return grafana._json(403, {"message": "Access denied"})
        return original(body, request)

    grafana._dash_save = save
    assert install(files) == 1
    out = capsys.readouterr().out
    assert "'LLM Usage' (uid aa-llm-usage): FAILED (the token lacks a permission (403 on POST /api/dashboards/db)" in out
    assert "'MCP Usage' (uid aa-mcp-usage): created" in out
    assert "INCOMPLETE" in out and "1 failed" in out and "the 4 created or updated are" in out
    assert set(grafana.dashboards) == {"aa-mcp-usage"} and grafana.rule_groups


def test_404_on_rule_group_is_reported(files, grafana, capsys):
    grafana.fail("PUT", r"/api/v1/provisioning/folder/.*/rule-groups/.*", 404, {"message": "folder does not exist"})
    assert install(files) == 1
    out = capsys.readouterr().out
    assert "alert rule group  'agent-analytics' (2 rules): FAILED (not found (404 on PUT " in out
    assert "'folder does not exist'" in out and "INCOMPLETE" in out


def test_5xx_is_reported_as_grafanas_own_error(files, grafana, capsys):
    grafana.fail("GET", "/api/dashboards/uid/aa-mcp-usage", 500,
                 {"message": "Internal Server Error", "traceID": ""})
    assert install(files) == 1
    out = capsys.readouterr().out
    assert "Grafana failed with 500 on GET /api/dashboards/uid/aa-mcp-usage" in out and "check its log" in out
    assert "'LLM Usage' (uid aa-llm-usage): created" in out  # independent items still installed
    assert "1 failed" in out and "INCOMPLETE" in out


def test_unreachable_grafana(files, capsys):
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{BASE}/api/health", body=requests.exceptions.ConnectionError("connection refused"))
        assert install(files) == 1
    out = capsys.readouterr().out
    assert "cannot reach Grafana (GET /api/health)" in out and "5 not attempted" in out


def test_412_version_conflict_when_someone_saves_during_the_install(files, grafana, capsys):
    assert install(files) == 0
    # A new generated version of one dashboard...
    path = files["dashboards"] / "aa-mcp-usage.json"
    model = json.loads(path.read_text())
    model["panels"][0]["title"] = "Calls per hour"
    path.write_text(json.dumps(model))
    # ...while someone saves that dashboard in Grafana between our read and our write.
    grafana.before_save = lambda uid: grafana.ui_edit(uid, title="MCP Usage (mine)") if uid == "aa-mcp-usage" else None
    capsys.readouterr()
    assert install(files) == 1
    out = capsys.readouterr().out
    assert "changed in Grafana while installing (412 version-mismatch on POST /api/dashboards/db)" in out
    assert "'The dashboard has been changed by someone else'" in out and "--force" in out
    assert grafana.dashboards["aa-mcp-usage"]["dashboard"]["title"] == "MCP Usage (mine)"  # their save stands
    saves = [c for c in grafana.writes if c[1] == "/api/dashboards/db"]
    assert saves[-1][2]["overwrite"] is False and saves[-1][2]["dashboard"]["version"] == 1


def test_412_name_exists(files, grafana, capsys):
    grafana.folders["agent-analytics"] = {"id": 50, "uid": "agent-analytics", "title": "Agent Analytics", "version": 1}
    grafana.dashboards["someone-else"] = {"folderUid": "agent-analytics", "dashboard": {
        "id": 51, "uid": "someone-else", "title": "LLM Usage", "version": 3}}
    assert install(files) == 1
    out = capsys.readouterr().out
    assert "a dashboard with the same name already exists in the folder (412 name-exists" in out


# -- dashboards edited in Grafana ----------------------------------------------------------------
def test_edited_dashboard_is_left_alone_unless_forced(files, grafana, capsys):
    assert install(files) == 0
    grafana.ui_edit("aa-mcp-usage", title="MCP Usage", description="my notes")
    edited = json.loads(json.dumps(grafana.dashboards["aa-mcp-usage"]["dashboard"]))
    capsys.readouterr()
    writes = len(grafana.writes)

    assert install(files) == 0  # leaving an edited dashboard alone is not a failure
    out = capsys.readouterr().out
    assert "'MCP Usage' (uid aa-mcp-usage): left alone (edited in Grafana since it was installed (version 2); " \
           "--force overwrites it)" in out
    assert len(grafana.writes) == writes
    assert grafana.dashboards["aa-mcp-usage"]["dashboard"] == edited

    assert install(files, "--force") == 0
    out = capsys.readouterr().out
    assert "'MCP Usage' (uid aa-mcp-usage): updated (edited in Grafana since it was installed; overwritten (--force)" in out
    save = [c for c in grafana.writes if c[1] == "/api/dashboards/db"][-1][2]
    assert save["overwrite"] is True and save["dashboard"]["version"] == 2
    restored = grafana.dashboards["aa-mcp-usage"]["dashboard"]
    assert "description" not in restored and restored["version"] == 3
    # ...and from then on it is ours again: unchanged.
    assert install(files) == 0
    assert "'MCP Usage' (uid aa-mcp-usage): unchanged" in capsys.readouterr().out


def test_a_dashboard_we_did_not_install_is_not_overwritten(files, grafana, capsys):
    grafana.dashboards["aa-llm-usage"] = {"folderUid": "", "dashboard": {
        "id": 7, "uid": "aa-llm-usage", "title": "Someone's board", "version": 9, "panels": []}}
    assert install(files) == 0
    out = capsys.readouterr().out
    assert "left alone (exists and was not installed by agent-analytics (version 9); --force overwrites it)" in out
    assert grafana.dashboards["aa-llm-usage"]["dashboard"]["title"] == "Someone's board"


def test_new_generated_version_updates_an_untouched_dashboard_with_its_version(files, grafana, capsys):
    assert install(files) == 0
    path = files["dashboards"] / "aa-llm-usage.json"
    model = json.loads(path.read_text())
    model["panels"][0]["title"] = "All sessions"
    path.write_text(json.dumps(model))
    capsys.readouterr()
    assert install(files) == 0
    out = capsys.readouterr().out
    assert "'LLM Usage' (uid aa-llm-usage): updated (new generated version; /d/aa-llm-usage/llm-usage version 2)" in out
    save = [c for c in grafana.writes if c[1] == "/api/dashboards/db"][-1][2]
    assert save["overwrite"] is False and save["dashboard"]["version"] == 1 and save["folderUid"] == "agent-analytics"
    assert "summary: 0 created, 1 updated, 4 unchanged" in out


def test_changed_alert_rule_is_updated_and_removed_rule_reported(files, grafana, capsys):
    assert install(files) == 0
    doc = _alert_file()
    doc["groups"][0]["rules"][0]["for"] = "10m"
    del doc["groups"][0]["rules"][1]
    (files["provisioning"] / "alerting" / "rules.yaml").write_text(yaml.safe_dump(doc))
    capsys.readouterr()
    assert install(files) == 0
    out = capsys.readouterr().out
    assert "updated (rule aa-ingest-rejects removed; rule aa-blocked-calls: for)" in out
    assert [r["uid"] for r in grafana.rule_groups[("agent-analytics", "agent-analytics")]["rules"]] == ["aa-blocked-calls"]


def test_editable_alerts_send_x_disable_provenance_and_are_not_overwritten_unless_forced(files, grafana, capsys):
    assert install(files, "--editable-alerts") == 0
    put = [c for c in grafana.writes if "/rule-groups/" in c[1]][-1]
    assert put[3].get("X-Disable-Provenance") == "true"
    rules = grafana.rule_groups[("agent-analytics", "agent-analytics")]["rules"]
    assert {r["provenance"] for r in rules} == {""}
    rules[0]["labels"]["team"] = "sre"  # someone edits the rule in the UI
    capsys.readouterr()
    writes = len(grafana.writes)
    assert install(files, "--editable-alerts") == 0
    assert "left alone (differs from ours and its rules are editable" in capsys.readouterr().out
    assert len(grafana.writes) == writes
    assert install(files, "--editable-alerts", "--force") == 0
    assert grafana.rule_groups[("agent-analytics", "agent-analytics")]["rules"][0]["labels"]["team"] == "platform"


# -- dry run -------------------------------------------------------------------------------------
def test_dry_run_makes_no_write_calls(files, grafana, capsys):
    assert install(files, "--dry-run") == 0
    out = capsys.readouterr().out
    assert grafana.writes == []
    assert "dry run, nothing written" in out and "plan: 5 to write, 0 unchanged" in out
    assert out.count("would create") == 5
    assert {c[0] for c in grafana.calls} == {"GET"}

    assert install(files) == 0
    capsys.readouterr()
    grafana.ui_edit("aa-llm-usage", title="LLM Usage v2")
    calls = len(grafana.writes)
    assert install(files, "--dry-run", "--force") == 0
    out = capsys.readouterr().out
    assert "'LLM Usage' (uid aa-llm-usage): would update" in out and "plan: 1 to write, 4 unchanged" in out
    assert len(grafana.writes) == calls


# -- the JSON plugin -----------------------------------------------------------------------------
def test_json_plugin_points_at_the_grafana_face_and_skips_alert_rules(files, grafana, capsys):
    json_dir = files["root"] / "dashboards" / "json"
    json_dir.mkdir()
    (json_dir / "mcp.json").write_text(json.dumps({"uid": "aa-mcp-json", "title": "MCP Usage", "panels": [
        {"id": 1, "type": "timeseries", "datasource": {"type": "simpod-json-datasource", "uid": "x"},
         "targets": [{"refId": "A", "target": "calls"}]}]}))
    rc = main(["grafana", "install", "--url", BASE, "--token", "glsa_good", "--plugin", "json",
               "--query-token", QUERY_TOKEN, "--service-url", "http://aa.internal:8080/",
               "--dashboards-dir", str(json_dir), "--provisioning-dir", str(files["provisioning"])])
    out = capsys.readouterr().out
    assert rc == 0, out
    ds = grafana.datasources["aa-json"]
    assert ds["type"] == "simpod-json-datasource" and ds["url"] == "http://aa.internal:8080/grafana"
    assert ds["jsonData"] == {"httpHeaderName1": "Authorization"}
    assert "simpod-json-datasource cannot run alert rules; use --plugin infinity" in out
    assert grafana.rule_groups == {}
    # Its own folder by default, as in provisioning/: both variants can live in one Grafana.
    assert grafana.folders["agent-analytics-json"]["title"] == "Agent Analytics (JSON plugin)"
    assert grafana.dashboards["aa-mcp-json"]["folderUid"] == "agent-analytics-json"
    panel = grafana.dashboards["aa-mcp-json"]["dashboard"]["panels"][0]
    assert panel["datasource"] == {"type": "simpod-json-datasource", "uid": "aa-json"}


def test_query_token_is_kept_unless_asked_to_replace_it(files, grafana, capsys):
    assert install(files) == 0
    capsys.readouterr()
    rc = main(["grafana", "install", "--url", BASE, "--token", "glsa_good", "--query-token", "new-token",
               "--service-url", "http://aa.internal:8080", "--dashboards-dir", str(files["dashboards"]),
               "--provisioning-dir", str(files["provisioning"])])
    assert rc == 0
    assert "query token kept (Grafana does not reveal it; --update-token replaces it)" in capsys.readouterr().out
    assert grafana.secrets[(FILE_DS_UID, "httpHeaderValue1")] == f"Bearer {QUERY_TOKEN}"
    rc = main(["grafana", "install", "--url", BASE, "--token", "glsa_good", "--query-token", "new-token",
               "--update-token", "--service-url", "http://aa.internal:8080",
               "--dashboards-dir", str(files["dashboards"]), "--provisioning-dir", str(files["provisioning"])])
    out = capsys.readouterr().out
    assert rc == 0 and "new-token" not in out and "updated (changed: query token)" in out
    assert grafana.secrets[(FILE_DS_UID, "httpHeaderValue1")] == "Bearer new-token"


# -- export for git ------------------------------------------------------------------------------
def test_export_writes_dashboards_and_alerts_with_the_chosen_uid(files, tmp_path, capsys):
    out_dir = tmp_path / "export"
    assert main(["grafana", "export", "--datasource-uid", "team-ds-42", "--out", str(out_dir),
                 "--dashboards-dir", str(files["dashboards"]),
                 "--provisioning-dir", str(files["provisioning"])]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out_dir.glob("*.json")) == ["aa-llm-usage.json", "aa-mcp-usage.json"]
    assert f"wrote {out_dir / 'alerting' / 'rules.yaml'}" in printed
    usage = json.loads((out_dir / "aa-mcp-usage.json").read_text())
    ours = {"type": INFINITY, "uid": "team-ds-42"}
    assert _panels_ds(usage)[:2] == [ours, ours]
    assert sources.HASH_KEY not in usage and "id" not in usage and usage["tags"] == ["agents"]
    text = "".join(p.read_text() for p in out_dir.rglob("*.*"))
    assert FILE_DS_UID not in text
    alerts = yaml.safe_load((out_dir / "alerting" / "rules.yaml").read_text())
    uids = [q["datasourceUid"] for q in alerts["groups"][0]["rules"][0]["data"]]
    assert uids == ["team-ds-42", "__expr__", "__expr__"]


# -- pure pieces ---------------------------------------------------------------------------------
def test_hash_survives_grafanas_number_round_trip():
    model = sources.desired_dashboard(_dashboards()[0], sources.PLUGINS["infinity"], "u", frozenset({FILE_DS_UID}), "n")
    assert model["panels"][0]["fieldConfig"]["defaults"]["min"] == 0.0
    live = json.loads(json.dumps(model).replace("0.0", "0"))  # Go prints 0.0 as 0
    live.update(id=12, version=4)
    assert plan_dashboard(model, {"dashboard": live, "meta": {"folderUid": "f"}}, "f", False).kind is Kind.UNCHANGED
    assert plan_dashboard(model, {"dashboard": live, "meta": {"folderUid": "g"}}, "f", False).kind is Kind.UPDATE


@pytest.mark.parametrize("text,seconds", [("1m", 60), ("5m0s", 300), ("1h30m", 5400), (300, 300), ("0s", 0)])
def test_durations(text, seconds):
    assert sources.duration_seconds(text) == seconds


def test_real_generated_dashboards_install_and_rerun_unchanged(grafana, capsys):
    """Over the dashboards engineer's generated files, when they exist in this tree."""
    plugin = sources.PLUGINS["infinity"]
    dash_dir = sources.default_dashboards_dir(plugin)
    if not list(dash_dir.glob("*.json")):
        pytest.skip(f"no generated dashboards in {dash_dir} yet")
    args = ["grafana", "install", "--url", BASE, "--token", "glsa_good", "--query-token", QUERY_TOKEN]
    assert main(args) == 0, capsys.readouterr().out
    capsys.readouterr()
    writes = len(grafana.writes)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert len(grafana.writes) == writes and " 0 created, 0 updated," in out
    for d in grafana.dashboards.values():
        for ref in _walk_refs(d["dashboard"]):
            if isinstance(ref, dict) and ref.get("type") == plugin.id and not str(ref.get("uid", "")).startswith("$"):
                assert ref["uid"] == next(iter(grafana.datasources))


def _walk_refs(node):
    if isinstance(node, dict):
        if "datasource" in node:
            yield node["datasource"]
        for v in node.values():
            yield from _walk_refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk_refs(v)


def test_a_data_source_provisioned_from_files_is_used_as_it_is(files, grafana, capsys):
    grafana._store_ds({"uid": FILE_DS_UID, "name": "Agent Analytics", "type": INFINITY, "url": "http://svc:8080",
                       "jsonData": {}}, None)
    grafana.datasources[FILE_DS_UID]["readOnly"] = True
    assert install(files) == 0
    out = capsys.readouterr().out
    assert "uid aa-infinity-file: unchanged (provisioned from files in this Grafana (read-only): used as it is)" in out
    assert not [c for c in grafana.writes if "/api/datasources" in c[1]]
    assert grafana.dashboards["aa-llm-usage"]["dashboard"]["panels"][0]["datasource"]["uid"] == FILE_DS_UID


def test_a_data_source_of_another_type_under_our_name_stops_the_install(files, grafana, capsys):
    grafana._store_ds({"uid": "prom1", "name": "Agent Analytics", "type": "prometheus", "url": "http://p:9090"}, None)
    assert install(files) == 1
    out = capsys.readouterr().out
    assert "a prometheus data source is already named 'Agent Analytics': choose another with --datasource-name" in out
    assert grafana.writes == [] and "INCOMPLETE" in out


def test_a_url_that_is_not_grafana(files, capsys):
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{BASE}/api/health", status=404, body="404 page not found")
        assert install(files) == 1
    out = capsys.readouterr().out
    assert "not found (404 on GET /api/health): Grafana said '404 page not found' (is --url Grafana's root URL?)" in out


def test_without_provisioning_files_the_packaged_generator_supplies_the_alert_rules(files, grafana, capsys, tmp_path):
    """An installed package has no provisioning/ folder: the defaults and the rules still come through."""
    empty = tmp_path / "no-provisioning"
    empty.mkdir()
    rc = main(["grafana", "install", "--url", BASE, "--token", "glsa_good", "--query-token", QUERY_TOKEN,
               "--dashboards-dir", str(files["dashboards"]), "--provisioning-dir", str(empty)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert set(grafana.datasources) == {"aa-infinity"}  # the provisioning file's uid, built in
    from agent_analytics.dashboards.alerts import alert_rules
    expected = {g["name"]: [r["uid"] for r in g["rules"]] for g in alert_rules()["groups"]}
    installed = {name: [r["uid"] for r in g["rules"]] for (_, name), g in grafana.rule_groups.items()}
    assert installed == expected and expected
    for g in grafana.rule_groups.values():
        for r in g["rules"]:
            assert {q["datasourceUid"] for q in r["data"]} <= {"aa-infinity", "__expr__"}


# -- Grafana's own checks on alert rules (tests/grafana_fake.py) --------------------------------------
def _without_panel_id() -> dict:
    doc = _alert_file()
    del doc["groups"][0]["rules"][0]["panelId"]  # dashboardUid alone
    return doc


def test_a_rule_linked_to_a_dashboard_but_no_panel_is_refused_before_anything_is_written(files, grafana, capsys):
    (files["provisioning"] / "alerting" / "rules.yaml").write_text(yaml.safe_dump(_without_panel_id()))
    with pytest.raises(SystemExit) as stop:
        install(files)
    assert "rule 'Blocked MCP calls': Grafana needs __dashboardUid__ and __panelId__ together " \
           "(has __dashboardUid__=aa-mcp-usage only)" in str(stop.value)
    assert grafana.writes == []
    with pytest.raises(SystemExit) as stop:
        main(["grafana", "export", "--datasource-uid", "u", "--out", str(files["root"] / "out"),
              "--dashboards-dir", str(files["dashboards"]), "--provisioning-dir", str(files["provisioning"])])
    assert "__panelId__ together" in str(stop.value)
    assert not (files["root"] / "out" / "alerting").exists()


def test_grafana_answers_400_to_such_a_rule_group_and_the_install_reports_it(files, grafana, capsys):
    """What the installer's own check spares: the fake refuses the PUT with Grafana's status and
    message (api_provisioning.go RoutePutAlertRuleGroup, ErrAlertRuleFailedValidation)."""
    from agent_analytics.grafana.client import GrafanaClient, GrafanaError

    assert install(files) == 0
    body = sources.api_rule_group(sources.groups_from_doc(_alert_file(), None)[0], "agent-analytics", FILE_DS_UID,
                                  grafana.org_id)
    del body["rules"][0]["annotations"]["__panelId__"]
    with pytest.raises(GrafanaError) as err:
        GrafanaClient(BASE, "glsa_good").put_rule_group("agent-analytics", "agent-analytics", body, editable=False)
    assert err.value.status == 400
    assert "invalid alert rule: both annotations __dashboardUid__ and __panelId__ must be specified" in str(err.value)
    assert grafana.links["aa-blocked-calls"] == ("aa-mcp-usage", 2)  # the installed group stands


def test_the_generated_rules_pass_grafanas_checks_and_show_on_the_security_panel(grafana, capsys):
    args = ["grafana", "install", "--url", BASE, "--token", "glsa_good", "--query-token", QUERY_TOKEN]
    assert main(args) == 0, capsys.readouterr().out
    security = grafana.dashboards["aa-security"]["dashboard"]
    stat = next(p for p in security["panels"] if "/security_blocked_calls?" in p["targets"][0]["url"])
    assert grafana.links["aa-blocked-calls-surge"] == ("aa-security", stat["id"])


def test_rules_provisioned_from_files_are_left_to_their_files(grafana, capsys):
    """Grafana refuses API writes over file-provisioned rules (provenance 'file'): the install
    leaves the group alone and says why, instead of failing on Grafana's 409."""
    from agent_analytics.grafana.client import GrafanaClient, GrafanaError
    from tests.dashboards_support import PROVISIONING, grafana_mounts

    assert grafana.provision_files(PROVISIONING, grafana_mounts()) == []
    folder = grafana.folder_by_title("Agent Analytics")
    writes = len(grafana.writes)
    args = ["grafana", "install", "--url", BASE, "--token", "glsa_good", "--query-token", QUERY_TOKEN]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"folder            'Agent Analytics' uid {folder['uid']}: unchanged" in out
    # Every rule group of the files, with its rules counted (security's three, the budgets' four, LLM Usage's one).
    groups = {g.name: len(g.rules) for g in sources.load_alert_groups(PROVISIONING / "alerting")[0]}
    assert groups == {"agent-analytics-security": 3, "agent-analytics-budgets": 4,
                      "agent-analytics-llm": 1}
    for name, n in groups.items():
        assert (f"'{name}' ({n} rule{'s' if n > 1 else ''}): skipped (provisioned from files in this Grafana; change "
                "its provisioning/alerting file instead)") in out
    from agent_analytics.dashboards.tabs import DASHBOARDS

    # Every dashboard (of the provisioned variant).
    assert out.count("skipped (provisioned from files in this Grafana; change its file instead)") == len(DASHBOARDS)
    assert not [c for c in grafana.writes[writes:] if "/rule-groups/" in c[1] or "/dashboards/" in c[1]]
    # What the skip avoids: Grafana's answer to a PUT over them, with or without provenance.
    group = sources.load_alert_groups(PROVISIONING / "alerting")[0][0]
    body = sources.api_rule_group(group, folder["uid"], "aa-infinity", grafana.org_id)
    for editable, provided in ((False, "api"), (True, "")):
        with pytest.raises(GrafanaError) as err:
            GrafanaClient(BASE, "glsa_good").put_rule_group(folder["uid"], group.name, body, editable=editable)
        assert err.value.status == 409
        assert f"cannot update with provided provenance '{provided}', needs 'file'" in str(err.value)


def test_editable_rules_may_be_locked_again_and_locked_ones_made_editable(files, grafana, capsys):
    """Provenance transitions Grafana allows (CanUpdateProvenanceInRuleGroup): none -> api, api -> none."""
    assert install(files, "--editable-alerts") == 0
    assert {grafana.provenance[u] for u in ("aa-blocked-calls", "aa-ingest-rejects")} == {""}
    doc = _alert_file()
    doc["groups"][0]["rules"][0]["for"] = "10m"
    (files["provisioning"] / "alerting" / "rules.yaml").write_text(yaml.safe_dump(doc))
    assert install(files) == 0
    assert {grafana.provenance[u] for u in ("aa-blocked-calls", "aa-ingest-rejects")} == {"api"}
    doc["groups"][0]["rules"][0]["for"] = "15m"
    (files["provisioning"] / "alerting" / "rules.yaml").write_text(yaml.safe_dump(doc))
    assert install(files, "--editable-alerts", "--force") == 0
    assert {grafana.provenance[u] for u in ("aa-blocked-calls", "aa-ingest-rejects")} == {""}


def test_a_data_source_update_with_an_older_version_is_refused_as_grafana_does(files, grafana, capsys):
    """datasources/service/store.go: an older version than the stored one is a 409; the installer
    sends the version it read, so a save by someone in between is never overwritten."""
    from agent_analytics.grafana.client import GrafanaClient, GrafanaError

    assert install(files) == 0
    ds = grafana.datasources[FILE_DS_UID]
    client = GrafanaClient(BASE, "glsa_good")
    client.update_datasource(FILE_DS_UID, {**ds, "version": ds["version"]})  # someone saves
    with pytest.raises(GrafanaError) as err:
        client.update_datasource(FILE_DS_UID, {**ds, "version": ds["version"]})  # the version read before
    assert err.value.status == 409
