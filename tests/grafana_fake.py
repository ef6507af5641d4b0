"""Grafana's HTTP API as its documentation describes it, served through `responses`, with enough
state that a second install sees what the first one wrote.

Shapes follow Grafana's HTTP API docs (docs/sources/developers/http_api/: data_source.md,
folder.md, dashboard.md, alerting_provisioning.md): answers, status codes, 404 and 412 bodies.
Where Grafana adds its own fields on save (ids, versions, secureJsonFields, provenance, query
defaults intervalMs/maxDataPoints) the fake adds them too, so the installer's comparisons are
tested against what a real Grafana would return."""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

import responses

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
        if body.get("version") is not None and body["version"] != old["version"]:
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
            "folderTitle": self.folders.get(d["folderUid"], {}).get("title", ""), "provisioned": False}})

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
        editable = request.headers.get("X-Disable-Provenance") is not None
        rules = []
        for r in body["rules"]:
            stored = copy.deepcopy(r)
            # Stricter than Grafana needs to be: proves the installer sends the token's org.
            if stored.get("orgID") != self.org_id:
                return self._json(400, {"message": f"rule {r.get('uid')}: orgID does not match the request's org"})
            stored.update({"id": self._id(), "folderUID": folder_uid, "ruleGroup": group,
                           "updated": "2026-11-25T12:00:00Z", "provenance": "" if editable else "api",
                           "for": _dur(_seconds(str(r.get("for") or "0s")) if not str(r.get("for", "")).isdigit()
                                       else int(r["for"]))})
            for q in stored["data"]:
                q.setdefault("queryType", "")
                q["model"].setdefault("intervalMs", 1000)  # Grafana's defaults on save
                q["model"].setdefault("maxDataPoints", 43200)
            rules.append(stored)
        g = {"title": group, "folderUid": folder_uid, "interval": body["interval"], "rules": rules}
        self.rule_groups[(folder_uid, group)] = g
        return self._json(200, copy.deepcopy(g))
