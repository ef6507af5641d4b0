"""Apply the plan to a Grafana: data source, folder, dashboards, alert rule groups, in that
order (each needs the one before). Every object gets a line in the report, including what
failed and what was not attempted, so a partial install is never silent."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_analytics.grafana import sources
from agent_analytics.grafana.client import GrafanaClient, GrafanaError
from agent_analytics.grafana.plan import (Decision, Kind, plan_dashboard, plan_datasource, plan_folder,
                                          plan_rule_group)
from agent_analytics.grafana.sources import Plugin

JSON = dict[str, Any]

SAVE_MESSAGE = "agent-analytics grafana install"


@dataclass
class Options:
    plugin: Plugin
    service_url: str
    query_token: str | None
    folder_title: str | None = None  # default: the plugin's
    folder_uid: str | None = None
    datasource_name: str | None = None
    datasource_uid: str | None = None
    dashboards_dir: Path | None = None
    provisioning_dir: Path | None = None
    force: bool = False
    update_token: bool = False
    editable_alerts: bool = False
    dry_run: bool = False


# Outcomes in the report, beyond the plan's kinds.
CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"
EDITED, SKIPPED, FAILED, NOT_ATTEMPTED = "left alone", "skipped", "FAILED", "not attempted"
_DRY = {Kind.CREATE: "would create", Kind.UPDATE: "would update"}


@dataclass
class Item:
    what: str    # "data source", "folder", "dashboard", "alert rule group"
    name: str
    outcome: str = NOT_ATTEMPTED
    detail: str = ""

    def line(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"  {self.what:<17} {self.name}: {self.outcome}{detail}"


@dataclass
class Report:
    grafana: str = ""
    dry_run: bool = False
    items: list[Item] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""  # the failure that stopped the run, if one did

    @property
    def ok(self) -> bool:
        return not self.error and not any(i.outcome in (FAILED, NOT_ATTEMPTED) for i in self.items)

    def count(self, outcome: str) -> int:
        return sum(1 for i in self.items if i.outcome == outcome)

    def text(self) -> str:
        head = f"Grafana {self.grafana}" + (" -- dry run, nothing written" if self.dry_run else "")
        lines = [head] + [i.line() for i in self.items] + [f"note: {n}" for n in self.notes]
        if self.dry_run:
            planned = sum(1 for i in self.items if i.outcome.startswith("would"))
            lines.append(f"plan: {planned} to write, {self.count(UNCHANGED)} unchanged, "
                         f"{self.count(EDITED)} left alone, {self.count(SKIPPED)} skipped")
        else:
            lines.append(f"summary: {self.count(CREATED)} created, {self.count(UPDATED)} updated, "
                         f"{self.count(UNCHANGED)} unchanged, {self.count(EDITED)} left alone, "
                         f"{self.count(SKIPPED)} skipped, {self.count(FAILED)} failed, "
                         f"{self.count(NOT_ATTEMPTED)} not attempted")
        if self.error:
            lines.append(f"error: {self.error}")
        if not self.ok and not self.dry_run:
            done = self.count(CREATED) + self.count(UPDATED)
            lines.append("The installation is INCOMPLETE: items marked FAILED or 'not attempted' are not "
                         f"in Grafana{f'; the {done} created or updated are' if done else ''}. Fix the cause "
                         "and run the command again: it is safe to repeat.")
        return "\n".join(lines)


class Stop(Exception):
    """Nothing after this point can be installed (its dependency failed)."""


class Installer:
    def __init__(self, client: GrafanaClient, options: Options) -> None:
        self.client = client
        self.o = options
        self.report = Report(grafana=client.base, dry_run=options.dry_run)
        self._folder_created = False
        self.org_id = 1

    # -- entry point ----------------------------------------------------------------------------
    def run(self) -> Report:
        o = self.o
        prov_dir = o.provisioning_dir or sources.default_provisioning_dir()
        defaults = sources.datasource_defaults(o.plugin, prov_dir)
        ds_name = o.datasource_name or defaults.name
        ds_uid = o.datasource_uid or defaults.uid
        dashboards = sources.load_dashboards(o.dashboards_dir or sources.default_dashboards_dir(o.plugin))
        groups, groups_from = sources.load_alert_groups(prov_dir / "alerting")
        if not groups and o.plugin.alerting:
            self.report.notes.append(f"no alert rules installed: none found in {groups_from}")
        self.folder_title = o.folder_title or o.plugin.folder_title
        folder_uid = o.folder_uid or (_slug(o.folder_title) if o.folder_title else o.plugin.folder_uid)

        ds_item = self._add("data source", f"{ds_name!r} ({o.plugin.id})")
        folder_item = self._add("folder", f"{self.folder_title!r}")
        dash_items = [self._add("dashboard", f"{d.model['title']!r} (uid {d.model['uid']})") for d in dashboards]
        group_items = [self._add("alert rule group", f"{g.name!r} ({len(g.rules)} rule{'s' * (len(g.rules) != 1)})") for g in groups]
        if groups and not o.plugin.alerting:
            for it in group_items:
                it.outcome, it.detail = SKIPPED, f"{o.plugin.id} cannot run alert rules; use --plugin infinity"
            group_items = []

        try:
            self._preflight()
            ds_uid = self._datasource(ds_item, ds_name, ds_uid)
            folder_uid = self._folder(folder_item, folder_uid)
            for d, it in zip(dashboards, dash_items):
                desired = sources.desired_dashboard(d.model, o.plugin, ds_uid, defaults.source_uids, ds_name)
                self._guard(it, lambda: self._dashboard(it, desired, folder_uid))
            for g, it in zip(groups, group_items):
                desired = sources.api_rule_group(g, folder_uid, ds_uid, self.org_id)
                self._guard(it, lambda: self._rule_group(it, desired, folder_uid))
        except Stop:
            pass
        return self.report

    # -- steps ----------------------------------------------------------------------------------
    def _add(self, what: str, name: str) -> Item:
        item = Item(what, name)
        self.report.items.append(item)
        return item

    def _guard(self, item: Item, step) -> None:
        """Run one independent step; its failure is reported and the next step still runs,
        unless no later request can succeed (bad token, Grafana unreachable)."""
        try:
            step()
        except GrafanaError as exc:
            item.outcome, item.detail = FAILED, str(exc)
            if exc.fatal:
                self.report.error = str(exc)
                raise Stop from None

    def _preflight(self) -> None:
        try:
            health = self.client.health()
            version = health.get("version")
            self.report.grafana += f" (version {version})" if version else ""
            plugin = self.client.plugin_settings(self.o.plugin.id)
            self.org_id = int(self.client.current_org().get("id") or 1)
        except GrafanaError as exc:
            hint = " (is --url Grafana's root URL?)" if exc.status == 404 else ""
            self.report.error = str(exc) + hint
            raise Stop from None
        if plugin is None:
            self.report.error = (f"the {self.o.plugin.id} plugin is not installed in this Grafana: nothing "
                                 f"was written. {self.o.plugin.install_hint()}")
            raise Stop

    def _datasource(self, item: Item, name: str, uid: str) -> str:
        o = self.o
        try:
            live = self.client.get_datasource(uid)
            if live is None:
                by_name = self.client.get_datasource_by_name(name)
                if by_name is not None:
                    if by_name.get("type") != o.plugin.id:
                        self._fail(item, f"a {by_name.get('type')} data source is already named {name!r}: "
                                         "choose another with --datasource-name")
                        raise Stop
                    live, uid = by_name, str(by_name["uid"])  # adopt the one the team made by hand
            body = self._datasource_body(name, uid)
            decision = plan_datasource(body, live, bool(o.query_token), o.update_token)
            if decision.kind is Kind.SKIP:
                self._fail(item, decision.reason)
                raise Stop
            item.name += f" uid {uid}"
            if not o.query_token and (live is None or not (live.get("secureJsonFields") or {}).get("httpHeaderValue1")):
                self.report.notes.append("no query token given (--query-token or AA_GRAFANA_QUERY_TOKEN): the data "
                                         "source sends no Authorization header, so the service will refuse it "
                                         "unless it runs with AA_ALLOW_NO_AUTH")
            self._apply(item, decision, lambda: self._write_datasource(decision, body, live, uid))
        except GrafanaError as exc:
            self._fail(item, str(exc))
            self.report.error = f"the data source could not be installed, so nothing that uses it was: {exc}"
            raise Stop from None
        return uid

    def _datasource_body(self, name: str, uid: str) -> JSON:
        o = self.o
        service = o.service_url.rstrip("/")
        json_data: JSON = {}
        if o.query_token:
            json_data["httpHeaderName1"] = "Authorization"
        if o.plugin.key == "infinity":
            # Infinity only sends its secure headers to hosts on this list.
            json_data["allowedHosts"] = [service]
        return {"name": name, "type": o.plugin.id, "uid": uid, "access": "proxy",
                "url": service + o.plugin.url_suffix, "basicAuth": False, "jsonData": json_data}

    def _write_datasource(self, decision: Decision, body: JSON, live: JSON | None, uid: str) -> None:
        o = self.o
        send = dict(body)
        if o.query_token and (decision.kind is Kind.CREATE or o.update_token
                              or not (live or {}).get("secureJsonFields", {}).get("httpHeaderValue1")):
            send["secureJsonData"] = {"httpHeaderValue1": f"Bearer {o.query_token}"}
        if decision.kind is Kind.CREATE:
            self.client.create_datasource(send)
            return
        assert live is not None
        # Keep what the team set beyond our keys (timeouts, TLS, ...); ours win.
        send["jsonData"] = {**(live.get("jsonData") or {}), **body["jsonData"]}
        send["isDefault"] = bool(live.get("isDefault"))
        if live.get("version") is not None:
            send["version"] = live["version"]
        self.client.update_datasource(uid, send)

    def _folder(self, item: Item, uid: str) -> str:
        title = self.folder_title
        try:
            live = self.client.get_folder(uid)
            if live is None:
                same_title = [f for f in self.client.list_folders() if f.get("title") == title]
                if same_title:
                    live, uid = same_title[0], str(same_title[0]["uid"])
            item.name += f" uid {uid}"
            decision = plan_folder(title, live)
            self._apply(item, decision, lambda: self.client.create_folder(uid, title))
        except GrafanaError as exc:
            self._fail(item, str(exc))
            self.report.error = f"the folder could not be installed, so no dashboard or alert rule was: {exc}"
            raise Stop from None
        self._folder_created = item.outcome in (CREATED, _DRY[Kind.CREATE])
        return uid

    def _dashboard(self, item: Item, desired: JSON, folder_uid: str) -> None:
        live = self.client.get_dashboard(desired["uid"])
        decision = plan_dashboard(desired, live, folder_uid, self.o.force)

        def write() -> None:
            body = dict(desired)
            if live is not None:
                # Optimistic concurrency: Grafana answers 412 if someone saved since our read.
                body["version"] = (live.get("dashboard") or {}).get("version")
            # --force also replaces a same-titled dashboard in the folder (412 name-exists otherwise).
            result = self.client.save_dashboard(body, folder_uid, overwrite=self.o.force, message=SAVE_MESSAGE)
            if result.get("url"):
                item.detail = (item.detail + "; " if item.detail else "") + f"{result['url']} version {result.get('version')}"

        self._apply(item, decision, write)

    def _rule_group(self, item: Item, desired: JSON, folder_uid: str) -> None:
        # A folder created by this dry run does not exist yet: its groups cannot either.
        if self._folder_created and self.o.dry_run:
            live = None
        else:
            live = self.client.get_rule_group(folder_uid, desired["title"])
        decision = plan_rule_group(desired, live, self.o.editable_alerts, self.o.force)
        self._apply(item, decision, lambda: self.client.put_rule_group(
            folder_uid, desired["title"], desired, editable=self.o.editable_alerts))

    # -- outcome bookkeeping --------------------------------------------------------------------
    def _apply(self, item: Item, decision: Decision, write) -> None:
        item.detail = decision.reason
        if decision.kind is Kind.UNCHANGED:
            item.outcome = UNCHANGED
        elif decision.kind is Kind.SKIP_EDITED:
            item.outcome = EDITED
        elif decision.kind is Kind.SKIP:
            item.outcome = SKIPPED
        elif self.o.dry_run:
            item.outcome = _DRY[decision.kind]
        else:
            write()
            item.outcome = CREATED if decision.kind is Kind.CREATE else UPDATED

    def _fail(self, item: Item, message: str) -> None:
        item.outcome, item.detail = FAILED, message
        if not self.report.error:
            self.report.error = message


def _slug(title: str) -> str:
    out = "".join(c if c.isalnum() else "-" for c in title.lower())
    out = "-".join(p for p in out.split("-") if p)
    return (out or "agent-analytics")[:40]
