"""The OpenAPI 3 document for both faces (GET /api/v1/openapi.json), built with apispec: the
request bodies and the metric, variable and filter enumerations come from the marshmallow schemas
and the catalog that validate and answer requests; the paths, query parameters and responses are
written here, and tests/test_hardening_openapi.py fuzzes the service against them (schemathesis)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from agent_analytics.datasource import catalog, params
from agent_analytics.datasource.catalog import ALL_FILTERS, SESSION_ORDER

_ERROR = {"type": "object", "properties": {"error": {"type": "string"},
                                           "fields": {"type": "object",
                                                      "additionalProperties": {"type": "array",
                                                                               "items": {"type": "string"}}}}}
_TIME = r"^(\d{1,15}|now([+-]\d+[smhdwMQy])*(/[smhdwMQy])?|\d{4}-\d{2}-\d{2}(T[0-9:.]+(Z|[+-]\d{2}:\d{2})?)?)$"
_FILTER_DOC = ("One value or several (repeat the parameter); `$__all`, `All` or empty mean no filter. "
               "The `var-<name>` form (Infinity's `${var:queryparam}`) is accepted too.")


def _responses(ok: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    err = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {"200": {"description": description, "content": {"application/json": {"schema": ok}}},
            "400": {"description": "Invalid request; `fields` names each bad field", **err},
            "401": {"description": "Missing or invalid bearer token", **err},
            "403": {"description": "The token lacks the permission (llm-analytics for LLM Usage and sessions)", **err},
            "503": {"description": "Database unavailable; retry", **err}}


def _query_parameters() -> list[dict[str, Any]]:
    ps: list[dict[str, Any]] = [
        {"name": "metric_id", "in": "path", "required": True,
         "schema": {"type": "string", "enum": [m.id for m in catalog.METRICS]}},
        {"name": "from", "in": "query", "schema": {"type": "string", "default": "now-24h", "pattern": _TIME},
         "description": "Epoch milliseconds, ISO 8601, or a Grafana relative time (now-7d, now/M). from and to "
                        "may each be given twice: the window, then the date picker's raw range (what Grafana's "
                        "${__url_time_range} writes), which decides the previous period."},
        {"name": "to", "in": "query", "schema": {"type": "string", "default": "now", "pattern": _TIME}},
        {"name": "tz", "in": "query", "schema": {"type": "string", "default": "UTC"},
         "description": "IANA time zone: daily buckets start at its midnight; relative times round in it."},
        {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}},
        {"name": "page_size", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                                        "default": 10}},
        {"name": "order_by", "in": "query", "schema": {"type": "string", "enum": list(SESSION_ORDER),
                                                       "default": "cost"}},
    ]
    for name in ALL_FILTERS:
        ps.append({"name": name, "in": "query", "description": _FILTER_DOC, "style": "form", "explode": True,
                   "schema": {"type": "array", "items": {"type": "string"}}})
    return ps


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    spec = APISpec(title="agent-analytics data source", version="1", openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()],
                   info={"description": "One query engine, two faces: Grafana's JSON data source protocol "
                                        "under /grafana and a JSON API under /api/v1 (Infinity, alert rules). "
                                        "Authenticate with `Authorization: Bearer <query token>`."})
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", _ERROR)
    spec.components.schema("GrafanaQueryRequest", schema=params.GrafanaQuerySchema)
    spec.components.schema("TargetPayload", schema=params.OptionsSchema)
    metric_ids = [m.id for m in catalog.METRICS]
    rows = {"type": "array", "items": {"type": "object", "additionalProperties": True}}

    spec.path("/grafana/", operations={"get": {"summary": "Health check (Test connection)",
                                               "responses": _responses({"type": "object"})}})
    spec.path("/grafana/metrics", operations={"post": {
        "summary": "The metric list with payload fields",
        "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {
            "metric": {"type": "string"}, "payload": {"type": "object"}}}}}},
        "responses": _responses({"type": "array", "items": {"type": "object", "required": ["value", "payloads"],
                                                            "properties": {"label": {"type": "string"},
                                                                           "value": {"type": "string",
                                                                                     "enum": metric_ids},
                                                                           "payloads": {"type": "array"}}}})}})
    spec.path("/grafana/metric-payload-options", operations={"post": {
        "summary": "Options of a payload field (filter values, order_by)",
        "requestBody": {"content": {"application/json": {"schema": {"type": "object", "required": [
            "metric", "payload", "name"], "properties": {"metric": {"type": "string"}, "payload": {"type": "object"},
                                                         "name": {"type": "string"}}}}}},
        "responses": _responses({"type": "array", "items": {"type": "object", "properties": {
            "label": {"type": "string"}, "value": {"type": "string"}}}})}})
    spec.path("/grafana/query", operations={"post": {
        "summary": "Grafana's whole query request -> one data frame per visible target",
        "description": "Filters are read from scopedVars (dashboard variables named like the filters), then "
                       "the target payload (see TargetPayload), then ad hoc filters.",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/GrafanaQueryRequest"}}}},
        "responses": _responses({"type": "array", "items": {"type": "object", "required": ["fields"], "properties": {
            "refId": {"type": "string"}, "name": {"type": "string"},
            "fields": {"type": "array", "items": {"type": "object", "required": ["name", "values"]}},
            "meta": {"type": "object"}}}})}})
    spec.path("/grafana/variable", operations={"post": {
        "summary": "Values of a dashboard variable",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "properties": {
            "payload": {"type": "object", "required": ["target"], "properties": {
                "target": {"type": "string", "enum": list(catalog.VARIABLES)}}},
            "range": {"type": "object"}}}}}},
        "responses": _responses({"type": "array", "items": {"type": "object", "properties": {
            "__text": {"type": "string"}, "__value": {"type": "string"}}}})}})
    spec.path("/grafana/tag-keys", operations={"post": {
        "summary": "Ad hoc filter keys", "responses": _responses({"type": "array", "items": {"type": "object"}})}})
    spec.path("/grafana/tag-values", operations={"post": {
        "summary": "Ad hoc filter values",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["key"], "properties": {"key": {"type": "string"}}}}}},
        "responses": _responses({"type": "array", "items": {"type": "object"}})}})

    spec.path("/api/v1/metrics", operations={"get": {
        "summary": "The metric catalog: id, tab, kind, title, unit, filters, columns",
        "responses": _responses({"type": "object", "properties": {"metrics": rows}})}})
    spec.path("/api/v1/query/{metric_id}", operations={"get": {
        "summary": "One metric as rows (Infinity: root_selector `rows`)",
        "parameters": _query_parameters(),
        "responses": _responses({"type": "object", "required": ["metric", "kind", "rows"], "properties": {
            "metric": {"type": "string"}, "kind": {"type": "string", "enum": list(catalog.KINDS)},
            "unit": {"type": "string", "nullable": True}, "rows": rows, "total": {"type": "integer"},
            "page": {"type": "integer"}, "page_size": {"type": "integer"}, "meta": {"type": "object"}}})}})
    spec.path("/api/v1/variables/{name}", operations={"get": {
        "summary": "Values of a variable",
        "parameters": [{"name": "name", "in": "path", "required": True,
                        "schema": {"type": "string", "enum": list(catalog.VARIABLES)}}],
        "responses": _responses({"type": "object", "properties": {"variable": {"type": "string"}, "rows": rows}})}})
    spec.path("/api/v1/openapi.json", operations={"get": {"summary": "This document",
                                                          "responses": {"200": {"description": "OK"}}}})
    doc = spec.to_dict()
    doc["security"] = [{"bearer": []}]
    return doc
