"""A small client for the parts of Grafana's HTTP API the installer needs.

Every non-2xx answer becomes a GrafanaError carrying the status, Grafana's own `message` /
`status` fields and a sentence saying what to do about it. Reads of things that may be absent
return None on 404 instead of raising."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

JSON = dict[str, Any]


class GrafanaError(Exception):
    """A request to Grafana failed; `str()` is a message fit for the user."""

    def __init__(self, method: str, path: str, status: int | None, message: str,
                 grafana_status: str = "") -> None:
        self.method = method
        self.path = path
        self.status = status
        self.grafana_message = message
        self.grafana_status = grafana_status  # e.g. "version-mismatch" on a 412
        super().__init__(self._explain())

    @property
    def fatal(self) -> bool:
        """True when no later request can succeed either (bad token, Grafana unreachable)."""
        return self.status is None or self.status == 401

    def _explain(self) -> str:
        where = f"{self.method} {self.path}"
        said = f": Grafana said {self.grafana_message!r}" if self.grafana_message else ""
        if self.status is None:
            return f"cannot reach Grafana ({where}): {self.grafana_message}"
        if self.status == 401:
            return (f"Grafana refused the token (401 on {where}){said}. Check --token: a service-account "
                    "token of this Grafana, not expired")
        if self.status == 403:
            return (f"the token lacks a permission (403 on {where}){said}. Give the service account the "
                    "Admin role, or Editor plus data source write and alert rule write permissions")
        if self.status == 404:
            return f"not found (404 on {where}){said}"
        if self.status == 409:
            return f"conflict (409 on {where}){said}"
        if self.status == 412:
            if self.grafana_status == "version-mismatch":
                return (f"changed in Grafana while installing (412 version-mismatch on {where}){said}. "
                        "Run the command again; add --force to overwrite the other change")
            if self.grafana_status == "name-exists":
                return (f"a dashboard with the same name already exists in the folder (412 name-exists on "
                        f"{where}){said}. Rename or move it, or use --force")
            if self.grafana_status == "plugin-dashboard":
                return f"the dashboard belongs to a plugin (412 plugin-dashboard on {where}){said}"
            return f"precondition failed (412 on {where}){said}"
        if self.status >= 500:
            return (f"Grafana failed with {self.status} on {where}{said}. It is Grafana's own error: "
                    "check its log, then run the command again")
        return f"Grafana answered {self.status} on {where}{said}"


class GrafanaClient:
    """Bearer-token client for one Grafana (one organisation: the token's)."""

    def __init__(self, url: str, token: str, timeout_s: float = 30.0,
                 session: requests.Session | None = None) -> None:
        self.base = url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})

    # -- plumbing -------------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None,
                 absent_ok: bool = False) -> Any:
        try:
            resp = self.session.request(method, self.base + path, json=body, headers=headers,
                                        timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise GrafanaError(method, path, None, f"{type(exc).__name__}: {exc}") from None
        if resp.status_code == 404 and absent_ok:
            return None
        if resp.status_code >= 400:
            message, gstatus = _error_fields(resp)
            raise GrafanaError(method, path, resp.status_code, message, gstatus)
        if not resp.content:
            return {}
        try:
            return resp.json()
        except ValueError:
            raise GrafanaError(method, path, resp.status_code,
                               "the answer is not JSON: is --url the Grafana root URL?") from None

    # -- server ---------------------------------------------------------------------------------
    def health(self) -> JSON:
        """`GET /api/health` -> {"database": "ok", "version": "11.6.0", "commit": ...}."""
        return self._request("GET", "/api/health")

    def plugin_settings(self, plugin_id: str) -> JSON | None:
        """`GET /api/plugins/<id>/settings`; None when the plugin is not installed."""
        return self._request("GET", f"/api/plugins/{quote(plugin_id, safe='')}/settings", absent_ok=True)

    def current_org(self) -> JSON:
        """`GET /api/org` -> {"id": 1, "name": "Main Org.", ...}: the token's organisation."""
        return self._request("GET", "/api/org")

    # -- data sources ---------------------------------------------------------------------------
    def get_datasource(self, uid: str) -> JSON | None:
        return self._request("GET", f"/api/datasources/uid/{quote(uid, safe='')}", absent_ok=True)

    def get_datasource_by_name(self, name: str) -> JSON | None:
        return self._request("GET", f"/api/datasources/name/{quote(name, safe='')}", absent_ok=True)

    def create_datasource(self, body: JSON) -> JSON:
        """`POST /api/datasources` -> {"datasource": {...}, "id", "message", "name"}."""
        return self._request("POST", "/api/datasources", body=body)

    def update_datasource(self, uid: str, body: JSON) -> JSON:
        return self._request("PUT", f"/api/datasources/uid/{quote(uid, safe='')}", body=body)

    # -- folders --------------------------------------------------------------------------------
    def get_folder(self, uid: str) -> JSON | None:
        return self._request("GET", f"/api/folders/{quote(uid, safe='')}", absent_ok=True)

    def list_folders(self) -> list[JSON]:
        return self._request("GET", "/api/folders?limit=1000")

    def create_folder(self, uid: str, title: str) -> JSON:
        return self._request("POST", "/api/folders", body={"uid": uid, "title": title})

    def update_folder(self, uid: str, title: str, version: int) -> JSON:
        return self._request("PUT", f"/api/folders/{quote(uid, safe='')}",
                             body={"title": title, "version": version})

    # -- dashboards -----------------------------------------------------------------------------
    def get_dashboard(self, uid: str) -> JSON | None:
        """`GET /api/dashboards/uid/<uid>` -> {"dashboard": {...}, "meta": {"folderUid", ...}}."""
        return self._request("GET", f"/api/dashboards/uid/{quote(uid, safe='')}", absent_ok=True)

    def save_dashboard(self, dashboard: JSON, folder_uid: str, overwrite: bool, message: str) -> JSON:
        """`POST /api/dashboards/db` -> {"id", "uid", "url", "status", "version", "slug"}.

        Without overwrite, Grafana compares `dashboard.version` with its own and answers 412
        version-mismatch when someone saved in between."""
        return self._request("POST", "/api/dashboards/db", body={
            "dashboard": dashboard, "folderUid": folder_uid, "overwrite": overwrite, "message": message})

    # -- alert rules ----------------------------------------------------------------------------
    def get_rule_group(self, folder_uid: str, group: str) -> JSON | None:
        """`GET /api/v1/provisioning/folder/<folderUid>/rule-groups/<group>` -> AlertRuleGroup."""
        return self._request("GET", _group_path(folder_uid, group), absent_ok=True)

    def put_rule_group(self, folder_uid: str, group: str, body: JSON, editable: bool) -> JSON:
        """Create or replace a whole rule group (its interval and rules) in one request.

        Rules written through the API are locked in Grafana's UI unless X-Disable-Provenance
        is sent."""
        headers = {"X-Disable-Provenance": "true"} if editable else None
        return self._request("PUT", _group_path(folder_uid, group), body=body, headers=headers)


def _group_path(folder_uid: str, group: str) -> str:
    return f"/api/v1/provisioning/folder/{quote(folder_uid, safe='')}/rule-groups/{quote(group, safe='')}"


def _error_fields(resp: requests.Response) -> tuple[str, str]:
    """Grafana answers errors as {"message": ..., "status"?: ...}; the alerting API as {"msg"?}."""
    try:
        data = resp.json()
    except ValueError:
        text = resp.text.strip()
        return (text[:200] if text else resp.reason or ""), ""
    if isinstance(data, dict):
        message = data.get("message") or data.get("msg") or data.get("error") or ""
        return str(message), str(data.get("status") or "")
    return str(data)[:200], ""
