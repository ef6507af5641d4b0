"""Grafana-managed alert rules, provisioned as YAML. They run on the Infinity data source with the
backend parser (the JSON plugin has no backend, so it cannot drive alerts), with the backend time
macros, since alert rules have no dashboard variables.

Each rule is linked to the panel of the generated dashboard that shows what it watches (Grafana
needs the dashboard uid and the panel id together), found in that dashboard by the metric its
query asks for, so the panel ids live in one place: the generated dashboard."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent_analytics.datasource import catalog

from .queries import INFINITY_TYPE, INFINITY_UID, infinity_model

# The folder as Grafana's alerting file provisioning names it: by title (its rule groups have no
# folder uid). The dashboards' provider (provisioning/dashboards/) names it the same way, and
# `grafana install` uses this title with the folder uid "agent-analytics".
FOLDER = "Agent Analytics"
SECURITY_DASHBOARD = Path(__file__).resolve().parent / "infinity" / "security.json"
LLM_DASHBOARD = Path(__file__).resolve().parent / "infinity" / "llm-usage.json"
# A surge: at least this many blocked calls in the last hour...
SURGE_MIN_BLOCKED = 20
# ...and at least this many times as many as in the hour before.
SURGE_RATIO = 2
# The same for the agents' own enforcement: tool uses a PreToolUse hook refused in the last hour,
# and sessions running with bypassPermissions (every permission check skipped).
HOOK_SURGE_MIN = 10
BYPASS_SURGE_MIN = 3
# An API error-rate surge: at least this many API errors in the last hour...
ERROR_SURGE_MIN_ERRORS = 10
# ...an error rate of at least this many errors per 100 requests that ended...
ERROR_SURGE_MIN_RATE = 5
# ...and at least this many times the hour before's rate (an hour with no requests counts as 0).
ERROR_SURGE_RATIO = 2


def _query_url(metric_id: str) -> str:
    return f"/api/v1/query/{metric_id}?from=${{__timeFrom}}&to=${{__timeTo}}"


def _infinity_query(ref_id: str, metric_id: str, column: str) -> dict[str, Any]:
    m = catalog.BY_ID[metric_id]
    model = infinity_model(m, ref_id, {"type": INFINITY_TYPE, "uid": INFINITY_UID}, _query_url(metric_id))
    # One numeric column per query: server-side expressions read a one-number table as a number.
    model["columns"] = [c for c in model["columns"] if c["selector"] == column]
    return {"refId": ref_id, "relativeTimeRange": {"from": 3600, "to": 0},
            "datasourceUid": INFINITY_UID, "model": model}


def _expr(ref_id: str, model: dict[str, Any]) -> dict[str, Any]:
    model = {"refId": ref_id, "datasource": {"type": "__expr__", "uid": "__expr__"}, **model}
    return {"refId": ref_id, "relativeTimeRange": {"from": 0, "to": 0}, "datasourceUid": "__expr__",
            "model": model}


def _last(ref_id: str, of: str, unknown_is_zero: bool = False) -> dict[str, Any]:
    # A value that is not a number is dropped: no number is no data (noDataState), never a zero;
    # unless `unknown_is_zero` (a previous hour without requests had no errors to compare with).
    settings = {"mode": "replaceNN", "replaceWithValue": 0} if unknown_is_zero else {"mode": "dropNN"}
    return _expr(ref_id, {"type": "reduce", "expression": of, "reducer": "last", "settings": settings})


def panel_showing(dashboard: dict[str, Any], metric_id: str) -> int:
    """The id of the one panel of `dashboard` whose queries ask for `metric_id`."""
    prefix = f"/api/v1/query/{metric_id}?"
    ids = [p["id"] for p in dashboard.get("panels", [])
           if any(str(t.get("url", "")).startswith(prefix) for t in p.get("targets", []))]
    if len(ids) != 1:
        raise ValueError(f"dashboard {dashboard.get('uid')!r}: {len(ids)} panels show {metric_id}, expected one")
    return int(ids[0])


def _link(dashboard: dict[str, Any], metric_id: str) -> dict[str, str]:
    """Grafana's annotations linking a rule to a panel: both or neither, the id as a string."""
    return {"__dashboardUid__": str(dashboard["uid"]), "__panelId__": str(panel_showing(dashboard, metric_id))}


def rule(uid: str, title: str, inputs: list[dict[str, Any]], fires: tuple[str, str], alert: str, *,
         severity: str, pending: str, summary: str, description: str, dashboard: dict[str, Any], metric_id: str,
         runbook: str) -> dict[str, Any]:
    """A Grafana alert rule: its `inputs` (queries and their last values), the math `fires`
    (refId, expression) over them, and the threshold `alert` (refId) firing where it holds; its
    annotations link the panel showing `metric_id` on `dashboard`. No data (nothing to compare,
    or an unknown figure) is no alert."""
    math, expression = fires
    return {
        "uid": uid,
        "title": title,
        "condition": alert,
        "data": [*inputs, _expr(math, {"type": "math", "expression": expression}),
                 _expr(alert, {"type": "threshold", "expression": math,
                               "conditions": [{"evaluator": {"type": "gt", "params": [0]}}]})],
        "for": pending,
        "noDataState": "OK",
        "execErrState": "Error",
        "labels": {"severity": severity, "service": "agent-analytics"},
        "annotations": {"summary": summary, "description": description, **_link(dashboard, metric_id),
                        "runbook_url": runbook},
        "isPaused": False,
    }


