"""Grafana's HTTP API as its documentation describes it, served through `responses`, with enough
state that a second install sees what the first one wrote.

Shapes follow Grafana's HTTP API docs (docs/sources/developers/http_api/: data_source.md,
folder.md, dashboard.md, alerting_provisioning.md): answers, status codes, 404 and 412 bodies.
Where Grafana adds its own fields on save (ids, versions, secureJsonFields, provenance, query
defaults intervalMs/maxDataPoints) the fake adds them too, so the installer's comparisons are
tested against what a real Grafana would return.

What Grafana refuses, the fake refuses with Grafana's status and message. Each check names the
Grafana source it models (read in grafana/grafana at the commits listed in
docs/grafana-install.md, Grafana 12):
- alert rules: `validate_rule` (pkg/services/ngalert/models/alert_rule.go), reached from the
  provisioning API's rule-group PUT and from file provisioning alike;
- provenance: `can_update_provenance` (pkg/services/ngalert/provisioning/validation);
- optimistic locking: data source versions, dashboard versions;
- file provisioning: `provision_files` runs Grafana's start-up order and folder resolution over
  the provisioning files (pkg/services/provisioning/provisioning.go, .../alerting/
  rules_provisioner.go and rules_types.go, .../dashboards/file_reader.go)."""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

import responses
import yaml

JSON = dict[str, Any]
BASE = "http://grafana.test:3000"


def _dur(seconds: int) -> str:
    """Seconds as Prometheus' model.Duration prints them ("5m", "1h", "0s")."""
    if seconds == 0:
        return "0s"
    out = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out


# -- Grafana's rules, as functions of what is sent ------------------------------------------------
PANEL_ID_NOT_INTEGER = "annotation __panelId__ must be a valid integer Panel ID"
BOTH_ANNOTATIONS = "both annotations __dashboardUid__ and __panelId__ must be specified"
INVALID_RULE = "invalid alert rule"  # models.ErrAlertRuleFailedValidation
BASE_INTERVAL_S = 10  # [unified_alerting] base_interval default; rule group intervals are multiples
_UID = re.compile(r"^[a-zA-Z0-9\-_]*$")  # pkg/util/shortid_generator.go ValidateUID
PROVENANCE_NONE, PROVENANCE_API, PROVENANCE_FILE = "", "api", "file"  # models/provisioning.go


class RuleInvalid(ValueError):
    """What Grafana answers with 400 (ErrAlertRuleFailedValidation) or refuses at start-up."""


def dashboard_and_panel(annotations: dict[str, str] | None) -> tuple[str, int] | None:
    """models/alert_rule.go SetDashboardAndPanelFromAnnotations: the two annotations together or
    neither; the panel id an integer (strconv.ParseInt). Called for every rule by the rule-group
    PUT (provisioning/alert_rules.go calcDelta) and by file provisioning (CreateAlertRule)."""
    if annotations is None:
        return None
    dash_uid = annotations.get("__dashboardUid__", "")
    panel_id = annotations.get("__panelId__", "")
    if (dash_uid != "") != (panel_id != ""):
        raise RuleInvalid(f"{INVALID_RULE}: {BOTH_ANNOTATIONS}")
    if not dash_uid:
        return None
    if not re.fullmatch(r"[+-]?\d+", panel_id):
        raise RuleInvalid(f"{INVALID_RULE}: {PANEL_ID_NOT_INTEGER}")
    return dash_uid, int(panel_id)


def validate_rule(rule: JSON, interval_s: int) -> tuple[str, int] | None:
    """models/alert_rule.go ValidateAlertRule (the parts that depend on what we send), then the
    dashboard link; returns (dashboard uid, panel id) when the rule is linked to a panel."""
    uid = str(rule.get("uid") or "")
    if len(uid) > 40 or not _UID.match(uid):  # util.ValidateUID: MaxUIDLength 40
        raise RuleInvalid(f"{INVALID_RULE}: cannot create rule with UID '{uid}'")
    if not rule.get("data"):
        raise RuleInvalid(f"{INVALID_RULE}: no queries or expressions are found")
    if not rule.get("title"):
        raise RuleInvalid(f"{INVALID_RULE}: title is empty")
    if interval_s <= 0 or interval_s % BASE_INTERVAL_S:  # ValidateRuleGroupInterval
        raise RuleInvalid(f"{INVALID_RULE}: interval ({_go_duration(interval_s)}) should be non-zero and divided exactly "
                          f"by scheduler interval: {BASE_INTERVAL_S}")
    if rule.get("noDataState", "NoData") not in ("Alerting", "NoData", "OK", "KeepLast"):
        raise RuleInvalid(f"{INVALID_RULE}: unknown NoData state option {rule.get('noDataState')}")
    if rule.get("execErrState", "Error") not in ("Alerting", "Error", "OK", "KeepLast"):
        raise RuleInvalid(f"{INVALID_RULE}: unknown Error state option {rule.get('execErrState')}")
    return dashboard_and_panel(rule.get("annotations"))


