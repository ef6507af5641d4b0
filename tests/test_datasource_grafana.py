"""The Grafana face with requests shaped as simpod-json-datasource sends them (whole query request,
multi-value and "All" variables in scopedVars, payloads as objects or code-mode strings), checked
against the oracle and the plugin's own OpenAPI contract; the JSON API's errors, permissions,
variables, OpenAPI document and the Prometheus instruments."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest
import yaml

from agent_analytics.datasource import catalog as declared
from tests.harness_support import LLM_TOKEN, QUERY_TOKEN
from tests.datasource_dataset import ANCHOR, DATA, Oracle
from tests.datasource_support import api, assert_rows, field, grafana, iso, ms, same

ORACLE = Oracle(DATA)
START = ANCHOR - timedelta(days=7)
PLUGIN_SPEC = Path(__file__).resolve().parent / "fixtures" / "simpod-json-datasource-openapi.yaml"


def _plugin_schema(path: str, part: str = "response") -> dict:
    spec = yaml.safe_load(PLUGIN_SPEC.read_text())
    op = spec["paths"][path]["post"]
    if part == "response":
        schema = op["responses"]["200"]["content"]["application/json"]["schema"]
    else:
        schema = op["requestBody"]["content"]["application/json"]["schema"]
    return {**schema, "components": spec["components"]}


def _validate(instance, schema: dict) -> None:
    text = json.dumps(schema).replace("#/components/", "#/components/")
    jsonschema.validate(instance, json.loads(text))


def H(token: str = LLM_TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_whole_query_request_with_multi_value_and_all_variables(ds_client):
    scoped = {
        "__interval": {"text": "1h", "value": "1h"},
        "user": {"text": ["User 01", "User 04"], "value": ["user1@example.com", "user4@example.com"]},
        "group": {"text": "All", "value": ["$__all"]},
        "agent": {"text": "All", "value": "$__all"},
        "mcp": {"text": ["GitHub", "Filesystem"], "value": ["github", "fs"]},
        "provider": {"text": "anthropic", "value": "anthropic"},
        "tz": {"text": "UTC", "value": "UTC"},
    }
    targets = [
        {"refId": "A", "target": "mcp_tool_executions", "payload": {}, "datasource": {"type": "simpod-json-datasource"}},
        {"refId": "B", "target": "mcp_executions_over_time", "payload": "{\"tz\": \"UTC\"}"},  # code mode
        {"refId": "C", "target": "mcp_top_tools", "payload": {"user": "$user", "page": "", "page_size": ""}},
        {"refId": "D", "target": "llm_total_tokens", "payload": ""},
        {"refId": "E", "target": "security_blocked_calls", "hide": True},
    ]
    frames = grafana(ds_client, targets, START, ANCHOR, raw={"from": "now-7d", "to": "now"}, scoped=scoped)
    assert [f["refId"] for f in frames] == ["A", "B", "C", "D"]  # hidden targets are not answered
    f_mcp = {"user": ["user1@example.com", "user4@example.com"], "mcp": ["github", "fs"]}
    stat = frames[0]
    assert field(stat, "value") == [ORACLE.stat("mcp_tool_executions", START, ANCHOR, f_mcp)]
    assert field(stat, "previous") == [ORACLE.stat("mcp_tool_executions", START - timedelta(days=7), START, f_mcp)]
    value_cfg = next(f for f in stat["fields"] if f["name"] == "value")["config"]
    assert value_cfg == {"displayName": "Tool executions", "unit": "short"}
    series = frames[1]
    assert [f["name"] for f in series["fields"]] == ["time", "current", "previous"]
    prev_cfg = series["fields"][2]["config"]
    assert prev_cfg["displayName"] == "Previous period" and prev_cfg["custom"]["lineStyle"]["fill"] == "dash"
    assert sum(field(series, "current")) == ORACLE.stat("mcp_tool_executions", START, ANCHOR, f_mcp)
    table = frames[2]
    want = ORACLE.top("mcp_top_tools", START, ANCHOR, f_mcp)
    assert table["meta"]["custom"]["total"] == len(want) == len(field(table, "tool"))  # all rows, no page given
    assert field(table, "executions") == [r["executions"] for r in want]
    assert field(frames[3], "value") == [ORACLE.stat("llm_total_tokens", START, ANCHOR,
                                                         {"provider": ["anthropic"], "user": f_mcp["user"]})]
    for frame in frames:
        _validate(frame, {**yaml.safe_load(PLUGIN_SPEC.read_text())["components"]["schemas"]["dataframe"]})


def test_payload_filters_without_variables_and_adhoc_filters(ds_client):
    # No dashboard variables: the payload carries the filters (list, Grafana's {a,b} glob, a JSON string).
    for payload, f in ((json.dumps({"agent_tag": ["prod"], "resource_tag": "{dangerous,internal}"}),
                        {"agent_tag": ["prod"], "resource_tag": ["dangerous", "internal"]}),
                       ({"group": "g-ops", "page": 1, "page_size": 3}, {"group": ["g-ops"]})):
        [frame] = grafana(ds_client, [{"refId": "A", "target": "security_top_blocked_users", "payload": payload}],
                          START, ANCHOR)
        want = ORACLE.top("security_top_blocked_users", START, ANCHOR, f)
        n = 3 if "page_size" in str(payload) else len(want)
        assert field(frame, "user_id") == [r["user_id"] for r in want][:n]
        assert frame["meta"]["custom"]["total"] == len(want)
    body = {"range": {"from": iso(START), "to": iso(ANCHOR), "raw": {"from": "now-7d", "to": "now"}},
            "targets": [{"refId": "A", "target": "mcp_active_users"}],
            "filters": [{"key": "agent", "operator": "=", "value": "codex"}]}
    resp = ds_client.post("/grafana/query", json=body, headers=H())
    assert field(resp.get_json()[0], "value") == [ORACLE.stat("mcp_active_users", START, ANCHOR, {"agent": ["codex"]})]


def test_protocol_endpoints_satisfy_the_plugin_contract(ds_client):
    assert ds_client.get("/grafana/", headers=H()).status_code == 200
    assert ds_client.get("/grafana/").status_code == 401
    metrics = ds_client.post("/grafana/metrics", json={"metric": "", "payload": {}}, headers=H()).get_json()
    _validate(metrics, _plugin_schema("/metrics"))
    by_id = {m["value"]: m for m in metrics}
    assert "sessions_table" in by_id and {p["name"] for p in by_id["sessions_table"]["payloads"]} >= {
        "user", "group", "provider", "model", "order_by", "page", "page_size"}
    # A token without llm-analytics sees only MCP Usage, Security and Telemetry.
    plain = ds_client.post("/grafana/metrics", json={}, headers=H(QUERY_TOKEN)).get_json()
    assert {m["value"].split("_")[0] for m in plain} == {"mcp", "security", "telemetry"}
    opts = ds_client.post("/grafana/metric-payload-options",
                          json={"metric": "mcp_top_tools", "payload": {}, "name": "mcp"}, headers=H()).get_json()
    _validate(opts, _plugin_schema("/metric-payload-options"))
    assert [o["value"] for o in opts] == sorted(DATA.servers, key=lambda s: DATA.servers[s])
    for name, want in (("user", set(DATA.users)), ("group", set(DATA.groups)), ("agent_tag", {"prod", "cli"}),
                       ("resource_tag", {"external", "tickets", "internal", "dangerous"}),
                       ("model", {r["model"] for r in DATA.llm + DATA.points})):
        got = ds_client.post("/grafana/variable", json={"payload": {"target": name},
                                                         "range": {"from": iso(START), "to": iso(ANCHOR)}},
                             headers=H()).get_json()
        _validate(got, _plugin_schema("/variable"))
        assert {v["__value"] for v in got} == want, name
    sessions = ds_client.post("/grafana/variable", json={"payload": {"target": "session"},
                                                          "range": {"from": iso(START), "to": iso(ANCHOR)}},
                              headers=H()).get_json()
    assert {v["__value"] for v in sessions} == {k for k, s in DATA.sessions.items()
                                                 if s["end"] >= START and s["start"] < ANCHOR}
    keys = ds_client.post("/grafana/tag-keys", json={}, headers=H(QUERY_TOKEN)).get_json()
    _validate(keys, _plugin_schema("/tag-keys"))
    assert "provider" not in {k["text"] for k in keys} and "mcp" in {k["text"] for k in keys}
    values = ds_client.post("/grafana/tag-values", json={"key": "agent"}, headers=H()).get_json()
    assert {v["text"] for v in values} == set(DATA.agents)
    assert ds_client.get("/api/v1/variables/mcp", headers=H()).get_json()["rows"][0] == {"value": "db",
                                                                                        "text": "Database"}
    # Infinity's variable query passes the range: sessions overlapping it.
    rows = ds_client.get(f"/api/v1/variables/session?from={ms(START)}&to={ms(ANCHOR)}", headers=H()).get_json()["rows"]
    assert {r["value"] for r in rows} == {v["__value"] for v in sessions}


@pytest.mark.parametrize("method, url, body, field_name", [
    ("post", "/grafana/query", {"targets": [{"target": "mcp_top_tools"}]}, "range"),
    ("post", "/grafana/query", {"range": {"from": "yesterday", "to": "now"}, "targets": []}, "range.from"),
    ("post", "/grafana/query", {"range": {"from": "now-1h", "to": "now"}, "targets": [{"target": "nope"}]},
     "targets.0.target"),
    ("post", "/grafana/query", {"range": {"from": "now-1h", "to": "now"},
                                "targets": [{"target": "mcp_top_tools", "payload": {"page_size": 0}}]},
     "targets.0.payload.page_size"),
    ("post", "/grafana/query", {"range": {"from": "now-1h", "to": "now"},
                                "targets": [{"target": "sessions_table", "payload": {"order_by": "size"}}]},
     "targets.0.payload.order_by"),
    ("post", "/grafana/query", {"range": {"from": "now-1h", "to": "now"},
                                "targets": [{"target": "mcp_top_tools", "payload": "{not json"}]}, "targets.0.payload"),
    ("post", "/grafana/variable", {"payload": {"target": "colour"}}, "payload.target"),
    ("get", "/api/v1/query/mcp_top_tools?page=0", None, "page"),
    ("get", "/api/v1/query/mcp_top_tools?tz=Mars/Olympus", None, "tz"),
    ("get", "/api/v1/query/mcp_top_tools?from=soon", None, "from"),
    ("get", "/api/v1/query/mcp_top_tools?from=now&to=now-1h", None, "to"),
    ("get", "/api/v1/query/mcp_top_tools?page_size=5000", None, "page_size"),
    ("get", "/api/v1/variables/session?from=later", None, "from"),
])
def test_bad_requests_name_the_field(ds_client, method, url, body, field_name):
    resp = getattr(ds_client, method)(url, json=body, headers=H())
    assert resp.status_code == 400, resp.get_json()
    assert field_name in resp.get_json()["fields"], resp.get_json()
    assert field_name in resp.get_json()["error"]


def test_llm_analytics_permission(ds_client):
    for metric in ("llm_total_tokens", "sessions_table", "session_totals", "llm_status"):
        resp = ds_client.get(f"/api/v1/query/{metric}", headers=H(QUERY_TOKEN))
        assert resp.status_code == 403 and "llm-analytics" in resp.get_json()["error"]
    body = {"range": {"from": iso(START), "to": iso(ANCHOR)},
            "targets": [{"refId": "A", "target": "mcp_tool_executions"}, {"refId": "B", "target": "llm_total_cost"}]}
    resp = ds_client.post("/grafana/query", json=body, headers=H(QUERY_TOKEN))
    assert resp.status_code == 403 and "llm-analytics" in resp.get_json()["error"]
    for name in ("provider", "model", "session"):
        assert ds_client.get(f"/api/v1/variables/{name}", headers=H(QUERY_TOKEN)).status_code == 403
        assert ds_client.post("/grafana/variable", json={"payload": {"target": name}},
                              headers=H(QUERY_TOKEN)).status_code == 403
    assert api(ds_client, "mcp_tool_executions", START, ANCHOR, token=QUERY_TOKEN)["rows"]
    assert ds_client.get("/api/v1/query/mcp_tool_executions", headers=H("wrong")).status_code == 401
    assert ds_client.get("/api/v1/query/not_a_metric", headers=H()).status_code == 404


def test_json_api_infinity_forms_catalog_openapi_and_prometheus(ds_app, ds_client):
    # Infinity's ${user:queryparam} expands to var-user=a&var-user=b.
    qs = f"from={ms(START)}&to={ms(ANCHOR)}&var-user=user1@example.com&var-user=user2@example.com&var-agent=$__all"
    resp = ds_client.get(f"/api/v1/query/mcp_top_users?{qs}", headers=H())
    body = resp.get_json()
    # Every answer says how long the service spent on it (W3C Server-Timing).
    name, _, duration = resp.headers["Server-Timing"].partition(";dur=")
    assert name == "app" and float(duration) > 0
    f = {"user": ["user1@example.com", "user2@example.com"]}
    assert_rows(body["rows"], ORACLE.top("mcp_top_users", START, ANCHOR, f), "var-user")
    listed = ds_client.get("/api/v1/metrics", headers=H()).get_json()
    ids = [m["id"] for m in listed["metrics"]]
    # Every declared metric (the query token may read every tab's).
    assert len(ids) == len(set(ids)) == len(declared.METRICS) == 87
    assert "security_top_policies" in ids and "security_hook_blocks" in ids and "telemetry_sources" in ids
    assert "llm_budgets" in ids and "value_cost_per_pull_request" in ids
    assert "llm_error_rate" in ids and "session_subagents" in ids
    doc = ds_client.get("/api/v1/openapi.json", headers=H()).get_json()
    assert doc["openapi"].startswith("3.") and "/grafana/query" in doc["paths"]
    assert "/api/v1/query/{metric_id}" in doc["paths"]
    params = {p["name"] for p in doc["paths"]["/api/v1/query/{metric_id}"]["get"]["parameters"]}
    assert {"from", "to", "tz", "page", "page_size", "order_by", "user", "agent_tag", "session"} <= params
    # Prometheus: requests and latency by metric, on the app's own registry.
    text = ds_client.get("/metrics", headers=H(QUERY_TOKEN)).get_data(as_text=True)
    assert 'aa_datasource_requests_total{face="json",metric="mcp_top_users",status="ok"}' in text
    assert 'aa_datasource_request_seconds_count{face="grafana",metric=' in text
    registry = ds_app.extensions["aa_registry"]
    assert registry.get_sample_value("aa_datasource_requests_total",
                                     {"face": "json", "metric": "mcp_top_users", "status": "ok"}) >= 1
    assert same(api(ds_client, "llm_total_cost", START, ANCHOR)["rows"][0]["value"],
                ORACLE.stat("llm_total_cost", START, ANCHOR, {}))


def test_unreachable_database_is_a_retryable_503_and_bad_json_a_400():
    from agent_analytics.app import create_app
    from agent_analytics.config import Config

    app = create_app(Config(database_url="postgresql://nobody@127.0.0.1:9/none", query_tokens=(QUERY_TOKEN,),
                            db_timeout_s=1, db_pool_size=1), role="query")
    try:
        c = app.test_client()
        resp = c.get("/api/v1/query/mcp_tool_executions", headers=H(QUERY_TOKEN))
        assert resp.status_code == 503 and "retry" in resp.get_json()["error"]
        assert resp.headers["Retry-After"] == "5"
        resp = c.post("/grafana/query", data="{not json", content_type="application/json", headers=H(QUERY_TOKEN))
        assert resp.status_code == 400 and "request" in resp.get_json()["fields"]
        assert c.get("/grafana/query", headers=H(QUERY_TOKEN)).status_code == 405
    finally:
        app.extensions["aa_db"].close()


@pytest.mark.parametrize("path, method", [("/api/v1/query/{metric_id}", "GET"), ("/api/v1/variables/{name}", "GET"),
                                          ("/grafana/query", "POST"), ("/grafana/variable", "POST")])
def test_generated_requests_from_the_openapi_document_never_fail_the_server(ds_app, path, method):
    """Schemathesis draws requests from our own OpenAPI document: every answer is a documented
    status (never a 500) and matches the documented shape."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

    from agent_analytics.datasource.openapi import document

    operation = schemathesis.openapi.from_dict(document())[path][method]
    seen: set[int] = set()

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(operation.as_strategy())
    def check(case):
        case.headers = {**(case.headers or {}), **H()}
        response = case.call(app=ds_app)
        seen.add(response.status_code)
        assert response.status_code in (200, 400, 404), (case.path_parameters, case.query, case.body,
                                                         response.text[:300])
        # A valid IANA zone or metric payload cannot be expressed in the schema: 400s are expected,
        # so "schema-valid data is accepted" is not checked; documented status and shape are.
        case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                                 response_schema_conformance])

    check()
    assert 200 in seen or 400 in seen


def test_a_page_past_any_offset_is_a_400_naming_the_field(ds_client):
    from tests.harness_support import LLM_TOKEN

    r = ds_client.get("/api/v1/query/mcp_top_mcps?page=922337203685477582",
                      headers={"Authorization": f"Bearer {LLM_TOKEN}"})
    assert r.status_code == 400 and "page" in r.get_data(as_text=True)
