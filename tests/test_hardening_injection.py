"""Filters and payloads carrying SQL, regex, LIKE, template and JSON metacharacters change nothing
but the answer's emptiness, on both faces; a NUL is a 400 naming the field. Directory data and
telemetry whose names are made of those characters round-trip, and filter exactly themselves."""
from __future__ import annotations

import json
import time
from datetime import timedelta

import psycopg
import pytest
import requests

from agent_analytics.app import create_app
from agent_analytics.datasource import catalog
from tests.harness_support import INGEST_TOKEN, LLM_TOKEN, refresh_aggregates
from tests.datasource_dataset import ANCHOR
from tests.datasource_support import iso, ms
from tests.ingest_support import Server

H = {"Authorization": f"Bearer {LLM_TOKEN}"}
START = ANCHOR - timedelta(days=30)

NASTY = ["' OR 1=1 --", "'; DROP TABLE tool_calls; --", "1) OR (1=1", ".*", "^.*$", "${__all}", "x $__all y",
         "$__all,", "%", "_", "user%", "\\", "\\%", "{{x}}", "\"]}", "{}", "null", "*", "$1",
         "\u00e9\u202e", "x\ny", "a" * 5000]
NUL = "user1@example.com\x00"

# Per filter, one scalar and one ranked metric that honour it.
PROBES = {name: ([m.id for m in catalog.METRICS if name in m.filters and m.kind in ("stat", "record")][:1]
                 + [m.id for m in catalog.METRICS if name in m.filters and m.kind == "table"][:1])
          for name in catalog.ALL_FILTERS}


def _rows(client, metric: str, **params) -> list[dict]:
    resp = client.get(f"/api/v1/query/{metric}", query_string={"from": ms(START), "to": ms(ANCHOR), **params},
                      headers=H)
    assert resp.status_code == 200, (metric, params, resp.get_json())
    return resp.get_json()["rows"]


def _empty(rows: list[dict]) -> bool:
    """No rows, or rows whose every number is 0 or null (a stat or record with nothing behind it)."""
    return all(v in (0, None) for row in rows for v in row.values() if not isinstance(v, (str, bool)))


def _real_value(client, name: str, metric: str) -> str:
    """A value of the filter that does select data for the metric."""
    for row in client.get(f"/api/v1/variables/{name}", query_string={"from": ms(START), "to": ms(ANCHOR)},
                          headers=H).get_json()["rows"]:
        if not _empty(_rows(client, metric, **{name: row["value"]})):
            return row["value"]
    raise AssertionError(f"no {name} selects data for {metric}: emptiness would prove nothing")


@pytest.mark.parametrize("name", catalog.ALL_FILTERS)
def test_metacharacters_in_filters_only_empty_the_answer(ds_client, name):
    assert all(PROBES[name]), name
    for metric in PROBES[name]:
        real = _real_value(ds_client, name, metric)
        selected = _rows(ds_client, metric, **{name: real})
        for value in NASTY:
            assert _empty(_rows(ds_client, metric, **{name: value})), (metric, name, value)
        # Beside a real value the nasty ones add nothing (values of one filter are alternatives).
        assert _rows(ds_client, metric, **{name: [*NASTY, real]}) == selected, (metric, name)
        resp = ds_client.get(f"/api/v1/query/{metric}", query_string={name: NUL}, headers=H)
        assert resp.status_code == 400 and f"{name}.0" in resp.get_json()["fields"]  # the first `name=` value


def test_metacharacters_through_the_grafana_face(ds_client):
    def query(target: dict, scoped: dict | None = None, adhoc: list | None = None):
        body = {"range": {"from": iso(START), "to": iso(ANCHOR)}, "targets": [{"refId": "A", **target}],
                "scopedVars": scoped or {}, "filters": adhoc or []}
        return ds_client.post("/grafana/query", json=body, headers=H)

    def values(resp, column: str) -> list:
        assert resp.status_code == 200, resp.get_json()
        return next(f for f in resp.get_json()[0]["fields"] if f["name"] == column)["values"]

    assert values(query({"target": "mcp_tool_executions"}), "value")[0] > 0
    for value in NASTY:
        for resp in (query({"target": "mcp_tool_executions", "payload": {"user": value}}),
                     query({"target": "mcp_tool_executions", "payload": json.dumps({"mcp": [value]})}),
                     query({"target": "mcp_tool_executions"}, scoped={"agent": {"text": value, "value": [value]}}),
                     query({"target": "mcp_tool_executions"}, adhoc=[{"key": "resource_tag", "operator": "=",
                                                                      "value": value}]),
                     query({"target": "llm_total_tokens", "payload": {"model": value}})):
            assert values(resp, "value")[0] in (0, None), value
        assert values(query({"target": "mcp_top_tools", "payload": {"mcp": value}}), "tool") == []
        # A metacharacter-laden metric name or variable is an unknown one, never a query.
        resp = query({"target": value})
        assert resp.status_code == 400 and "targets.0.target" in resp.get_json()["fields"]
        resp = ds_client.post("/grafana/variable", json={"payload": {"target": value}}, headers=H)
        assert resp.status_code == 400 and "payload.target" in resp.get_json()["fields"]
        assert ds_client.get(f"/api/v1/variables/{value}", headers=H).status_code in (404, 405)
        resp = ds_client.post("/grafana/tag-values", json={"key": value}, headers=H)
        assert resp.status_code == 400
    resp = query({"target": "mcp_tool_executions", "payload": {"user": NUL}})
    assert resp.status_code == 400 and "targets.0.payload.user" in resp.get_json()["fields"]
    resp = query({"target": "mcp_tool_executions"}, scoped={"user": {"value": [NUL]}})
    assert resp.status_code == 400