def _surge(uid: str, title: str, metric_id: str, minimum: int, summary: str, description: str,
           dashboard: dict[str, Any]) -> dict[str, Any]:
    """A rule firing when `metric_id`'s stat reaches `minimum` in the last hour and SURGE_RATIO
    times its value in the hour before (its previous period)."""
    return rule(uid, title, [
        _infinity_query("A", metric_id, "value"),     # the last hour
        _infinity_query("B", metric_id, "previous"),  # the hour before
        _last("C", "A"),
        _last("D", "B"),
    ], ("E", f"($C >= {minimum}) && ($C >= {SURGE_RATIO} * $D)"), "F", severity="warning", pending="5m",
        summary=summary, description=description, dashboard=dashboard, metric_id=metric_id,
        runbook="docs/dashboards.md#security")


def _error_rate_surge(llm: dict[str, Any]) -> dict[str, Any]:
    """API errors surged: enough of them, a high rate, and a multiple of the hour before's."""
    return rule("aa-api-error-rate-surge", "API error rate surge", [
        _infinity_query("A", "llm_error_rate", "value"),     # the error rate in the last hour
        _infinity_query("B", "llm_error_rate", "previous"),  # in the hour before
        _infinity_query("C", "llm_error_rate", "errors"),    # API errors in the last hour
        _last("D", "A"),
        _last("E", "B", unknown_is_zero=True),
        _last("F", "C"),
    ], ("G", f"($F >= {ERROR_SURGE_MIN_ERRORS}) && ($D >= {ERROR_SURGE_MIN_RATE})"
             f" && ($D >= {ERROR_SURGE_RATIO} * $E)"), "H", severity="warning", pending="5m",
        summary="Model API errors surged: at least {} API errors in the last hour, at least {}% of requests, "
                "{}x the hour before's rate".format(ERROR_SURGE_MIN_ERRORS, ERROR_SURGE_MIN_RATE, ERROR_SURGE_RATIO),
        description="API error rate last hour: {{ $values.D.Value }}% ({{ $values.F.Value }} errors); "
                    "the hour before: {{ $values.E.Value }}%. Open LLM Usage to see which models and "
                    "statuses. Retried failures that then succeed send no event: they are not counted.",
        dashboard=llm, metric_id="llm_error_rate", runbook="docs/dashboards.md#alert-rule-api-error-rate-surge")


def alert_rules(security: dict[str, Any] | None = None, llm: dict[str, Any] | None = None) -> dict[str, Any]:
    """The alerting provisioning document; `security` and `llm` are the generated Infinity Security
    and LLM Usage dashboards (read from their generated files when not given)."""
    if security is None:
        security = json.loads(SECURITY_DASHBOARD.read_text(encoding="utf-8"))
    if llm is None:
        llm = json.loads(LLM_DASHBOARD.read_text(encoding="utf-8"))
    from .budget_alerts import budget_rules  # it builds on this module's queries and expressions
    rules = [
        _surge("aa-blocked-calls-surge", "Blocked tool calls surge", "security_blocked_calls", SURGE_MIN_BLOCKED,
               "Policy blocks surged: at least {} blocked tool calls in the last hour, {}x the hour before"
               .format(SURGE_MIN_BLOCKED, SURGE_RATIO),
               "Blocked calls last hour: {{ $values.C.Value }}; the hour before: {{ $values.D.Value }}. "
               "Open the Security dashboard to see which tools, agents, users and policies.", security),
        _surge("aa-hook-blocks-surge", "Hook blocks surge", "security_hook_blocks", HOOK_SURGE_MIN,
               f"Hook blocks surged: at least {HOOK_SURGE_MIN} tool uses refused by a PreToolUse hook in the last "
               f"hour, {SURGE_RATIO}x the hour before",
               "Hook blocks last hour: {{ $values.C.Value }}; the hour before: {{ $values.D.Value }}. "
               "An agent may be retrying what a hook refuses: open Security, Agent enforcement, for the hook, "
               "the tools and the users.", security),
        _surge("aa-bypass-sessions-surge", "Bypass-mode sessions surge", "security_bypass_sessions",
               BYPASS_SURGE_MIN,
               f"Sessions skipping every permission check surged: at least {BYPASS_SURGE_MIN} sessions in "
               f"bypassPermissions mode in the last hour, {SURGE_RATIO}x the hour before",
               "Bypass-mode sessions last hour: {{ $values.C.Value }}; the hour before: {{ $values.D.Value }}. "
               "Open Security, Agent enforcement, for whose sessions and which agent instances.", security),
    ]
    return {"apiVersion": 1,
            "groups": [{"orgId": 1, "name": "agent-analytics-security", "folder": FOLDER, "interval": "1m",
                        "rules": rules},
                       {"orgId": 1, "name": "agent-analytics-budgets", "folder": FOLDER, "interval": "5m",
                        "rules": budget_rules(llm)},
                       {"orgId": 1, "name": "agent-analytics-llm", "folder": FOLDER, "interval": "1m",
                        "rules": [_error_rate_surge(llm)]}]}
