"""What we install: the generated dashboards and alert rules, read from files, with their data
source references rewritten to the data source uid of the target Grafana.

Inputs are the dashboards engineer's output: dashboards/<plugin>/*.json (Grafana dashboard JSON)
and provisioning/alerting/*.yaml (Grafana's alerting file-provisioning format); the data source
name and uid default to the ones in provisioning/datasources/*.yaml so that a Grafana set up
from files and one set up through the API look the same."""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

JSON = dict[str, Any]

MARKER_TAG = "agent-analytics"
HASH_KEY = "__aa_hash"  # top-level key: Grafana keeps unknown keys of a dashboard saved through the API
EXPR_UID = "__expr__"  # server-side expressions in alert rules


class SourceError(ValueError):
    """A dashboard or alert file cannot be used."""


@dataclass(frozen=True)
class Plugin:
    key: str
    id: str
    default_name: str
    default_uid: str
    url_suffix: str  # appended to the service URL
    alerting: bool  # a backend plugin: alert rules can query it
    folder_title: str  # defaults as in provisioning/: both variants can live in one Grafana
    folder_uid: str

    def install_hint(self) -> str:
        return (f"Install it, then run this command again:\n"
                f"  - on the Grafana host: grafana cli plugins install {self.id} && restart Grafana\n"
                f"  - in a container: GF_PLUGINS_PREINSTALL_SYNC={self.id} (Grafana >= 12.1; "
                f"GF_INSTALL_PLUGINS={self.id} before)\n"
                f"  - in Grafana Cloud or the UI: Administration > Plugins and data > Plugins, search {self.id}")


PLUGINS: dict[str, Plugin] = {
    # Names and uids as in provisioning/datasources/agent-analytics.yaml.
    "infinity": Plugin("infinity", "yesoreyeram-infinity-datasource", "Agent Analytics",
                       "aa-infinity", "", alerting=True,
                       folder_title="Agent Analytics", folder_uid="agent-analytics"),
    # Frontend-only plugin: Grafana cannot evaluate alert rules against it.
    "json": Plugin("json", "simpod-json-datasource", "Agent Analytics (JSON)",
                   "aa-json", "/grafana", alerting=False,
                   folder_title="Agent Analytics (JSON plugin)", folder_uid="agent-analytics-json"),
}


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def default_dashboards_dir(plugin: Plugin) -> Path:
    # Locate the dashboards package without importing it (its generator pulls in the SDK).
    spec = importlib.util.find_spec("agent_analytics.dashboards")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0]) / plugin.key
    return _repo_root() / "dashboards" / plugin.key


def default_provisioning_dir() -> Path:
    return _repo_root() / "provisioning"


# -- data source defaults ---------------------------------------------------------------------
@dataclass(frozen=True)
class DatasourceDefaults:
    name: str
    uid: str
    source_uids: frozenset[str]  # uids the files use for our data source; rewritten on install


def datasource_defaults(plugin: Plugin, provisioning_dir: Path) -> DatasourceDefaults:
    """Name and uid of our data source from provisioning/datasources/*.yaml, when present."""
    found: list[JSON] = []
    ds_dir = provisioning_dir / "datasources"
    for path in sorted(ds_dir.glob("*.y*ml")) if ds_dir.is_dir() else []:
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise SourceError(f"{path}: not YAML: {exc}") from None
        for ds in doc.get("datasources") or []:
            if isinstance(ds, dict) and ds.get("type") == plugin.id:
                found.append(ds)
    uids = frozenset(str(ds["uid"]) for ds in found if ds.get("uid"))
    if found:
        first = found[0]
        return DatasourceDefaults(str(first.get("name") or plugin.default_name),
                                  str(first.get("uid") or plugin.default_uid), uids | {plugin.default_uid})
    return DatasourceDefaults(plugin.default_name, plugin.default_uid, frozenset({plugin.default_uid}))


# -- dashboards -------------------------------------------------------------------------------
@dataclass
class DashboardFile:
    path: Path
    model: JSON  # as generated


def load_dashboards(directory: Path) -> list[DashboardFile]:
    if not directory.is_dir():
        raise SourceError(f"no generated dashboards in {directory} (generate them first, "
                          "or point --dashboards-dir at them)")
    out: list[DashboardFile] = []
    for path in sorted(directory.glob("*.json")):
        try:
            model = json.loads(path.read_text())
        except ValueError as exc:
            raise SourceError(f"{path}: not JSON: {exc}") from None
        if not isinstance(model, dict) or not model.get("uid") or not model.get("title"):
            raise SourceError(f"{path}: not a dashboard with a fixed uid and a title")
        out.append(DashboardFile(path, model))
    if not out:
        raise SourceError(f"no *.json dashboards in {directory}")
    return out


