"""Shape engine results: Grafana data frames (units, display names, the dashed previous period)
and the JSON API's rows (what Infinity's backend parser reads with root_selector `rows`)."""
from __future__ import annotations

from typing import Any

from agent_analytics.datasource.catalog import Metric
from agent_analytics.datasource.engine import Result
from agent_analytics.datasource.query import Query

PREVIOUS = "Previous period"
DASH = {"lineStyle": {"fill": "dash", "dash": [10, 10]}}


def _display_name(metric: Metric, column_name: str, title: str | None) -> str:
    if metric.kind in ("stat", "timeseries") and column_name in ("value", "current"):
        return metric.title if metric.tab != "sessions" else (title or metric.title)
    if column_name == "previous":
        return PREVIOUS
    return title or column_name


def grafana_frame(metric: Metric, result: Result, ref_id: str) -> dict[str, Any]:
    """One data frame: a field per catalog column, values column-wise."""
    fields = []
    for col in metric.columns:
        values = [row.get(col.name) for row in result.rows]
        config: dict[str, Any] = {"displayName": _display_name(metric, col.name, col.title)}
        if col.unit:
            config["unit"] = col.unit
        if col.name == "previous" and metric.kind == "timeseries":
            config["custom"] = DASH
        fields.append({"name": col.name, "type": col.type, "values": values, "config": config})
    custom: dict[str, Any] = {k: v for k, v in result.meta.items()}
    if result.total is not None:
        custom["total"] = result.total
    return {"refId": ref_id, "name": metric.title, "fields": fields,
            "meta": {"custom": custom, "preferredVisualisationType": _visualisation(metric)}}


def _visualisation(metric: Metric) -> str:
    return {"timeseries": "graph", "table": "table"}.get(metric.kind, "table")


def json_body(metric: Metric, query: Query, result: Result) -> dict[str, Any]:
    body: dict[str, Any] = {"metric": metric.id, "kind": metric.kind, "unit": metric.unit, "rows": result.rows}
    if result.total is not None:
        body["total"] = result.total
        if query.page is not None:
            body["page"] = query.page
            body["page_size"] = query.page_size
    body["meta"] = result.meta
    return body
