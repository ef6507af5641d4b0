"""Write the dashboards (and alert rule files) for one data source uid, for teams that keep
their Grafana objects in git and apply them with their own tooling."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from agent_analytics.grafana import sources
from agent_analytics.grafana.sources import Plugin


def export(plugin: Plugin, datasource_uid: str, out_dir: Path, dashboards_dir: Path | None = None,
           provisioning_dir: Path | None = None, include_alerts: bool = True) -> list[Path]:
    """Write <out>/<file>.json per dashboard and, for a plugin that can alert,
    <out>/alerting/<file>.yaml per alert file; returns the paths written."""
    prov_dir = provisioning_dir or sources.default_provisioning_dir()
    defaults = sources.datasource_defaults(plugin, prov_dir)
    dashboards = sources.load_dashboards(dashboards_dir or sources.default_dashboards_dir(plugin))
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for d in dashboards:
        model = sources.exported_dashboard(d.model, plugin, datasource_uid, defaults.source_uids)
        path = out_dir / d.path.name
        path.write_text(json.dumps(model, indent=2, sort_keys=False) + "\n")
        written.append(path)
    if include_alerts and plugin.alerting:
        docs, _ = sources.alert_documents(prov_dir / "alerting")
        for name, doc in docs:
            if not doc.get("groups"):
                continue
            sources.groups_from_doc(doc, prov_dir / "alerting" / name)  # what Grafana would refuse, refused here
            (out_dir / "alerting").mkdir(exist_ok=True)
            path = out_dir / "alerting" / name
            path.write_text(yaml.safe_dump(sources.exported_alert_file(doc, datasource_uid), sort_keys=False))
            written.append(path)
    return written
