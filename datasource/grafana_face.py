"""Grafana's JSON data source protocol (simpod-json-datasource) under /grafana.

Multi-value variables are read from `scopedVars` first (arrays survive there intact), then from
the target's payload (a dict, or a JSON string in code mode; `{a,b}` and JSON arrays inside a
string are split), then from ad hoc filters. "$__all", "All" and "" mean no filter.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo


from flask import Blueprint, Flask, current_app, jsonify, request

from agent_analytics import db as dbmod
from agent_analytics.auth import Permission, require
from agent_analytics.datasource import catalog, frames, params, service
from agent_analytics.datasource import timerange as tr
from agent_analytics.datasource import variables as variables_mod
from agent_analytics.datasource.catalog import ALL_FILTERS, SESSION_ORDER
from agent_analytics.datasource.filters import FILTERS, normalise

bp = Blueprint("grafana_face", __name__, url_prefix="/grafana")
FACE = "grafana"


def _inst() -> service.Instruments:
    return service.instruments(current_app.extensions)


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if data is None:
        if request.get_data(cache=True).strip():
            raise params.RequestError({"request": ["body is not valid JSON"]})
        data = {}
    if not isinstance(data, dict):
        raise params.RequestError({"request": ["body must be a JSON object"]})
    return data



@bp.get("/")
def health():
    require(Permission.QUERY)
    return jsonify(status="ok", service="agent-analytics data source")


@bp.post("/metrics")
def list_metrics():
    granted = require(Permission.QUERY)
    out = []
    for m in catalog.metrics_for(granted):
        payloads = []
        for name in m.payload_fields:
            if name in FILTERS:
                payloads.append({"name": name, "label": FILTERS[name].label,
                                 "type": "multi-select", "placeholder": "All"})
            elif name == "order_by":
                payloads.append({"name": name, "label": "Order by", "type": "select",
                                 "options": [{"label": o, "value": o} for o in SESSION_ORDER]})
            else:
                payloads.append({"name": name, "label": name.replace("_", " ").capitalize(), "type": "input"})
        out.append({"label": f"{m.tab}: {m.title}", "value": m.id, "payloads": payloads})
    return jsonify(out)


def _variable_permission(name: str) -> Permission:
    return catalog.VARIABLES[name]  # type: ignore[return-value]


def _values(name: str, start=None, end=None) -> list[tuple[str, str]]:
    require(_variable_permission(name))
    database = dbmod.get_db()
    return service.observed(_inst(), FACE, f"variable:{name}",
                            lambda: service.with_connection(
                                database, lambda c: variables_mod.values(c, name, start, end)))


@bp.post("/metric-payload-options")
def payload_options():
    require(Permission.QUERY)
    body = _body()
    name = body.get("name")
    if name == "order_by":
        return jsonify([{"label": o, "value": o} for o in SESSION_ORDER])
    if not isinstance(name, str) or name not in catalog.VARIABLES:
        return jsonify([])
    return jsonify([{"label": t, "value": v} for v, t in _values(name)])


def _scoped_value(scoped: dict[str, Any], name: str) -> tuple[bool, Any]:
    entry = scoped.get(name)
    if isinstance(entry, dict) and "value" in entry:
        return True, entry["value"]
    return False, None


def _target_payload(raw: Any, index: int) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError):
            raise params.RequestError({f"targets.{index}.payload": ["is not valid JSON"]}) from None
    if not isinstance(raw, dict):
        raise params.RequestError({f"targets.{index}.payload": ["must be a JSON object"]})
    return raw


@bp.post("/query")
def query():
    require(Permission.QUERY)
    body = params.load(params.GrafanaQuerySchema, _body())
    rng = body["range"]
    scoped = body["scopedVars"] or {}
    adhoc: dict[str, list[str]] = {}
    for f in body["filters"]:
        if f["key"] in ALL_FILTERS:
            adhoc.setdefault(f["key"], []).append(str(f["value"]))
    config = current_app.config["AA"]
    database = dbmod.get_db()
    out = []
    for i, target in enumerate(body["targets"]):
        if target.get("hide"):
            continue
        metric = catalog.get(target["target"])
        if metric is None:
            raise params.RequestError({f"targets.{i}.target": [f"unknown metric {target['target']!r}; "
                                                              "POST /grafana/metrics lists them"]})
        require(metric.permission)
        payload = _target_payload(target.get("payload"), i)
        options = params.load(params.OptionsSchema, payload, prefix=f"targets.{i}.payload")
        filter_values: dict[str, tuple[str, ...] | None] = {}
        for name in ALL_FILTERS:
            present, value = _scoped_value(scoped, name)
            if present:
                filter_values[name] = params.load(params.OptionsSchema, {name: value},
                                                  prefix="scopedVars")[name]
            elif options.get(name):
                filter_values[name] = options[name]
            elif name in adhoc:
                filter_values[name] = normalise(adhoc[name])
        present, tz_var = _scoped_value(scoped, "tz")
        tz_name = options.get("tz") or (tz_var if present and isinstance(tz_var, str) and
                                        params.iana_or_none(tz_var) else None) \
            or params.iana_or_none(body.get("timezone"))
        q = params.build_query(metric, rng["from_"], rng["to"], params.zone(tz_name), options, filter_values,
                               range_raw=rng.get("raw"), paginate_by_default=False)
        shared = service.shared(current_app.extensions)
        result = service.observed(_inst(), FACE, metric.id, lambda: service.run(database, config, q, shared))
        out.append(frames.grafana_frame(metric, result, target.get("refId") or "A"))
    return jsonify(out)


def _variable_target(body: dict[str, Any]) -> str:
    payload = body.get("payload")
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except (ValueError, RecursionError):
            return payload.strip()
    if isinstance(payload, dict) and isinstance(payload.get("target"), str):
        return payload["target"].strip()
    if isinstance(body.get("target"), str):
        return body["target"].strip()
    raise params.RequestError({"payload.target": ["required: one of " + ", ".join(catalog.VARIABLES)]})


@bp.post("/variable")
def variable():
    require(Permission.QUERY)
    body = _body()
    name = _variable_target(body)
    if name not in catalog.VARIABLES:
        raise params.RequestError({"payload.target": [f"unknown variable {name!r}; one of "
                                                      + ", ".join(catalog.VARIABLES)]})
    start = end = None
    if isinstance(body.get("range"), dict) and body["range"].get("from"):
        rng = params.load(params.RangeSchema, body["range"], prefix="range")
        now = datetime.now(tr.UTC)
        start = tr.resolve(rng["from_"], now, ZoneInfo("UTC"))
        end = tr.resolve(rng["to"], now, ZoneInfo("UTC"), round_up=True)
    # The plugin's contract requires text/value; its frontend reads __text/__value: send both.
    return jsonify([{"__text": t, "__value": v, "text": t, "value": v} for v, t in _values(name, start, end)])


@bp.post("/tag-keys")
def tag_keys():
    granted = require(Permission.QUERY)
    visible = catalog.variables_for(granted)
    return jsonify([{"type": "string", "text": n} for n in ALL_FILTERS if n in visible])


@bp.post("/tag-values")
def tag_values():
    require(Permission.QUERY)
    key = _body().get("key")
    if not isinstance(key, str) or key not in catalog.VARIABLES:
        raise params.RequestError({"key": [f"unknown key {key!r}; POST /grafana/tag-keys lists them"]})
    return jsonify([{"text": v} for v, _ in _values(key)])


def register(app: Flask) -> None:
    service.instruments(app.extensions)
    app.register_blueprint(bp)
