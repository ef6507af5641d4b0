"""Which blueprints each listener serves: ingest on the OTLP port, queries on the query port.
Each area module exposes `register(app)`; listed here by role."""
from __future__ import annotations

import importlib

from flask import Flask

AREAS: dict[str, list[str]] = {
    "ingest": ["agent_analytics.ingest.http"],  # the OTLP receiver and the directory API
    "query": ["agent_analytics.datasource.grafana_face", "agent_analytics.datasource.json_api"],  # Grafana JSON protocol, JSON API
}


def register(app: Flask, role: str) -> None:
    for area_role, modules in AREAS.items():
        if role in ("all", area_role):
            for name in modules:
                importlib.import_module(name).register(app)