ODD_NAMES = ["' OR 1=1 --", "%", "_", ".*", "{{x}}", "$__all inside", "\"]}", "\\", "a'b\"c\\d",
             "\u00e9t\u00e9 \u2603"]


def _kv(key, value):
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def test_odd_names_round_trip_and_filter_exactly_themselves(client, db_url):
    ih = {"Authorization": f"Bearer {INGEST_TOKEN}"}
    doc = {"users": [{"id": n, "email": n, "display_name": n} for n in ODD_NAMES],
           "groups": [{"id": n, "name": n, "members": [n]} for n in ODD_NAMES],
           "agents": [{"id": n, "name": n, "tags": [n]} for n in ODD_NAMES],
           "mcp_servers": [{"id": n, "name": n, "tags": [n]} for n in ODD_NAMES]}
    resp = client.post("/api/v1/directory", json=doc, headers=ih)
    assert resp.status_code == 200, resp.get_json()
    users = client.get("/api/v1/directory/users", headers=ih).get_json()["users"]
    assert sorted((u["id"], u["email"], u["display_name"], u["groups"]) for u in users) == sorted(
        (n, n, n, [n]) for n in ODD_NAMES)
    for variable, want in (("user", ODD_NAMES), ("group", ODD_NAMES), ("agent_tag", ODD_NAMES), ("mcp", ODD_NAMES)):
        rows = client.get(f"/api/v1/variables/{variable}", headers=H).get_json()["rows"]
        assert sorted(r["value"] for r in rows) == sorted(want), variable
    # One API request per odd user, each with its own token count, through the OTLP receiver.
    now = time.time_ns() - 60 * 10**9
    records = [{"timeUnixNano": str(now + i), "body": {"stringValue": "claude_code.api_request"},
                "attributes": [_kv("event.name", "api_request"), _kv("user.email", n), _kv("session.id", n),
                               _kv("model", n), _kv("input_tokens", 100 + i), _kv("output_tokens", 0)]}
               for i, n in enumerate(ODD_NAMES)]
    body = {"resourceLogs": [{"resource": {"attributes": [_kv("service.name", "claude-code")]},
                              "scopeLogs": [{"scope": {"name": "com.anthropic.claude_code.events"},
                                             "logRecords": records}]}]}
    resp = client.post("/v1/logs", json=body, headers=ih)
    assert resp.status_code == 200 and "partialSuccess" not in resp.get_json(), resp.get_json()
    with psycopg.connect(db_url, autocommit=True) as c:
        refresh_aggregates(c)
        stored = c.execute("SELECT user_id, session_id, model, input_tokens FROM llm_requests").fetchall()
    assert sorted(stored) == sorted((n, n, n, 100 + i) for i, n in enumerate(ODD_NAMES))
    window = {"from": "now-1h", "to": "now"}
    total = client.get("/api/v1/query/llm_total_tokens", query_string=window, headers=H).get_json()["rows"][0]
    assert total["value"] == sum(100 + i for i in range(len(ODD_NAMES)))
    for i, n in enumerate(ODD_NAMES):
        for name in ("user", "model", "group"):
            rows = client.get("/api/v1/query/llm_total_tokens", query_string={**window, name: n},
                              headers=H).get_json()["rows"]
            assert rows[0]["value"] == 100 + i, (name, n)
        rows = client.get("/api/v1/query/session_totals", query_string={**window, "session": n},
                          headers=H).get_json()["rows"]
        assert len(rows) == 1 and rows[0]["session_id"] == n and rows[0]["tokens"] == 100 + i, n
    # Deleting by those ids removes exactly them.
    resp = client.post("/api/v1/directory/delete", json={"groups": ODD_NAMES[:3]}, headers=ih)
    assert resp.get_json()["groups"] == 3
    left = client.get("/api/v1/directory/groups", headers=ih).get_json()["groups"]
    assert sorted(g["id"] for g in left) == sorted(ODD_NAMES[3:])