def rewrite_datasource(node: Any, plugin: Plugin, uid: str, source_uids: frozenset[str],
                       name: str | None = None) -> Any:
    """A copy of a dashboard (or any part of one) whose references to our data source point at
    `uid`: panel and target `datasource` objects of the plugin's type (or with one of the
    files' uids), legacy string references, and `datasource` template variables."""
    def is_ours(ref: Any) -> bool:
        if isinstance(ref, dict):
            ref_uid = str(ref.get("uid") or "")
            if ref_uid.startswith("$"):  # a template variable: the variable is rewritten instead
                return False
            return ref.get("type") == plugin.id or ref_uid in source_uids
        return isinstance(ref, str) and ref in source_uids

    def walk(value: Any) -> Any:
        if isinstance(value, list):
            return [walk(v) for v in value]
        if not isinstance(value, dict):
            return value
        out = {k: walk(v) for k, v in value.items()}
        if "datasource" in out and is_ours(out["datasource"]):
            out["datasource"] = {"type": plugin.id, "uid": uid}
        if out.get("type") == "datasource" and out.get("query") == plugin.id and "name" in out:
            # A data source variable: make ours its current value.
            out["current"] = {"selected": True, "text": name or uid, "value": uid}
        return out

    return walk(copy.deepcopy(node))


