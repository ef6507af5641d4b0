"""The repository's generated dashboards and Grafana provisioning files, read as the tests need
them."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROVISIONING = ROOT / "provisioning"


def load(variant_key: str, name: str) -> dict:
    """A committed dashboard's JSON."""
    return json.loads((ROOT / "dashboards" / variant_key / f"{name}.json").read_text())


def metric_of(variant_key: str, target: dict) -> str:
    """The metric a panel's query target asks for, in either plugin's shape."""
    if variant_key == "json":
        return target["target"]
    return re.match(r"^/api/v1/query/(\w+)\?", target["url"]).group(1)


def grafana_mounts() -> dict[str, Path]:
    """Container path -> repository directory, from the Grafana service's volumes."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    out: dict[str, Path] = {}
    for volume in compose["services"]["grafana"]["volumes"]:
        parts = str(volume).split(":")
        if parts[0].startswith("./"):
            out[parts[1]] = ROOT / parts[0][2:]
    return out
