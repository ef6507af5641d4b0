"""`agent-analytics grafana install` and `agent-analytics grafana export`."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_SERVICE_URL = "http://localhost:8080"


def register_commands(subparsers: argparse._SubParsersAction) -> None:
    grafana = subparsers.add_parser("grafana", help="install into an existing Grafana, or export for git")
    sub = grafana.add_subparsers(dest="grafana_command", required=True)

    p = sub.add_parser(
        "install", help="create or update the data source, folder, dashboards and alert rules in a Grafana",
        description="Idempotent: a second run changes nothing. Dashboards edited in Grafana are left "
                    "alone unless --force. Exit status 0 when everything is installed, 1 otherwise.")
    p.add_argument("--url", default=os.environ.get("GRAFANA_URL"),
                   help="Grafana root URL (env GRAFANA_URL)")
    p.add_argument("--token", default=os.environ.get("GRAFANA_TOKEN"),
                   help="service-account token of that Grafana (env GRAFANA_TOKEN, which keeps it out of "
                        "your shell history)")
    _common(p)
    p.add_argument("--service-url", default=DEFAULT_SERVICE_URL,
                   help="this service's query port as Grafana's server reaches it (default %(default)s)")
    p.add_argument("--query-token", default=os.environ.get("AA_GRAFANA_QUERY_TOKEN"),
                   help="a query token of this service, stored by Grafana as a secure header "
                        "(env AA_GRAFANA_QUERY_TOKEN); never printed")
    p.add_argument("--update-token", action="store_true",
                   help="replace the query token stored in an existing data source")
    p.add_argument("--folder", help="folder title (default: Agent Analytics; Agent Analytics (JSON plugin) "
                                    "for --plugin json, so both variants can coexist)")
    p.add_argument("--folder-uid", help="folder uid (default: made from the title)")
    p.add_argument("--datasource-name", help="data source name (default: the provisioning file's)")
    p.add_argument("--datasource-uid", help="data source uid (default: the provisioning file's)")
    p.add_argument("--force", action="store_true",
                   help="overwrite dashboards (and editable alert rules) changed in Grafana")
    p.add_argument("--editable-alerts", action="store_true",
                   help="let people edit the alert rules in Grafana's UI (sends X-Disable-Provenance)")
    p.add_argument("--dry-run", action="store_true", help="print the plan; write nothing")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default %(default)s)")
    p.set_defaults(func=cmd_install)

    p = sub.add_parser("export", help="write the dashboards for a chosen data source uid (for git)")
    _common(p)
    p.add_argument("--datasource-uid", required=True, help="uid of the data source in your Grafana")
    p.add_argument("--out", type=Path, default=Path("grafana-export"), help="output folder (default %(default)s)")
    p.add_argument("--no-alerts", action="store_true", help="dashboards only")
    p.set_defaults(func=cmd_export)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugin", choices=("infinity", "json"), default="infinity",
                   help="Grafana plugin for the data source (default %(default)s; json cannot alert)")
    p.add_argument("--dashboards-dir", type=Path, help="generated dashboards (default: the package's, per plugin)")
    p.add_argument("--provisioning-dir", type=Path,
                   help="provisioning files: datasources/ for defaults, alerting/ for rules")


def cmd_install(args: argparse.Namespace) -> int:
    from agent_analytics.grafana.client import GrafanaClient
    from agent_analytics.grafana.install import Installer, Options
    from agent_analytics.grafana.sources import PLUGINS, SourceError

    if not args.url or not args.token:
        sys.exit("grafana install needs --url and --token (or GRAFANA_URL and GRAFANA_TOKEN)")
    options = Options(
        plugin=PLUGINS[args.plugin], service_url=args.service_url, query_token=args.query_token or None,
        folder_title=args.folder, folder_uid=args.folder_uid, datasource_name=args.datasource_name,
        datasource_uid=args.datasource_uid, dashboards_dir=args.dashboards_dir,
        provisioning_dir=args.provisioning_dir, force=args.force, update_token=args.update_token,
        editable_alerts=args.editable_alerts, dry_run=args.dry_run)
    try:
        report = Installer(GrafanaClient(args.url, args.token, timeout_s=args.timeout), options).run()
    except SourceError as exc:
        sys.exit(f"cannot read what to install: {exc}")
    print(report.text())
    return 0 if report.ok else 1


def cmd_export(args: argparse.Namespace) -> int:
    from agent_analytics.grafana.export import export
    from agent_analytics.grafana.sources import PLUGINS, SourceError

    try:
        written = export(PLUGINS[args.plugin], args.datasource_uid, args.out, args.dashboards_dir,
                         args.provisioning_dir, include_alerts=not args.no_alerts)
    except SourceError as exc:
        sys.exit(f"cannot export: {exc}")
    for path in written:
        print(f"wrote {path}")
    return 0
