"""The data source fuzzed against its own OpenAPI document (schemathesis, in process over WSGI, on
the seeded dataset): valid requests get answers that match the document; invalid ones get a 4xx,
never a 5xx, and every 400 names its field."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from tests.harness_support import LLM_TOKEN

H = {"Authorization": f"Bearer {LLM_TOKEN}"}
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def schema(ds_client):
    resp = ds_client.get("/api/v1/openapi.json", headers=H)
    assert resp.status_code == 200
    return schemathesis.openapi.from_dict(resp.get_json())


def _names_its_field(response) -> None:
    if response.status_code != 400:
        return
    body = response.json()
    assert isinstance(body.get("fields"), dict) and body["fields"], body
    assert all(isinstance(k, str) and k and v for k, v in body["fields"].items()), body
    assert all(k in body["error"] for k in body["fields"]), body


def test_the_document_covers_every_data_source_route(ds_app, schema):
    documented = {path for path in schema.raw_schema["paths"]}
    served = {rule.rule.replace("<", "{").replace(">", "}").replace("{path:", "{")
              for rule in ds_app.url_map.iter_rules() if rule.endpoint.startswith(("grafana_face.", "json_api."))}
    assert served <= documented, served - documented


def test_valid_requests_get_documented_answers(ds_app, schema):
    @FUZZ
    @given(case=schema.as_strategy(GenerationMode.POSITIVE, headers=H))
    def run(case):
        response = case.call(app=ds_app)
        assert response.status_code < 500, (case.path, case.query, case.body, response.text[:300])
        case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                                 content_type_conformance, response_schema_conformance])
        _names_its_field(response)

    run()


def test_invalid_requests_get_a_4xx_that_names_the_field(ds_app, schema):
    @FUZZ
    @given(case=schema.as_strategy(GenerationMode.NEGATIVE, headers=H))
    def run(case):
        response = case.call(app=ds_app)
        assert response.status_code < 500, (case.path, case.query, case.body, response.text[:300])
        _names_its_field(response)

    run()


def test_the_json_api_parameters_are_what_its_schema_validates():
    """Every field params.JsonApiSchema loads is a documented query parameter, with the bounds and
    choices its validators enforce, and no other query parameter is documented."""
    from marshmallow import validate

    from agent_analytics.datasource import params
    from agent_analytics.datasource.openapi import document

    operation = document()["paths"]["/api/v1/query/{metric_id}"]["get"]
    documented = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
    loaded = {f.data_key or name: f for name, f in params.JsonApiSchema().fields.items() if not f.dump_only}
    assert set(documented) == set(loaded)
    for name, field in loaded.items():
        schema = documented[name]["schema"]
        for v in field.validators:
            if isinstance(v, validate.Range):
                assert (schema.get("minimum"), schema.get("maximum")) == (v.min, v.max), name
            if isinstance(v, validate.OneOf):
                assert schema.get("enum") == list(v.choices), name
        if isinstance(field, params.FilterValues):
            assert schema == {"type": "array", "items": {"type": "string"}}, name
            assert documented[name]["style"] == "form" and documented[name]["explode"] is True, name
