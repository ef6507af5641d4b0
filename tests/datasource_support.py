"""Helpers for the data source tests: asking the JSON API and the Grafana face, and comparing
their answers with the oracle's."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.harness_support import LLM_TOKEN
from tests.datasource_dataset import UTC


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def api(client, metric: str, start: datetime, end: datetime, token: str = LLM_TOKEN, **params: Any) -> dict:
    query = {"from": ms(start), "to": ms(end), **params}
    resp = client.get(f"/api/v1/query/{metric}", query_string=query, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, (metric, params, resp.get_json())
    return resp.get_json()


def grafana(client, targets: list[dict], start: datetime, end: datetime, raw: dict | None = None,
            scoped: dict | None = None, timezone: str = "utc") -> list[dict]:
    body = {"app": "dashboard", "requestId": "Q100", "timezone": timezone, "panelId": 2, "dashboardUID": "aa-mcp",
            "range": {"from": iso(start), "to": iso(end), "raw": raw or {"from": iso(start), "to": iso(end)}},
            "interval": "1h", "intervalMs": 3600000, "maxDataPoints": 1000, "targets": targets,
            "scopedVars": scoped or {"__interval": {"text": "1h", "value": "1h"}}, "startTime": 1, "filters": []}
    resp = client.post("/grafana/query", json=body, headers={"Authorization": f"Bearer {LLM_TOKEN}"})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def field(frame: dict, name: str) -> list:
    return next(f for f in frame["fields"] if f["name"] == name)["values"]


def materialised(client) -> bool:
    """Whether the service reads the aggregates (materialised on both backends) or raw rows."""
    return client.application.config["AA"].read_aggregates


def same(actual: Any, expected: Any) -> bool:
    if expected is None or actual is None:
        return actual is expected
    if isinstance(expected, bool) or isinstance(expected, str):
        return actual == expected
    return actual == pytest.approx(float(expected), rel=1e-9, abs=1e-9)


def assert_rows(actual: list[dict], expected: list[dict], context: Any) -> None:
    assert len(actual) == len(expected), (context, actual[:3], expected[:3])
    for i, (a, e) in enumerate(zip(actual, expected)):
        for k, v in e.items():
            assert same(a.get(k), v), (context, i, k, a.get(k), v, a, e)
