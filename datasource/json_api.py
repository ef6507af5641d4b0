"""The plain JSON API under /api/v1: the same metrics and filters as query parameters, answering
`{"metric", "kind", "rows": [...], "total"?}` for Grafana's Infinity plugin (root_selector `rows`),
which its backend parser can also run for alert rules.

Filters: `user=a&user=b`, or Infinity's `${user:queryparam}` form `var-user=a&var-user=b`.
Time: `from`/`to` as epoch ms (`${__from}`), ISO 8601, or Grafana expressions (`now-7d`, `now/M`).
Each may be given twice, as the dashboards' Infinity queries do (`from=${__from}&to=${__to}` then
`${__url_time_range}`): the first pair is the window, the second the picker's own range (`now/w`,
`now`), which decides the previous period as the JSON plugin's `range.raw` does.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any


from flask import Blueprint, Flask, current_app, jsonify, request

from agent_analytics import db as dbmod
from agent_analytics.auth import Permission, require
from agent_analytics.datasource import catalog, frames, params, service
from agent_analytics.datasource import timerange as tr
from agent_analytics.datasource import variables as variables_mod
from agent_analytics.datasource.catalog import ALL_FILTERS

bp = Blueprint("json_api", __name__, url_prefix="/api/v1")
FACE = "json"



def _arguments() -> dict[str, Any]:
    """Query parameters as the schema expects them: scalars once, filters as lists."""
    args = request.args
    data: dict[str, Any] = {}
    for key in args:
        if key in ALL_FILTERS or (key.startswith("var-") and key[4:] in ALL_FILTERS):
            continue
        if args.get(key, "") != "":  # an empty value (an unset Grafana variable) means the default
            data[key] = args.get(key)
    for name in ALL_FILTERS:
        values = args.getlist(name) + args.getlist(f"var-{name}")
        if values:
            data[name] = values
    return data


def _picker_range() -> dict[str, str] | None:
    """The second `from`/`to` pair, when given: the picker's raw range."""
    froms, tos = request.args.getlist("from"), request.args.getlist("to")
    if len(froms) > 2 or len(tos) > 2 or (len(froms) == 2) != (len(tos) == 2):
        raise params.RequestError({"from": ["give from and to once, or twice each (the window, then the "
                                            "picker's range as ${__url_time_range} writes it)"]})
    return {"from": froms[1], "to": tos[1]} if len(froms) == 2 else None


@bp.get("/metrics")
def metrics():
    granted = require(Permission.QUERY)
    # Only what this token may read, as the Grafana face lists it (LLM metrics need llm-analytics).
    variables = catalog.variables_for(granted)
    return jsonify({"metrics": [catalog.describe(m) for m in catalog.metrics_for(granted)],
                    "filters": [f for f in ALL_FILTERS if f in variables], "variables": variables})


@bp.get("/query/<metric_id>")
def query(metric_id: str):
    require(Permission.QUERY)
    metric = catalog.get(metric_id)
    if metric is None:
        return jsonify(error=f"unknown metric {metric_id!r}; GET /api/v1/metrics lists them"), 404
    require(metric.permission)
    opts = params.load(params.JsonApiSchema, _arguments())
    filter_values = {name: opts.get(name) for name in ALL_FILTERS}
    q = params.build_query(metric, opts["from_"], opts["to"], params.zone(opts.get("tz")), opts, filter_values,
                           range_raw=_picker_range())
    config = current_app.config["AA"]
    database = dbmod.get_db()
    shared = service.shared(current_app.extensions)
    result = service.observed(service.instruments(current_app.extensions), FACE, metric.id,
                              lambda: service.run(database, config, q, shared))
    return jsonify(frames.json_body(metric, q, result))


@bp.get("/variables/<name>")
def variable(name: str):
    require(Permission.QUERY)
    if name not in catalog.VARIABLES:
        return jsonify(error=f"unknown variable {name!r}; one of {', '.join(catalog.VARIABLES)}"), 404
    require(catalog.VARIABLES[name])  # type: ignore[arg-type]
    start = end = None
    if "from" in request.args or "to" in request.args:
        # The range matters to `session` (the sessions overlapping it); the others ignore it.
        opts = params.load(params.JsonApiSchema, _arguments())
        now = datetime.now(tr.UTC)
        tz = params.zone(opts.get("tz"))
        start, end = tr.resolve(opts["from_"], now, tz), tr.resolve(opts["to"], now, tz, round_up=True)
    database = dbmod.get_db()
    pairs = service.observed(service.instruments(current_app.extensions), FACE, f"variable:{name}",
                             lambda: service.with_connection(
                                 database, lambda c: variables_mod.values(c, name, start, end)))
    return jsonify({"variable": name, "rows": [{"value": v, "text": t} for v, t in pairs]})


@bp.get("/openapi.json")
def openapi():
    require(Permission.QUERY)  # like every endpoint but /healthz
    from agent_analytics.datasource.openapi import document

    return jsonify(document())


def register(app: Flask) -> None:
    service.instruments(app.extensions)
    app.register_blueprint(bp)
