"""The generated dashboards against the dashboard model Grafana publishes for the release the stack
pins (docker-compose.yml): `@grafana/schema` from the npm registry, type-checked with TypeScript in
Node.js (tests/grafana_js/check_schema.cjs). The versions the docs name are the ones pinned."""
from __future__ import annotations

import json
import re

import pytest

from tests import grafana_js_support as js

pytest.importorskip("grafana_foundation_sdk")

from agent_analytics.dashboards import generate  # noqa: E402
from agent_analytics.dashboards.tabs import DASHBOARDS  # noqa: E402
from agent_analytics.dashboards.variants import VARIANTS  # noqa: E402

ROOT = generate.REPO_ROOT


def _compose_pins() -> tuple[str, dict[str, str]]:
    compose = (ROOT / "docker-compose.yml").read_text()
    grafana = re.search(r"image: grafana/grafana:(\S+)", compose).group(1)
    plugins = dict(p.split("@") for p in re.search(r"GF_PLUGINS_PREINSTALL_SYNC: (\S+)", compose).group(1).split(","))
    return grafana, plugins


def test_the_checks_use_the_pinned_grafana_release_and_the_docs_name_it():
    grafana, plugins = _compose_pins()
    assert js.pinned_version("@grafana/schema") == grafana
    assert js.pinned_version("@grafana/data") == grafana
    docs = (ROOT / "docs" / "dashboards.md").read_text()
    assert f"Grafana {grafana}" in docs
    for plugin, version in plugins.items():
        assert f"`{plugin}` {version}" in docs, plugin
    # The Infinity behaviours the contract tests model are read from this plugin release.
    model = (ROOT / "tests" / "grafana_model.py").read_text()
    assert f"grafana-infinity-datasource\nv{plugins['yesoreyeram-infinity-datasource']}" in model or \
        f"grafana-infinity-datasource v{plugins['yesoreyeram-infinity-datasource']}" in model


def test_every_dashboard_fits_grafanas_published_dashboard_model():
    files = [ROOT / "dashboards" / v.key / f"{n}.json" for v in VARIANTS for n in DASHBOARDS]
    out = js.run("check_schema.cjs", [str(f) for f in files])
    assert js.installed_version("@grafana/schema") == js.pinned_version("@grafana/schema")
    assert out["checked"] == len(files)
    typed = sum(1 for f in files for p in json.loads(f.read_text())["panels"]
                if p["type"] in ("table", "stat", "timeseries", "barchart", "text"))
    assert out["panels"] == typed
    assert out["errors"] == [], "\n".join(out["errors"])


def test_the_model_check_finds_what_grafana_does_not_know(tmp_path):
    """The check fails on an unknown key, a mistyped value and a table option Grafana 13 dropped."""
    d = json.loads((ROOT / "dashboards" / "infinity" / "mcp-usage.json").read_text())
    d["graphTooltipp"] = 1
    table = next(p for p in d["panels"] if p["type"] == "table")
    table["options"]["footer"] = {"show": False}
    stat = next(p for p in d["panels"] if p["type"] == "stat")
    stat["options"]["textMode"] = "loud"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d))
    errors = "\n".join(js.run("check_schema.cjs", [str(bad)])["errors"])
    assert "graphTooltipp" in errors
    assert "'\"footer\"' does not exist" in errors
    assert '"loud"' in errors
