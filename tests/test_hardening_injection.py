"""Filters and payloads carrying SQL, regex, LIKE, template and JSON metacharacters change nothing
but the answer's emptiness, on both faces; a NUL is a 400 naming the field. Directory data and
telemetry whose names are made of those characters round-trip, and filter exactly themselves."""
from __future__ import annotations

import json
import time
from datetime import timedelta

import psycopg
import pytest

from agent_analytics.datasource import catalog
from agent_analytics.sql.migrate import refresh_aggregates
from tests.conftest import INGEST_TOKEN, LLM_TOKEN
from tests.datasource_dataset import ANCHOR, ds_app, ds_client  # noqa: F401
from tests.test_datasource_metrics import ms
from tests.test_datasource_time import iso

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
        assert resp.status_code == 400 and name in resp.get_json()["fields"]


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
