"""Which blueprints each listener serves: ingest on the OTLP port, queries on the query port."""
from __future__ import annotations

from flask import Flask


def register(app: Flask, role: str) -> None:
    if role in ("all", "ingest"):
        pass  # the OTLP receiver and directory API register here (ingest/)
    if role in ("all", "query"):
        pass  # the Grafana JSON protocol and the JSON API register here (datasource/)
