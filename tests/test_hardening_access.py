"""Access, walked over the app's whole URL map: every endpoint but the health check wants a token;
ingest and query tokens are separate; the llm-analytics permission guards every LLM and session
answer on both faces (metrics, variables, payload options, ad hoc values); tokens are compared
against every configured token without stopping early and never appear in logs or answers."""
from __future__ import annotations

import logging
import re

import pytest

from agent_analytics import auth
from agent_analytics.app import create_app
from agent_analytics.cluster import free_port
from agent_analytics.config import Config
from agent_analytics.datasource import catalog
from tests.conftest import INGEST_TOKEN, LLM_TOKEN, QUERY_TOKEN

PATH_ARGS = {"metric_id": "mcp_tool_executions", "name": "user", "kind": "users", "key": "u1",
             "group_id": "g1", "user_id": "u1", "filename": "x"}
INGEST_AREAS = ("otlp.", "directory.")
QUERY_AREAS = ("grafana_face.", "json_api.")
LLM_METRICS = [m.id for m in catalog.METRICS if m.permission is auth.Permission.LLM_ANALYTICS]
LLM_VARIABLES = [n for n, p in catalog.VARIABLES.items() if p is auth.Permission.LLM_ANALYTICS]


def _endpoints(app) -> list[tuple[str, str, str]]:
    """(endpoint, method, concrete URL) for every rule and method the app serves."""
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
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