def canonical(value: Any) -> Any:
    """Numbers as Grafana's Go backend returns them (1.0 -> 1), so hashes survive its round trip."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def dashboard_hash(model: JSON) -> str:
    """Hash of a dashboard's content, ignoring what Grafana sets itself (id, version) and the hash."""
    content = {k: v for k, v in model.items() if k not in ("id", "version", HASH_KEY)}
    blob = json.dumps(canonical(content), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def desired_dashboard(model: JSON, plugin: Plugin, ds_uid: str, source_uids: frozenset[str],
                      ds_name: str) -> JSON:
    """The dashboard as we save it: our data source uid, our tag, and the hash of that content."""
    out = rewrite_datasource(model, plugin, ds_uid, source_uids, ds_name)
    out.pop("id", None)
    out.pop("version", None)
    out.pop(HASH_KEY, None)
    tags = list(out.get("tags") or [])
    if MARKER_TAG not in tags:
        tags.append(MARKER_TAG)
    out["tags"] = tags
    out[HASH_KEY] = dashboard_hash(out)
    return out


def exported_dashboard(model: JSON, plugin: Plugin, ds_uid: str, source_uids: frozenset[str],
                       ds_name: str | None = None) -> JSON:
    """The dashboard for a team's git repository: our data source uid, nothing install-specific."""
    out = rewrite_datasource(model, plugin, ds_uid, source_uids, ds_name)
    for key in ("id", "version", HASH_KEY):
        out.pop(key, None)
    return out


# -- alert rules ------------------------------------------------------------------------------
@dataclass
class RuleGroup:
    name: str
    interval_s: int
    rules: list[JSON] = field(default_factory=list)  # file-format rules
    path: Path | None = None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(value: Any) -> int:
    """'1m' / '1h30m' / '5m0s' / 300 -> seconds."""
    if value is None or value == "":
        return 0
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise SourceError(f"not a duration: {value!r}")
    return int(total)


def alert_documents(directory: Path) -> tuple[list[tuple[str, JSON]], str]:
    """The alerting provisioning documents as (file name, content), and where they came from.

    Without the folder (an installed package has no provisioning/), they come from the
    dashboards package's generator, which writes those files."""
    if not directory.is_dir():
        try:
            from agent_analytics.dashboards.alerts import alert_rules
        except ImportError:
            return [], str(directory)
        return [("agent-analytics.yaml", alert_rules())], "agent_analytics.dashboards.alerts"
    docs: list[tuple[str, JSON]] = []
    for path in sorted(directory.glob("*.y*ml")):
        try:
            docs.append((path.name, yaml.safe_load(path.read_text()) or {}))
        except yaml.YAMLError as exc:
            raise SourceError(f"{path}: not YAML: {exc}") from None
    return docs, str(directory)


def load_alert_groups(directory: Path) -> tuple[list[RuleGroup], str]:
    """Rule groups from Grafana alerting provisioning files, and where they came from."""
    docs, source = alert_documents(directory)
    groups: list[RuleGroup] = []
    for name, doc in docs:
        groups.extend(groups_from_doc(doc, directory / name))
    return groups, source


def groups_from_doc(doc: JSON, path: Path | None) -> list[RuleGroup]:
    """The rule groups of one alerting provisioning document (`groups: [...]`)."""
    where = path or "generated alert rules"
    groups: list[RuleGroup] = []
    for g in doc.get("groups") or []:
        if not isinstance(g, dict) or not g.get("name"):
            raise SourceError(f"{where}: a rule group without a name")
        rules = g.get("rules") or []
        for r in rules:
            missing = [k for k in ("uid", "title", "condition", "data") if not r.get(k)]
            if missing:
                raise SourceError(f"{where}: rule {r.get('title') or r.get('uid')!r} lacks {', '.join(missing)}")
            problem = panel_link_problem(r)
            if problem:
                raise SourceError(f"{where}: rule {r.get('title') or r.get('uid')!r}: {problem}")
        try:
            interval = duration_seconds(g.get("interval") or "1m")
        except SourceError as exc:
            raise SourceError(f"{where}: group {g['name']!r}: {exc}") from None
        groups.append(RuleGroup(str(g["name"]), interval, list(rules), path))
    return groups


DASHBOARD_UID_ANNOTATION = "__dashboardUid__"
PANEL_ID_ANNOTATION = "__panelId__"


def panel_link_problem(rule: JSON) -> str:
    """Why Grafana would refuse the rule's link to a dashboard panel, or "". Grafana takes the
    dashboard uid and the panel id together or neither, the panel id an integer
    (pkg/services/ngalert/models/alert_rule.go SetDashboardAndPanelFromAnnotations, run by the
    provisioning API and by file provisioning alike); the file format's dashboardUid/panelId
    become these annotations."""
    annotations = dict(rule.get("annotations") or {})
    dash_uid = str(rule.get("dashboardUid") or annotations.get(DASHBOARD_UID_ANNOTATION) or "")
    panel = rule.get("panelId") if rule.get("panelId") is not None else annotations.get(PANEL_ID_ANNOTATION)
    panel_text = "" if panel is None else str(panel)
    if bool(dash_uid) != bool(panel_text):
        return (f"Grafana needs {DASHBOARD_UID_ANNOTATION} and {PANEL_ID_ANNOTATION} together "
                f"(has {DASHBOARD_UID_ANNOTATION + '=' + dash_uid if dash_uid else PANEL_ID_ANNOTATION + '=' + panel_text} "
                "only): link the rule to a panel or to no dashboard")
    if panel_text and not re.fullmatch(r"[+-]?\d+", panel_text):
        return f"{PANEL_ID_ANNOTATION} must be a whole panel id, not {panel_text!r}"
    return ""


def api_rule(rule: JSON, group: str, folder_uid: str, ds_uid: str, org_id: int = 1) -> JSON:
    """A file-format rule as the provisioning API's ProvisionedAlertRule, on our data source."""
    data = []
    for q in rule["data"]:
        q = copy.deepcopy(q)
        if q.get("datasourceUid") != EXPR_UID:
            q["datasourceUid"] = ds_uid
            model = q.get("model")
            if isinstance(model, dict) and isinstance(model.get("datasource"), dict):
                model["datasource"]["uid"] = ds_uid
        data.append(q)
    annotations = dict(rule.get("annotations") or {})
    # The file format's dashboardUid/panelId are annotations in the API.
    if rule.get("dashboardUid"):
        annotations[DASHBOARD_UID_ANNOTATION] = str(rule["dashboardUid"])
    if rule.get("panelId") is not None:
        annotations[PANEL_ID_ANNOTATION] = str(rule["panelId"])
    out: JSON = {
        "uid": rule["uid"],
        "title": rule["title"],
        "condition": rule["condition"],
        "data": data,
        "for": rule.get("for") or "0s",
        "noDataState": rule.get("noDataState") or "NoData",
        "execErrState": rule.get("execErrState") or "Error",
        "labels": dict(rule.get("labels") or {}),
        "annotations": annotations,
        "isPaused": bool(rule.get("isPaused", False)),
        "folderUID": folder_uid,
        "ruleGroup": group,
        "orgID": org_id,
    }
    return out


def api_rule_group(group: RuleGroup, folder_uid: str, ds_uid: str, org_id: int = 1) -> JSON:
    """The body of PUT /api/v1/provisioning/folder/<folderUid>/rule-groups/<group>."""
    return {"title": group.name, "folderUid": folder_uid, "interval": group.interval_s,
            "rules": [api_rule(r, group.name, folder_uid, ds_uid, org_id) for r in group.rules]}


def exported_alert_file(doc: JSON, ds_uid: str) -> JSON:
    """An alerting provisioning file with every non-expression query on `ds_uid`."""
    out = copy.deepcopy(doc)
    for g in out.get("groups") or []:
        for r in g.get("rules") or []:
            for q in r.get("data") or []:
                if q.get("datasourceUid") != EXPR_UID:
                    q["datasourceUid"] = ds_uid
                    model = q.get("model")
                    if isinstance(model, dict) and isinstance(model.get("datasource"), dict):
                        model["datasource"]["uid"] = ds_uid
    return out
