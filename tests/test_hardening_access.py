"""Access, walked over the app's whole URL map: every endpoint but the health check wants a token;
ingest and query tokens are separate; the llm-analytics permission guards every LLM and session
answer on both faces (metrics, their lists, variables, payload options, ad hoc values) and the
model names in the service's own Prometheus metrics; no static files; tokens are compared against
every configured token without stopping early and never appear in logs or answers."""
from __future__ import annotations

import logging
import re
import time

import pytest
import requests
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from agent_analytics import auth
from agent_analytics.app import create_app
from agent_analytics.cluster import free_port
from agent_analytics.config import Config
from agent_analytics.datasource import catalog
from tests.harness_support import INGEST_TOKEN, LLM_TOKEN, QUERY_TOKEN
from tests.hardening_support import api_requests
from tests.ingest_support import Server

PATH_ARGS = {"metric_id": "mcp_tool_executions", "name": "user", "kind": "users", "key": "u1",
             "group_id": "g1", "user_id": "u1"}
INGEST_AREAS = ("otlp.", "directory.")
QUERY_AREAS = ("grafana_face.", "json_api.")
LLM_METRICS = [m.id for m in catalog.METRICS if m.permission is auth.Permission.LLM_ANALYTICS]
LLM_VARIABLES = [n for n, p in catalog.VARIABLES.items() if p is auth.Permission.LLM_ANALYTICS]


