"""Grafana-managed alert rules, provisioned as YAML. They run on the Infinity data source with the
backend parser (the JSON plugin has no backend, so it cannot drive alerts), with the backend time
macros, since alert rules have no dashboard variables."""
from __future__ import annotations

from typing import Any

from agent_analytics.datasource import catalog

from .queries import INFINITY_TYPE, INFINITY_UID, infinity_model

FOLDER = "Agent Analytics"
# A surge: at least this many blocked calls in the last hour...
SURGE_MIN_BLOCKED = 20
# ...and at least this many times as many as in the hour before.
SURGE_RATIO = 2


def _infinity_query(ref_id: str, column: str) -> dict[str, Any]:
    m = catalog.BY_ID["security_blocked_calls"]
    url = "/api/v1/query/security_blocked_calls?from=${__timeFrom}&to=${__timeTo}"
    model = infinity_model(m, ref_id, {"type": INFINITY_TYPE, "uid": INFINITY_UID}, url)
    # One numeric column per query: server-side expressions read a one-number table as a number.
    model["columns"] = [c for c in model["columns"] if c["selector"] == column]
    return {"refId": ref_id, "relativeTimeRange": {"from": 3600, "to": 0},
            "datasourceUid": INFINITY_UID, "model": model}


def _expr(ref_id: str, model: dict[str, Any]) -> dict[str, Any]:
    model = {"refId": ref_id, "datasource": {"type": "__expr__", "uid": "__expr__"}, **model}
    return {"refId": ref_id, "relativeTimeRange": {"from": 0, "to": 0}, "datasourceUid": "__expr__",
            "model": model}


def alert_rules() -> dict[str, Any]:
    surge = {
        "uid": "aa-blocked-calls-surge",
        "title": "Blocked tool calls surge",
        "condition": "D",
        "data": [
            _infinity_query("A", "value"),      # blocked calls in the last hour
            _infinity_query("B", "previous"),   # blocked calls in the hour before
            _expr("C", {"type": "math",
                        "expression": f"($A >= {SURGE_MIN_BLOCKED}) && ($A >= {SURGE_RATIO} * $B)"}),
            _expr("D", {"type": "threshold", "expression": "C",
                        "conditions": [{"evaluator": {"type": "gt", "params": [0]}}]}),
        ],
        "for": "5m",
        "noDataState": "OK",
        "execErrState": "Error",
        "labels": {"severity": "warning", "service": "agent-analytics"},
        "annotations": {
            "summary": "Policy blocks surged: at least {} blocked tool calls in the last hour, {}x the hour before"
                       .format(SURGE_MIN_BLOCKED, SURGE_RATIO),
            "description": "Blocked calls last hour: {{ $values.A.Value }}; the hour before: {{ $values.B.Value }}. "
                           "Open the Security dashboard to see which tools, agents, users and policies.",
            "__dashboardUid__": "aa-security",
            "runbook_url": "docs/dashboards.md#security",
        },
        "isPaused": False,
    }
    return {"apiVersion": 1,
            "groups": [{"orgId": 1, "name": "agent-analytics-security", "folder": FOLDER, "interval": "1m",
                        "rules": [surge]}]}
