"""The provisioning files as a Grafana that mounts them (docker-compose.yml) would load them:
Grafana's start-up order and folder resolution, and the rule checks Grafana applies
(tests/grafana_fake.py, each check naming the Grafana source it models)."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from agent_analytics.grafana import sources
from tests.dashboards_support import PROVISIONING, grafana_mounts
from tests.grafana_fake import BOTH_ANNOTATIONS, FakeGrafana, RuleInvalid, dashboard_and_panel, validate_rule

ALERTS = PROVISIONING / "alerting" / "agent-analytics.yaml"


def _metrics(urls: list[str]) -> set[str]:
    return {m.group(1) for u in urls for m in [re.match(r"/api/v1/query/([a-z0-9_]+)\?", u)] if m}


def _start(tmp_path: Path, alerts: dict | None = None) -> tuple[FakeGrafana, list[str]]:
    """A fresh Grafana started over the repository's provisioning files (with another alerting
    document when given)."""
    prov = PROVISIONING
    if alerts is not None:
        prov = tmp_path / "provisioning"
        for sub in ("datasources", "dashboards"):
            (prov / sub).mkdir(parents=True)
            for f in (PROVISIONING / sub).glob("*.y*ml"):
                (prov / sub / f.name).write_text(f.read_text())
        (prov / "alerting").mkdir()
        (prov / "alerting" / "agent-analytics.yaml").write_text(yaml.safe_dump(alerts))
    grafana = FakeGrafana()
    return grafana, grafana.provision_files(prov, grafana_mounts())


def test_a_fresh_grafana_starts_with_one_folder_holding_the_dashboards_and_the_rules(tmp_path):
    grafana, errors = _start(tmp_path)
    assert errors == []
    assert len(grafana.folders) == 1, grafana.folders
    (folder,) = grafana.folders.values()
    dashboards = {uid for uid, d in grafana.dashboards.items() if d["folderUid"] == folder["uid"]}
    assert dashboards == set(grafana.dashboards) and "aa-security" in dashboards
    assert grafana.rule_groups and {k[0] for k in grafana.rule_groups} == {folder["uid"]}


def test_every_rule_is_linked_to_the_panel_that_shows_what_it_watches(tmp_path):
    grafana, errors = _start(tmp_path)
    assert errors == []
    rules = [r for g in grafana.rule_groups.values() for r in g["rules"]]
    assert rules
    for rule in rules:
        link = grafana.links[rule["uid"]]
        assert link is not None, f"rule {rule['uid']} shows on no panel"
        dash_uid, panel_id = link
        panels = {p["id"]: p for p in grafana.dashboards[dash_uid]["dashboard"]["panels"]}
        panel = panels[panel_id]
        watched = _metrics([q["model"]["url"] for q in rule["data"] if q["datasourceUid"] != "__expr__"])
        assert _metrics([t.get("url", "") for t in panel.get("targets", [])]) == watched, (rule["uid"], panel["title"])


def test_the_rule_of_before_is_refused_at_start_up_as_grafana_refuses_it(tmp_path):
    """A dashboard uid without a panel id stops Grafana's start-up (alerting provisioning runs
    in server Init); so does a panel id that is not a number."""
    doc = yaml.safe_load(ALERTS.read_text())
    without_panel = copy.deepcopy(doc)
    del without_panel["groups"][0]["rules"][0]["annotations"]["__panelId__"]
    _, errors = _start(tmp_path / "a", without_panel)
    assert errors == [f"Failed to provision alerting: invalid alert rule: {BOTH_ANNOTATIONS}"]

    not_a_number = copy.deepcopy(doc)
    not_a_number["groups"][0]["rules"][0]["annotations"]["__panelId__"] = "blocked"
    _, errors = _start(tmp_path / "b", not_a_number)
    assert errors == ["Failed to provision alerting: invalid alert rule: annotation __panelId__ must be a valid "
                      "integer Panel ID"]


def test_a_dashboards_provider_asking_for_a_folder_uid_clashes_with_the_alerts_folder(tmp_path):
    """What naming the folder two ways did: the rules' folder is made first, by title, and the
    dashboards' provider then looks for its uid, finds none and cannot make a second folder of
    that title; Grafana carries on without the dashboards."""
    prov = tmp_path / "provisioning"
    for sub in ("datasources", "alerting", "dashboards"):
        (prov / sub).mkdir(parents=True)
        for f in (PROVISIONING / sub).glob("*.y*ml"):
            (prov / sub / f.name).write_text(f.read_text())
    provider = yaml.safe_load((prov / "dashboards" / "agent-analytics.yaml").read_text())
    provider["providers"][0]["folderUid"] = "agent-analytics"
    (prov / "dashboards" / "agent-analytics.yaml").write_text(yaml.safe_dump(provider))
    grafana = FakeGrafana()
    errors = grafana.provision_files(prov, grafana_mounts())
    assert errors == ["provider 'agent-analytics': failed to get or create folder: a folder with the same name "
                      "already exists: 'Agent Analytics'"]
    assert grafana.dashboards == {}


def test_both_files_name_the_folder_the_same_way():
    """By title: the only way an alerting provisioning file names a folder."""
    alert_folders = {g["folder"] for g in yaml.safe_load(ALERTS.read_text())["groups"]}
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "agent-analytics.yaml").read_text())["providers"][0]
    assert alert_folders == {provider["folder"]} == {sources.PLUGINS["infinity"].folder_title}
    assert "folderUid" not in provider


# -- the checks themselves, on what they are given ---------------------------------------------------
@pytest.mark.parametrize("annotations,expected", [
    (None, None), ({}, None), ({"summary": "x"}, None),
    ({"__dashboardUid__": "aa-security", "__panelId__": "1"}, ("aa-security", 1)),
    ({"__dashboardUid__": "aa-security", "__panelId__": "-3"}, ("aa-security", -3)),
])
def test_grafanas_dashboard_link_rule_accepts(annotations, expected):
    assert dashboard_and_panel(annotations) == expected


@pytest.mark.parametrize("annotations,message", [
    ({"__dashboardUid__": "aa-security"}, BOTH_ANNOTATIONS),
    ({"__panelId__": "1"}, BOTH_ANNOTATIONS),
    ({"__dashboardUid__": "aa-security", "__panelId__": ""}, BOTH_ANNOTATIONS),
    ({"__dashboardUid__": "aa-security", "__panelId__": "1.5"}, "must be a valid integer Panel ID"),
])
def test_grafanas_dashboard_link_rule_refuses(annotations, message):
    with pytest.raises(RuleInvalid, match=re.escape(message)):
        dashboard_and_panel(annotations)


def test_grafanas_rule_checks_refuse_an_interval_off_the_scheduler_tick():
    rule = {"uid": "r1", "title": "t", "condition": "A", "data": [{"refId": "A"}]}
    assert validate_rule(rule, 60) is None
    with pytest.raises(RuleInvalid, match=re.escape("interval (1m5s) should be non-zero and divided exactly by "
                                                    "scheduler interval: 10")):
        validate_rule(rule, 65)
    with pytest.raises(RuleInvalid, match="cannot create rule with UID"):
        validate_rule({**rule, "uid": "has space"}, 60)