def _endpoints(app) -> list[tuple[str, str, str]]:
    """(endpoint, method, concrete URL) for every rule and method the app serves."""
    out = []
    for rule in app.url_map.iter_rules():
        url = rule.build({a: PATH_ARGS[a] for a in rule.arguments}, append_unknown=False)[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((rule.endpoint, method, url))
    return out


def _call(client, method: str, url: str, token: str | None = None, header: str | None = None):
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Authorization"] = header
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.open(url, method=method, headers=headers, data=b"{}")


def test_the_url_map_is_what_this_test_walks(app):
    endpoints = {e for e, _, _ in _endpoints(app)}
    # Every endpoint belongs to an area whose access rule is asserted below.
    unclassified = {e for e in endpoints if not e.startswith(INGEST_AREAS + QUERY_AREAS)} - {
        "healthz", "prometheus_metrics"}
    assert not unclassified
    assert len(endpoints) >= 20


def test_every_endpoint_but_healthz_needs_a_token(app, client):
    assert client.get("/healthz").status_code == 200
    bad_headers = [None, "Bearer", "Bearer ", f"Basic {INGEST_TOKEN}", f"Token {LLM_TOKEN}",
                   f"Bearer {LLM_TOKEN}x", f"Bearer {LLM_TOKEN[:-1]}", f"Bearer {LLM_TOKEN.upper()}",
                   f"Bearer {INGEST_TOKEN},{LLM_TOKEN}", "Bearer \u00e9t\u00e9"]
    failures = []
    for endpoint, method, url in _endpoints(app):
        if endpoint == "healthz":
            continue
        for header in bad_headers:
            resp = _call(client, method, url, header=header)
            if resp.status_code != 401:
                failures.append((method, url, header, resp.status_code))
    assert not failures


def test_ingest_and_query_tokens_are_separate(app, client):
    failures = []
    for endpoint, method, url in _endpoints(app):
        if endpoint.startswith(INGEST_AREAS):
            for token in (QUERY_TOKEN, LLM_TOKEN):
                if (status := _call(client, method, url, token).status_code) != 403:
                    failures.append((method, url, "query token", status))
        elif endpoint.startswith(QUERY_AREAS) or endpoint == "prometheus_metrics":
            if (status := _call(client, method, url, INGEST_TOKEN).status_code) != 403:
                failures.append((method, url, "ingest token", status))
    assert not failures


def test_llm_permission_guards_every_llm_and_session_answer(client):
    h = {"Authorization": f"Bearer {QUERY_TOKEN}"}
    rng = {"from": "now-7d", "to": "now"}
    assert LLM_METRICS and set(LLM_VARIABLES) == {"provider", "model", "session"}
    for metric in LLM_METRICS:
        resp = client.get(f"/api/v1/query/{metric}", headers=h)
        assert resp.status_code == 403 and "llm-analytics" in resp.get_json()["error"], metric
        for target in ({"refId": "A", "target": metric},
                       {"refId": "A", "target": metric, "payload": {"session": "s1"}}):
            resp = client.post("/grafana/query", json={"range": rng, "targets": [target]}, headers=h)
            assert resp.status_code == 403, metric
        # Hidden behind an allowed target, it still refuses the whole request.
        resp = client.post("/grafana/query", json={"range": rng, "targets": [
            {"refId": "A", "target": "mcp_tool_executions"}, {"refId": "B", "target": metric}]}, headers=h)
        assert resp.status_code == 403, metric
    for name in LLM_VARIABLES:
        assert client.get(f"/api/v1/variables/{name}", headers=h).status_code == 403
        assert client.post("/grafana/variable", json={"payload": {"target": name}}, headers=h).status_code == 403
        assert client.post("/grafana/variable", json={"payload": name}, headers=h).status_code == 403
        assert client.post("/grafana/variable", json={"target": name}, headers=h).status_code == 403
        assert client.post("/grafana/metric-payload-options",
                           json={"metric": "sessions_table", "payload": {}, "name": name},
                           headers=h).status_code == 403
        assert client.post("/grafana/tag-values", json={"key": name}, headers=h).status_code == 403
    # The same requests with the llm-analytics token are answered.
    hl = {"Authorization": f"Bearer {LLM_TOKEN}"}
    for metric in LLM_METRICS:
        assert client.get(f"/api/v1/query/{metric}", headers=hl).status_code in (200, 400), metric
    for name in LLM_VARIABLES:
        assert client.get(f"/api/v1/variables/{name}", headers=hl).status_code == 200
        assert client.post("/grafana/tag-values", json={"key": name}, headers=hl).status_code == 200
    # Query-token lists do not name what it may not read.
    listed = {m["value"] for m in client.post("/grafana/metrics", json={}, headers=h).get_json()}
    assert not listed & set(LLM_METRICS)
    keys = {k["text"] for k in client.post("/grafana/tag-keys", json={}, headers=h).get_json()}
    assert not keys & set(LLM_VARIABLES)


def test_token_comparison_never_stops_early(app, monkeypatch):
    calls = []
    real = auth.hmac.compare_digest

    def counting(a, b):
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    cfg = app.config["AA"]
    configured = (len(cfg.ingest_tokens) + len(cfg.query_tokens) + len(cfg.llm_query_tokens)
                  + len(cfg.metrics_tokens))
    for token in (INGEST_TOKEN, LLM_TOKEN, "no-such-token"):
        calls.clear()
        with app.test_request_context(headers={"Authorization": f"Bearer {token}"}):
            auth.permissions_for(auth.bearer_token())
        # A match on the first set does not skip comparing the others (the llm set may short-circuit
        # the plain query set, which it implies).
        assert len(calls) >= configured - len(cfg.query_tokens), token


SECRETS = ("s3cret-ingest-Token-0001", "s3cret-query-Token-0002", "s3cret-llm-Token-0003",
           "s3cret-wrong-Token-0004")


DOWN_PROBES = [("POST", "/v1/logs"), ("POST", "/v1/traces"), ("GET", "/api/v1/directory/users"),
               ("POST", "/api/v1/directory"), ("GET", "/api/v1/query/mcp_tool_executions"),
               ("GET", "/api/v1/query/llm_total_cost"), ("POST", "/grafana/variable"),
               ("GET", "/api/v1/variables/user")]


def _secret_config(base: Config) -> Config:
    return base.replace(ingest_tokens=(SECRETS[0],), query_tokens=(SECRETS[1],), llm_query_tokens=(SECRETS[2],))


def _assert_never_shown(caplog, bodies: list[str]) -> None:
    logged = caplog.text + " ".join(repr(r.args) for r in caplog.records)
    for secret in SECRETS:
        assert secret not in logged
        assert not any(secret in b for b in bodies)
    assert not re.search(r"s3cret-\w+-Token", logged)


def test_tokens_never_logged_nor_echoed(config, caplog):
    caplog.set_level(logging.DEBUG)
    app = create_app(_secret_config(config), role="all")
    try:
        client = app.test_client()
        bodies = []
        for _, method, url in _endpoints(app):
            for token in SECRETS:
                resp = _call(client, method, url, token)
                bodies.append(resp.get_data(as_text=True))
                assert resp.status_code < 500, (method, url, resp.status_code)
    finally:
        app.extensions["aa_db"].close()
    _assert_never_shown(caplog, bodies)


def test_tokens_never_logged_with_the_database_down(caplog):
    caplog.set_level(logging.DEBUG)
    # A short wait (seconds, as a float) keeps the refused requests quick.
    cfg = _secret_config(Config(database_url=f"postgresql://nobody@127.0.0.1:{free_port()}/none",
                                db_timeout_s=0.2, db_pool_size=1))
    app = create_app(cfg, role="all")
    try:
        client = app.test_client()
        bodies, statuses = [], set()
        for method, url in DOWN_PROBES:
            for token in SECRETS:
                resp = _call(client, method, url, token)
                bodies.append(resp.get_data(as_text=True))
                statuses.add(resp.status_code)
        assert 503 in statuses and not any(s >= 500 and s != 503 for s in statuses)
    finally:
        app.extensions["aa_db"].close()
    assert any(r.levelno >= logging.WARNING for r in caplog.records), "nothing logged: the check would prove nothing"
    _assert_never_shown(caplog, bodies)


SECRET_MODEL = "in-house-unpriced-model"  # no list price: counted in aa_ingest_unpriced_total


def test_metrics_name_models_only_to_the_llm_permission(config, conn):
    """`GET /metrics` over real HTTP: provider and model labels summed away for a query token and
    a metrics-only token (the count itself stays, so unpriced is never silent), shown to a token
    with llm-analytics."""
    body, _ = api_requests("unpriced", 3, time.time_ns() - 60 * 10**9)
    req = ExportLogsServiceRequest.FromString(body)
    for rec in req.resource_logs[0].scope_logs[0].log_records:
        next(kv for kv in rec.attributes if kv.key == "model").value.string_value = SECRET_MODEL
    app = create_app(config.replace(metrics_tokens=("metrics-only",)), role="all")
    try:
        with Server(app) as server:
            r = requests.post(server.url + "/v1/logs", data=req.SerializeToString(), timeout=30, headers={
                "Authorization": f"Bearer {INGEST_TOKEN}", "Content-Type": "application/x-protobuf"})
            assert r.status_code == 200
            shown = {token: requests.get(server.url + "/metrics", headers={"Authorization": f"Bearer {token}"},
                                         timeout=30) for token in (QUERY_TOKEN, "metrics-only", LLM_TOKEN)}
    finally:
        app.extensions["aa_db"].close()
    assert conn.execute("SELECT count(*) FROM llm_requests WHERE model = %s", (SECRET_MODEL,)).fetchone()[0] == 3
    assert all(r.status_code == 200 for r in shown.values())

    def samples(token: str, name: str) -> list[tuple[dict, float]]:
        return [(s.labels, s.value) for f in text_string_to_metric_families(shown[token].text)
                for s in f.samples if s.name == name]

    for token in (QUERY_TOKEN, "metrics-only"):
        assert SECRET_MODEL not in shown[token].text, token
        assert not any({"model", "provider"} & set(s.labels) for f in text_string_to_metric_families(
            shown[token].text) for s in f.samples), token
        assert samples(token, "aa_ingest_unpriced_total") == [({"kind": "request"}, 3.0)], token
        assert samples(token, "aa_ingest_records_received_total") == [({"signal": "logs"}, 3.0)], token
    assert samples(LLM_TOKEN, "aa_ingest_unpriced_total") == [
        ({"kind": "request", "provider": "anthropic", "model": SECRET_MODEL}, 3.0)]


def test_the_metric_lists_name_llm_metrics_only_to_the_llm_permission(client):
    """Both faces list only what the token may read: GET /api/v1/metrics as POST /grafana/metrics."""
    allowed = {m.id for m in catalog.METRICS} - set(LLM_METRICS)
    assert allowed and LLM_METRICS
    for token, metrics, variables in ((QUERY_TOKEN, allowed, set(catalog.VARIABLES) - set(LLM_VARIABLES)),
                                      (LLM_TOKEN, {m.id for m in catalog.METRICS}, set(catalog.VARIABLES))):
        h = {"Authorization": f"Bearer {token}"}
        listed = client.get("/api/v1/metrics", headers=h).get_json()
        assert {m["id"] for m in listed["metrics"]} == metrics, token
        assert set(listed["variables"]) == set(listed["filters"]) == variables, token
        assert {m["value"] for m in client.post("/grafana/metrics", json={}, headers=h).get_json()} == metrics
        assert {k["text"] for k in client.post("/grafana/tag-keys", json={}, headers=h).get_json()} == variables


def test_no_static_files_are_served(config, tmp_path, monkeypatch):
    """Flask's default static route would serve a `static/` folder beside the working directory
    without a token."""
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "secret.txt").write_text("not for you")
    monkeypatch.chdir(tmp_path)
    for role in ("all", "ingest", "query"):
        app = create_app(config, role=role)
        try:
            assert not [r for r in app.url_map.iter_rules() if "static" in r.rule or r.endpoint == "static"]
            with Server(app) as server:
                for token in (None, INGEST_TOKEN, LLM_TOKEN):
                    h = {"Authorization": f"Bearer {token}"} if token else {}
                    r = requests.get(server.url + "/static/secret.txt", headers=h, timeout=30)
                    assert r.status_code in (401, 404) and "not for you" not in r.text, (role, token, r.status_code)
        finally:
            app.extensions["aa_db"].close()
