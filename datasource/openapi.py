"""The OpenAPI 3 document for both faces (GET /api/v1/openapi.json), built with apispec's
MarshmallowPlugin from the marshmallow schemas that validate requests: the Grafana face's request
bodies (params.GrafanaQuerySchema, params.OptionsSchema) and the JSON API's query parameters
(params.JsonApiSchema: names, types, bounds, enumerations, defaults and descriptions), with the
metric and variable enumerations from the catalog. The paths, the small request bodies of the
other Grafana routes and the responses are declared here, by hand: the answers are built as plain
dicts (frames.py), not dumped through a schema, so nothing ties those parts to the code;
tests/test_hardening_openapi.py fuzzes the service against the whole document (schemathesis),
which finds where they differ as far as its generated requests reach."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow.fields import Field

from agent_analytics.datasource import catalog, params

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


_STRINGS = {"type": "array", "items": {"type": "string"}}
_TIME_STRING = {"type": "string", "pattern": _TIME}


def _field_properties(self: Any, field: Field, **kwargs: Any) -> dict[str, Any]:
    """The OpenAPI form of params' own field types in a JSON body (apispec knows marshmallow's
    built-in ones)."""
    if isinstance(field, params.FilterValues):
        return {"anyOf": [{"type": "string"}, _STRINGS], "description": _FILTER_DOC}
    if isinstance(field, params.TimeExpr):
        return {"anyOf": [_TIME_STRING, {"type": "integer", "minimum": 0}]}
    return {}


def _query_parameter(self: Any, field: Field, ret: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """The same fields as query parameters: every value is a string, repeated for several (user=a&user=b),
    and a query string cannot carry null (a field whose value defaults to None is just optional)."""
    if ret.get("in") != "query":
        return {}
    schema = {k: v for k, v in ret["schema"].items() if k not in ("nullable", "anyOf")}
    if schema.get("default", "") is None:
        del schema["default"]
    if isinstance(field, params.FilterValues):
        return {"schema": {**schema, **_STRINGS}, "style": "form", "explode": True}
    if isinstance(field, params.TimeExpr):
        return {"schema": {**schema, **_TIME_STRING}}
    return {"schema": schema}


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    marshmallow_plugin = MarshmallowPlugin()
    spec = APISpec(title="agent-analytics data source", version="1", openapi_version="3.0.3",
                   plugins=[marshmallow_plugin],
                   info={"description": "One query engine, two faces: Grafana's JSON data source protocol "
                                        "under /grafana and a JSON API under /api/v1 (Infinity, alert rules). "
                                        "Authenticate with `Authorization: Bearer <query token>`."})
    assert marshmallow_plugin.converter is not None
    marshmallow_plugin.converter.add_attribute_function(_field_properties)
    marshmallow_plugin.converter.add_parameter_attribute_function(_query_parameter)
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
        "parameters": [{"name": "metric_id", "in": "path", "required": True,
                        "schema": {"type": "string", "enum": metric_ids}},
                       {"in": "query", "schema": params.JsonApiSchema}],
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