SURROGATE = "\ud800"  # a lone UTF-16 surrogate: JSON can spell it ("\\ud800"), UTF-8 cannot encode it


def test_unstorable_text_anywhere_is_a_400_naming_the_field(config, conn):
    """A lone surrogate or a NUL in any string a request carries, over real HTTP, on every face
    that reads JSON: a 400 naming where it is (never a 500 from the driver), nothing stored, and
    the next good request answered."""
    rng = {"from": "now-7d", "to": "now"}
    target = {"refId": "A", "target": "mcp_tool_executions"}

    def grafana(**body) -> dict:
        return {"range": rng, "targets": [target], **body}

    app = create_app(config, role="all")
    try:
        with Server(app) as server:
            for bad in (SURROGATE, "x\x00"):
                # (method, path, body, the field the 400 must name)
                cases = [
                    ("POST", "/grafana/query", grafana(targets=[{**target, "payload": {"user": [bad]}}]),
                     "targets.0.payload.user.0"),
                    ("POST", "/grafana/query", grafana(targets=[{**target, "payload": json.dumps({"mcp": bad})}]),
                     "targets.0.payload.mcp"),  # code mode: the payload is a JSON string
                    ("POST", "/grafana/query", grafana(targets=[{**target, "payload": {bad: "x"}}]),
                     "targets.0.payload." + bad.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")),
                    ("POST", "/grafana/query", grafana(scopedVars={"agent": {"text": "a", "value": [bad]}}),
                     "scopedVars.agent.value.0"),
                    ("POST", "/grafana/query", grafana(filters=[{"key": "resource_tag", "operator": "=", "value": bad}]),
                     "filters.0.value"),
                    ("POST", "/grafana/query", grafana(targets=[{**target, "refId": bad}]), "targets.0.refId"),
                    ("POST", "/api/v1/directory", {"users": [{"id": "u1", "email": bad}]}, "users.0.email"),
                    ("POST", "/api/v1/directory", {"users": [{"id": bad}]}, "users.0.id"),
                    ("POST", "/api/v1/directory", {"groups": [{"id": "g1", "members": ["u1", bad]}]}, "groups.0.members.1"),
                    ("POST", "/api/v1/directory", {"agents": [{"id": "a1", "tags": [bad]}]}, "agents.0.tags.0"),
                    ("POST", "/api/v1/directory", {"tools": [{"mcp_server_id": "s", "name": "t", "description": bad}]},
                     "tools.0.description"),
                    ("POST", "/api/v1/directory/delete", {"users": [bad]}, "users.0"),
                    ("POST", "/api/v1/directory/delete", {"tools": [{"mcp_server_id": bad, "name": "t"}]},
                     "tools.0.mcp_server_id"),
                    ("PUT", "/api/v1/directory/users/u1", {"display_name": bad}, "users.0.display_name"),
                    ("PUT", "/api/v1/directory/policies/p1", {"name": "p", "description": bad}, "policies.0.description"),
                ]
                for method, path, body, field in cases:
                    token = INGEST_TOKEN if "directory" in path else LLM_TOKEN
                    r = requests.request(method, server.url + path, data=json.dumps(body), timeout=30, headers={
                        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
                    assert r.status_code == 400, (bad, path, field, r.status_code, r.text[:300])
                    answer = r.json()
                    named = answer["fields"] if "grafana" in path else answer["details"]
                    assert list(named) == [field], (bad, path, answer)
                    assert ("NUL" if bad == "x\x00" else "surrogate") in named[field][0], answer
                r = requests.post(server.url + "/grafana/query", json=grafana(), timeout=30,
                                  headers={"Authorization": f"Bearer {LLM_TOKEN}"})
                assert r.status_code == 200
                r = requests.post(server.url + "/api/v1/directory", json={"users": [{"id": "u-good"}]}, timeout=30,
                                  headers={"Authorization": f"Bearer {INGEST_TOKEN}"})
                assert r.status_code == 200
                assert conn.execute("SELECT id FROM users").fetchall() == [("u-good",)]
                for table in ("groups", "agents", "agent_tags", "tools", "policies", "group_members"):
                    assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table
    finally:
        app.extensions["aa_db"].close()