def can_update_provenance(stored: str, provided: str) -> bool:
    """ngalert/provisioning/validation CanUpdateProvenanceInRuleGroup: the same provenance, or
    over none, or back to none from api."""
    return stored == provided or stored == PROVENANCE_NONE or (stored == PROVENANCE_API and provided == PROVENANCE_NONE)


def _go_duration(seconds: int) -> str:
    """Seconds as Go's time.Duration prints them ("1m0s", "1h0m0s", "5s")."""
    h, rest = divmod(seconds, 3600)
    m, sec = divmod(rest, 60)
    return (f"{h}h{m}m{sec}s" if h else f"{m}m{sec}s" if m else f"{sec}s")


def _seconds(text: str) -> int:
    total = 0
    for n, unit in re.findall(r"(\d+)([hms])", text):
        total += int(n) * {"h": 3600, "m": 60, "s": 1}[unit]
    return total


@dataclass
class FakeGrafana:
    plugins: set[str] = field(default_factory=lambda: {"yesoreyeram-infinity-datasource", "simpod-json-datasource"})
    token: str = "glsa_good"
    org_id: int = 3  # not the default org: the token's org must be used
    datasources: dict[str, JSON] = field(default_factory=dict)   # by uid
    folders: dict[str, JSON] = field(default_factory=dict)       # by uid
    dashboards: dict[str, JSON] = field(default_factory=dict)    # by uid: {"dashboard", "folderUid"}
    rule_groups: dict[tuple[str, str], JSON] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)  # rule uid -> provenance, as Grafana keeps it apart
    links: dict[str, tuple[str, int] | None] = field(default_factory=dict)  # rule uid -> (dashboard uid, panel id)
    calls: list[tuple[str, str, Any, dict]] = field(default_factory=list)
    # (method, path regex) -> (status, body): a failure to inject, checked before normal handling
    failures: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    before_save: Callable[[str], None] | None = None  # runs before POST /api/dashboards/db is handled
    _next_id: int = 1

    # -- helpers for tests ----------------------------------------------------------------------
    @property
    def writes(self) -> list[tuple[str, str, Any, dict]]:
        return [c for c in self.calls if c[0] in ("POST", "PUT", "DELETE", "PATCH")]

    def fail(self, method: str, path_regex: str, status: int, body: Any) -> None:
        self.failures[(method, path_regex)] = (status, body)

    def ui_edit(self, uid: str, **changes: Any) -> None:
        """What saving from Grafana's UI does: a new model (our unknown key dropped), version + 1."""
        stored = self.dashboards[uid]["dashboard"]
        model = {k: v for k, v in stored.items() if k != "__aa_hash"}
        model.update(changes)
        model["version"] = stored["version"] + 1
        self.dashboards[uid]["dashboard"] = model

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    # -- wiring ---------------------------------------------------------------------------------
    def register(self, rsps: responses.RequestsMock) -> None:
        for method in ("GET", "POST", "PUT", "DELETE"):
            rsps.add_callback(method, re.compile(re.escape(BASE) + r"/.*"), callback=self._handle)

    def _handle(self, request) -> tuple[int, dict, str]:
        parts = urlsplit(request.url)
        path = unquote(parts.path)
        body = json.loads(request.body) if request.body else None
        self.calls.append((request.method, path, body, dict(request.headers)))
        for (method, rx), (status, fbody) in self.failures.items():
            if method == request.method and re.fullmatch(rx, path):
                return self._json(status, fbody)
        if path == "/api/health":  # the one endpoint without authentication
            return self._json(200, {"commit": "0a1b2c3", "database": "ok", "version": "11.6.0"})
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._json(401, {"message": "Invalid API key", "messageId": "api-keys.invalid",
                                    "statusCode": 401, "traceID": ""})
        for rx, handler in self._routes():
            m = re.fullmatch(rx[1], path)
            if m and rx[0] == request.method:
                return handler(body, request, *m.groups())
        return self._json(404, {"message": "Not found"})

    def _routes(self):
        return [
            (("GET", r"/api/plugins/([^/]+)/settings"), self._plugin),
            (("GET", r"/api/org"), self._org),
            (("GET", r"/api/datasources/uid/([^/]+)"), self._ds_get),
            (("GET", r"/api/datasources/name/([^/]+)"), self._ds_by_name),
            (("POST", r"/api/datasources"), self._ds_create),
            (("PUT", r"/api/datasources/uid/([^/]+)"), self._ds_update),
            (("GET", r"/api/folders"), self._folder_list),
            (("GET", r"/api/folders/([^/]+)"), self._folder_get),
            (("POST", r"/api/folders"), self._folder_create),
            (("GET", r"/api/dashboards/uid/([^/]+)"), self._dash_get),
            (("POST", r"/api/dashboards/db"), self._dash_save),
            (("GET", r"/api/v1/provisioning/folder/([^/]+)/rule-groups/([^/]+)"), self._group_get),
            (("PUT", r"/api/v1/provisioning/folder/([^/]+)/rule-groups/([^/]+)"), self._group_put),
        ]

    @staticmethod
    def _json(status: int, body: Any) -> tuple[int, dict, str]:
        return status, {"Content-Type": "application/json"}, json.dumps(body)

    # -- plugins --------------------------------------------------------------------------------
    def _plugin(self, body, request, plugin_id):
        if plugin_id not in self.plugins:
            return self._json(404, {"message": "Plugin not found, no installed plugin with that id"})
        return self._json(200, {"name": plugin_id, "type": "datasource", "id": plugin_id, "enabled": False,
                                "pinned": False, "info": {"version": "3.2.1"}})

    def _org(self, body, request):
        return self._json(200, {"id": self.org_id, "name": "Platform",
                                "address": {"address1": "", "address2": "", "city": "", "zipCode": "",
                                            "state": "", "country": ""}})

    # -- data sources ---------------------------------------------------------------------------
    def _ds_view(self, ds: JSON) -> JSON:
        return copy.deepcopy(ds)

    def _ds_get(self, body, request, uid):
        if uid not in self.datasources:
            return self._json(404, {"message": "Data source not found"})
        return self._json(200, self._ds_view(self.datasources[uid]))

    def _ds_by_name(self, body, request, name):
        for ds in self.datasources.values():
            if ds["name"] == name:
                return self._json(200, self._ds_view(ds))
        return self._json(404, {"message": "Data source not found"})

    def _store_ds(self, body: JSON, old: JSON | None) -> JSON:
        secure = dict((old or {}).get("secureJsonFields") or {})
        for k in (body.get("secureJsonData") or {}):
            secure[k] = True
        self.secrets = getattr(self, "secrets", {})
        for k, v in (body.get("secureJsonData") or {}).items():
            self.secrets[(body["uid"], k)] = v
        ds = {"id": (old or {}).get("id") or self._id(), "uid": body["uid"], "orgId": self.org_id, "name": body["name"],
              "type": body["type"], "typeLogoUrl": "", "access": body.get("access", "proxy"),
              "url": body.get("url", ""), "user": "", "database": "", "basicAuth": bool(body.get("basicAuth")),
              "basicAuthUser": "", "withCredentials": False, "isDefault": bool(body.get("isDefault")),
              "jsonData": body.get("jsonData") or {}, "secureJsonFields": secure,
              "version": ((old or {}).get("version") or 0) + 1, "readOnly": False}
        self.datasources[body["uid"]] = ds
        return ds

    def _ds_create(self, body, request):
        if any(d["name"] == body["name"] for d in self.datasources.values()):
            return self._json(409, {"message": "data source with the same name already exists"})
        ds = self._store_ds(body, None)
        return self._json(200, {"datasource": self._ds_view(ds), "id": ds["id"], "message": "Datasource added",
                                "name": ds["name"]})

    def _ds_update(self, body, request, uid):
        old = self.datasources.get(uid)
        if old is None:
            return self._json(404, {"message": "Data source not found"})
        # datasources/service/store.go UpdateDataSource: `version < stored` matches no row, so an
        # older version is refused (ErrDataSourceUpdatingOldVersion, a 409); a newer one is allowed
        # on purpose ("to force updates ... from the datasource.yaml file").
        if body.get("version") and body["version"] < old["version"]:
            return self._json(409, {"message": "Datasource has already been updated by someone else"})
        ds = self._store_ds({**body, "uid": uid}, old)
        return self._json(200, {"datasource": self._ds_view(ds), "id": ds["id"], "message": "Datasource updated",
                                "name": ds["name"]})

    # -- folders --------------------------------------------------------------------------------
    def _folder_view(self, f: JSON) -> JSON:
        return {"id": f["id"], "uid": f["uid"], "title": f["title"], "url": f"/dashboards/f/{f['uid']}/x",
                "hasAcl": False, "canSave": True, "canEdit": True, "canAdmin": True, "createdBy": "admin",
                "created": "2026-01-31T17:43:12Z", "updatedBy": "admin", "updated": "2026-01-31T17:43:12Z",
                "version": f["version"]}

    def _folder_list(self, body, request):
        return self._json(200, [{"id": f["id"], "uid": f["uid"], "title": f["title"]} for f in self.folders.values()])

    def _folder_get(self, body, request, uid):
        if uid not in self.folders:
            return self._json(404, {"message": "folder not found", "status": "not-found"})
        return self._json(200, self._folder_view(self.folders[uid]))

    def _folder_create(self, body, request):
        if any(f["title"] == body["title"] for f in self.folders.values()):
            return self._json(409, {"message": "a folder with the same name already exists"})
        f = {"id": self._id(), "uid": body.get("uid") or f"f{self._next_id}", "title": body["title"], "version": 1}
        self.folders[f["uid"]] = f
        return self._json(200, self._folder_view(f))

    # -- dashboards -----------------------------------------------------------------------------
    def _dash_get(self, body, request, uid):
        if uid not in self.dashboards:
            return self._json(404, {"message": "Dashboard not found"})
        d = self.dashboards[uid]
        model = d["dashboard"]
        return self._json(200, {"dashboard": copy.deepcopy(model), "meta": {
            "type": "db", "canSave": True, "canEdit": True, "slug": model["title"].lower().replace(" ", "-"),
            "url": f"/d/{uid}/x", "version": model["version"], "folderUid": d["folderUid"],
            "folderTitle": self.folders.get(d["folderUid"], {}).get("title", ""),
            "provisioned": bool(d.get("provisioned"))}})

    def _dash_save(self, body, request):
        model = copy.deepcopy(body["dashboard"])
        uid = model["uid"]
        if self.before_save:
            self.before_save(uid)
        folder = body.get("folderUid") or ""
        if folder and folder not in self.folders:
            return self._json(400, {"message": "folder not found", "status": "not-found"})
        for other_uid, d in self.dashboards.items():
            if other_uid != uid and d["folderUid"] == folder and d["dashboard"]["title"] == model["title"]:
                return self._json(412, {"message": "A dashboard with the same name in the folder already exists",
                                        "status": "name-exists"})
        old = self.dashboards.get(uid)
        # dashboards/service getExistingDashboardByIDOrUIDForUpdate: someone saved in between.
        if old is not None and not body.get("overwrite") and model.get("version") != old["dashboard"]["version"]:
            return self._json(412, {"message": "The dashboard has been changed by someone else",
                                    "status": "version-mismatch"})
        model["id"] = old["dashboard"]["id"] if old else self._id()
        model["version"] = old["dashboard"]["version"] + 1 if old else 1
        # Grafana's Go backend stores numbers as float64 and prints integral ones without ".0".
        self.dashboards[uid] = {"dashboard": json.loads(json.dumps(model)), "folderUid": folder}
        slug = model["title"].lower().replace(" ", "-")
        return self._json(200, {"id": model["id"], "uid": uid, "url": f"/d/{uid}/{slug}", "status": "success",
                                "version": model["version"], "slug": slug})

    # -- alert rule groups ----------------------------------------------------------------------
    def _group_get(self, body, request, folder_uid, group):
        g = self.rule_groups.get((folder_uid, group))
        if g is None:
            return self._json(404, {"message": "rule group does not exist"})
        return self._json(200, copy.deepcopy(g))

    def _group_put(self, body, request, folder_uid, group):
        if folder_uid not in self.folders:
            return self._json(404, {"message": "folder does not exist"})
        # api_provisioning.go determineProvenance: the header's presence, whatever its value.
        provenance = PROVENANCE_NONE if request.headers.get("X-Disable-Provenance") is not None else PROVENANCE_API
        old = {r["uid"]: r for r in (self.rule_groups.get((folder_uid, group)) or {}).get("rules", [])}
        rules = []
        for r in body["rules"]:
            try:
                link = validate_rule(r, int(body["interval"]))
            except RuleInvalid as exc:
                # api_provisioning.go RoutePutAlertRuleGroup: ErrAlertRuleFailedValidation -> 400.
                return self._json(400, {"message": str(exc)})
            stored_provenance = self.provenance.get(r["uid"], old.get(r["uid"], {}).get("provenance", PROVENANCE_NONE))
            if (r["uid"] in self.provenance or r["uid"] in old) and not can_update_provenance(stored_provenance, provenance):
                # provisioning/alert_rules.go persistDelta: errProvenanceMismatch, a 409.
                return self._json(409, {"message": f"cannot update with provided provenance '{provenance}', "
                                                   f"needs '{stored_provenance}'"})
            stored = copy.deepcopy(r)
            # Stricter than Grafana needs to be: proves the installer sends the token's org.
            if stored.get("orgID") != self.org_id:
                return self._json(400, {"message": f"rule {r.get('uid')}: orgID does not match the request's org"})
            stored.update({"id": self._id(), "folderUID": folder_uid, "ruleGroup": group,
                           "updated": "2026-11-25T12:00:00Z", "provenance": provenance,
                           "for": _dur(_seconds(str(r.get("for") or "0s")) if not str(r.get("for", "")).isdigit()
                                       else int(r["for"]))})
            stored["_link"] = link
            for q in stored["data"]:
                q.setdefault("queryType", "")
                q["model"].setdefault("intervalMs", 1000)  # Grafana's defaults on save
                q["model"].setdefault("maxDataPoints", 43200)
            rules.append(stored)
        for r in rules:
            self.provenance[r["uid"]] = provenance
            self.links[r["uid"]] = r.pop("_link")
        g = {"title": group, "folderUid": folder_uid, "interval": body["interval"], "rules": rules}
        self.rule_groups[(folder_uid, group)] = g
        return self._json(200, copy.deepcopy(g))

    # -- file provisioning ----------------------------------------------------------------------
    def folder_by_title(self, title: str) -> JSON | None:
        return next((f for f in self.folders.values() if f["title"] == title), None)

    def provision_files(self, provisioning_dir: Path, mounts: dict[str, Path]) -> list[str]:
        """Grafana's start-up over a provisioning directory, in Grafana's order
        (provisioning.go: RunInitProvisioners runs data sources, plugins, then alerting during
        server Init; dashboards follow in the background service's Run). `mounts` maps the paths
        the files name (container paths) to local directories. Returns what Grafana would log as
        errors; an alerting error stops Grafana from starting, so nothing after it runs."""
        errors: list[str] = []
        for path in sorted((provisioning_dir / "datasources").glob("*.y*ml")):
            for ds in (yaml.safe_load(path.read_text()) or {}).get("datasources") or []:
                self.datasources[ds["uid"]] = {"uid": ds["uid"], "name": ds["name"], "type": ds["type"],
                                               "readOnly": True, "version": 1, "jsonData": ds.get("jsonData") or {}}
        try:
            for path in sorted((provisioning_dir / "alerting").glob("*.y*ml")):
                self._provision_alerting_file(yaml.safe_load(path.read_text()) or {}, path.name)
        except RuleInvalid as exc:
            return [f"Failed to provision alerting: {exc}"]
        for path in sorted((provisioning_dir / "dashboards").glob("*.y*ml")):
            for provider in (yaml.safe_load(path.read_text()) or {}).get("providers") or []:
                err = self._provision_dashboard_provider(provider, mounts)
                if err:
                    errors.append(err)
        return errors

    def _folder_for_provisioning(self, uid: str | None, title: str) -> tuple[str | None, str]:
        """dashboards/file_reader.go getOrCreateFolder (by uid when the provider names one, else
        by title) and alerting/rules_provisioner.go getOrCreateFolderByTitle (by title, created
        with a generated uid). Creating a folder whose title a root folder already has is
        refused (folderimpl: ErrFolderSameNameExists)."""
        found = self.folders.get(uid) if uid else self.folder_by_title(title)
        if found is not None:
            return found["uid"], ""
        if self.folder_by_title(title) is not None:
            return None, f"a folder with the same name already exists: {title!r}"
        new_uid = uid or f"gen{self._id():06d}"  # util.GenerateShortUID
        self.folders[new_uid] = {"id": self._id(), "uid": new_uid, "title": title, "version": 1}
        return new_uid, ""

    def _provision_alerting_file(self, doc: JSON, name: str) -> None:
        """alerting/rules_types.go AlertRuleGroupV1.MapToModel and AlertRuleV1.mapToModel, then
        rules_provisioner.go Provision: folder by title, CreateAlertRule per rule (which runs
        SetDashboardAndPanelFromAnnotations), UpdateRuleGroup (the interval check)."""
        for g in doc.get("groups") or []:
            if not str(g.get("name") or "").strip():
                raise RuleInvalid(f"{name}: rule group has no name set")
            if not str(g.get("folder") or "").strip():
                raise RuleInvalid(f"{name}: rule group has no folder set")
            interval = _seconds(str(g.get("interval") or "0s"))
            folder_uid, err = self._folder_for_provisioning(None, str(g["folder"]))
            if folder_uid is None:
                raise RuleInvalid(f"{name}: failed to get or create folder: {err}")
            rules = []
            for r in g.get("rules") or []:
                for key, what in (("title", "no title set"), ("uid", "no UID set"), ("condition", "no condition set"),
                                  ("data", "no data set")):
                    if not r.get(key):
                        raise RuleInvalid(f"{name}: rule '{r.get('title')}' failed to parse: {what}")
                # The file's own fields, then the annotations, which win when present.
                link = (str(r.get("dashboardUid") or r.get("dasboardUid") or ""), int(r.get("panelId") or 0))
                api_like = {**r, "orgID": int(g.get("orgId") or 1)}
                from_annotations = validate_rule(api_like, interval)
                stored = copy.deepcopy(r)
                stored.update({"folderUID": folder_uid, "ruleGroup": g["name"], "provenance": PROVENANCE_FILE,
                               "for": _dur(_seconds(str(r.get("for") or "0s")))})
                self.provenance[r["uid"]] = PROVENANCE_FILE
                self.links[r["uid"]] = from_annotations or (link if link[0] else None)
                rules.append(stored)
            if interval <= 0 or interval % BASE_INTERVAL_S:
                raise RuleInvalid(f"{name}: {INVALID_RULE}: interval ({_go_duration(interval)}) should be non-zero "
                                  f"and divided exactly by scheduler interval: {BASE_INTERVAL_S}")
            self.rule_groups[(folder_uid, g["name"])] = {"title": g["name"], "folderUid": folder_uid,
                                                         "interval": interval, "rules": rules}

    def _provision_dashboard_provider(self, provider: JSON, mounts: dict[str, Path]) -> str:
        folder_uid, err = self._folder_for_provisioning(provider.get("folderUid"), str(provider.get("folder") or ""))
        if folder_uid is None:
            # provisioning.go Run: ErrGetOrCreateFolder is logged and Grafana carries on without them.
            return f"provider {provider.get('name')!r}: failed to get or create folder: {err}"
        local = mounts.get(str((provider.get("options") or {}).get("path")))
        if local is None:
            return f"provider {provider.get('name')!r}: path not mounted"
        for path in sorted(local.glob("*.json")):
            model = json.loads(path.read_text())
            model["version"] = 1
            self.dashboards[model["uid"]] = {"dashboard": model, "folderUid": folder_uid, "provisioned": True}
        return ""
