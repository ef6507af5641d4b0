"""The Telemetry page: what is arriving, counted by the receiver (ingest_stats) and shown by the
Telemetry metrics and `agent-analytics status`, against what the test itself sent.

Captured payloads (Claude Code, Codex, an MCP server's own spans) go through the receiver over
the test client, SDK-made ones (a gateway's, an MCP client's and a GenAI app's spans) through the OpenTelemetry
SDK's exporters on a real port, with planted bad records and a resent batch. The oracle counts
the records in each payload from the decoded protobuf, the stored ones from the fact rows the
database holds per source, and the rejections from what the test planted.
"""
from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from tests.harness_support import INGEST_TOKEN, QUERY_TOKEN
from tests.ingest_support import Server, fixture_bytes, logs_fixture, plain, post

QUERY = {"Authorization": f"Bearer {QUERY_TOKEN}"}
NAMES = {"claude_code": "Claude Code", "codex": "Codex", "gateway": "MCP gateway", "mcp_server": "MCP server",
         "mcp_client": "MCP client", "genai": "GenAI SDK"}
FACT_TABLES = ("llm_requests", "llm_errors", "tool_calls", "metric_points", "agent_enforcement",
               "productivity_points")

# Captured payloads and the source the test knows each comes from.
CAPTURED = [
    ("claude-code-2.1.332-subagents-logs-1.pb", "logs", "claude_code"),
    ("claude-code-2.1.332-subagents-logs-3.pb", "logs", "claude_code"),
    ("claude-code-2.1.332-subagents-metrics-1.pb", "metrics", "claude_code"),
    ("claude-code-2.1.332-subagents-metrics-2.pb", "metrics", "claude_code"),
    ("codex-0.171.0-shell-500-then-ok-logs-1.pb", "logs", "codex"),
    ("codex-0.171.0-shell-500-then-ok-metrics-1.pb", "metrics", "codex"),
    ("demo-mcp-server-mcp-connection-failures-traces-1.pb", "traces", "mcp_server"),
    ("demo-mcp-server-mcp-connection-failures-traces-2.pb", "traces", "mcp_server"),
    ("mcp-python-sdk-2.3.0-server-tools-call-traces-1.pb", "traces", "mcp_server"),
]
FUTURE = "timestamp is more than a day in the future"


def _records(signal: str, body: bytes) -> int:
    """Records in an OTLP body, counted from the protobuf: log records, data points, spans."""
    if signal == "logs":
        return sum(len(sl.log_records) for rl in logs_fixture_from(body).resource_logs for sl in rl.scope_logs)
    if signal == "traces":
        req = ExportTraceServiceRequest.FromString(body)
        return sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
    req = ExportMetricsServiceRequest.FromString(body)
    n = 0
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                n += len(getattr(m, kind).data_points) if kind else 0
    return n


def logs_fixture_from(body: bytes):
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    return ExportLogsServiceRequest.FromString(body)


def _facts(conn, source: str) -> int:
    return sum(conn.execute(f"SELECT count(*) FROM {t} WHERE source = %s", (source,)).fetchone()[0]
               for t in FACT_TABLES)


def _future_api_request() -> tuple[bytes, str]:
    """Claude Code's subagents logs-2 with its first api_request moved two days ahead: that
    record is rejected, the others are not. Returns the body and the session's install hash."""
    req = logs_fixture("claude-code-2.1.332-subagents-logs-2.pb")
    rec = next(r for rl in req.resource_logs for sl in rl.scope_logs for r in sl.log_records
               if r.body.string_value == "claude_code.api_request")
    rec.time_unix_nano = time.time_ns() + 2 * 86_400 * 10**9
    install = next(plain(kv.value) for kv in rec.attributes if kv.key == "user.id")
    return req.SerializeToString(), install


def _send_sdk_spans(url: str) -> None:
    """A gateway's tool-call spans (one blocked without its policy), an MCP client's, and a GenAI
    app's model calls (one with more cache tokens than input tokens), through the SDK's OTLP/HTTP
    exporter."""
    gateway = TracerProvider(resource=Resource.create({"service.name": "mcp-gateway", "service.version": "1.4.0"}))
    gateway.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
        endpoint=f"{url}/v1/traces", headers={"Authorization": f"Bearer {INGEST_TOKEN}"})))
    tracer = gateway.get_tracer("gateway")
    common = {"mcp.method.name": "tools/call", "mcp.server.name": "jira", "user.email": "carol@example.com",
              "agent.id": "claude-code", "agent.instance.id": "laptop-7"}
    for tool in ("search", "create", "comment"):
        with tracer.start_as_current_span(f"tools/call {tool}", attributes={**common, "gen_ai.tool.name": tool}):
            pass
    with tracer.start_as_current_span("tools/call delete", attributes={
            **common, "gen_ai.tool.name": "delete", "mcp.gateway.decision": "block"}):
        pass
    gateway.shutdown()
    client = TracerProvider(resource=Resource.create({"service.name": "agent-sdk", "service.version": "0.9.0"}))
    client.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
        endpoint=f"{url}/v1/traces", headers={"Authorization": f"Bearer {INGEST_TOKEN}"})))
    with client.get_tracer("mcp").start_as_current_span("tools/call search", kind=SpanKind.CLIENT, attributes={
            "mcp.method.name": "tools/call", "gen_ai.tool.name": "search", "server.address": "jira.internal"}):
        pass
    client.shutdown()
    app = TracerProvider(resource=Resource.create({"service.name": "notes-app", "service.version": "3.1.0"}))
    app.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
        endpoint=f"{url}/v1/traces", headers={"Authorization": f"Bearer {INGEST_TOKEN}"})))
    tracer = app.get_tracer("openai")
    chat = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-5",
            "enduser.id": "dave@example.com"}
    with tracer.start_as_current_span("chat gpt-5", attributes={**chat, "gen_ai.usage.input_tokens": 100,
                                                                  "gen_ai.usage.output_tokens": 20}):
        pass
    with tracer.start_as_current_span("chat gpt-5", attributes={**chat, "gen_ai.usage.input_tokens": 10,
                                                                  "gen_ai.usage.cache_read.input_tokens": 50}):
        pass
    app.shutdown()


def _rows(client, metric: str, **params) -> list[dict]:
    r = client.get(f"/api/v1/query/{metric}", headers=QUERY, query_string={"from": "now-2h", "to": "now", **params})
    assert r.status_code == 200, r.data
    return r.get_json()["rows"]


@pytest.fixture
def sent(app, client, conn):
    """Send everything; returns the oracle: per source, records sent, stored, duplicates,
    rejections (reason -> n), and the senders expected."""
    sent: dict[str, Counter] = {s: Counter() for s in NAMES}
    rejections: Counter = Counter()
    for name, signal, source in CAPTURED:
        body = fixture_bytes(name)
        r = post(client, f"/v1/{signal}", body)
        assert r.status_code == 200, (name, r.data)
        sent[source]["received"] += _records(signal, body)
    body, install = _future_api_request()
    before = _facts(conn, "claude_code")
    for attempt in (1, 2):  # the second time, a sender's retry: its facts are duplicates
        r = post(client, "/v1/logs", body)
        assert r.status_code == 200
        answer = ExportLogsServiceResponse.FromString(r.data)
        assert answer.partial_success.rejected_log_records == 1 and FUTURE in answer.partial_success.error_message
        sent["claude_code"]["received"] += _records("logs", body)
        rejections[("claude_code", FUTURE)] += 1
        if attempt == 1:
            made = _facts(conn, "claude_code") - before
            assert made > 0
    sent["claude_code"]["duplicate"] += made
    with Server(app) as server:
        _send_sdk_spans(server.url)
    sent["gateway"]["received"] += 4
    sent["mcp_client"]["received"] += 1
    sent["genai"]["received"] += 2
    rejections[("gateway", "blocked tool call without policy.id")] += 1
    rejections[("genai", "cache tokens")] += 1
    for source, counts in sent.items():
        counts["stored"] = _facts(conn, source)
        counts["rejected"] = sum(n for (s, _), n in rejections.items() if s == source)
        counts["ignored"] = counts["received"] - counts["stored"] - counts["duplicate"] - counts["rejected"]
        assert counts["ignored"] >= 0, source
    return sent, rejections, install


def test_the_sources_table_equals_what_was_sent(sent, client):
    expected, _, _ = sent
    rows = {r["source"]: r for r in _rows(client, "telemetry_sources")}
    assert set(rows) == set(NAMES.values())
    for source, counts in expected.items():
        row = rows[NAMES[source]]
        for outcome in ("received", "stored", "duplicate", "ignored", "rejected"):
            assert row[outcome] == counts[outcome], (source, outcome, row, counts)
    assert rows["Claude Code"]["versions"] == "2.1.332" and rows["Claude Code"]["signals"] == "logs, metrics"
    assert rows["Codex"]["versions"] == "0.171.0"
    assert rows["MCP gateway"]["versions"] == "1.4.0" and rows["MCP gateway"]["signals"] == "traces"
    assert rows["GenAI SDK"]["versions"] == "3.1.0" and rows["MCP client"]["versions"] == "0.9.0"
    assert rows["MCP server"]["versions"] is None  # the demo MCP server names no version
    now_ms = time.time() * 1000
    assert all(now_ms - 600_000 < r["last_seen"] <= now_ms + 1000 for r in rows.values())
    # The Claude Code rows stored are its fact rows: every event and point counted once.
    assert rows["Claude Code"]["stored"] > 0 and rows["Claude Code"]["ignored"] > 0


def test_rejection_reasons_and_the_series_by_outcome(sent, client):
    expected, rejections, _ = sent
    got = {(r["source"], r["reason"]): r["rejected"] for r in _rows(client, "telemetry_rejections")}
    assert got == {(NAMES[s], reason): n for (s, reason), n in rejections.items()}
    series = _rows(client, "telemetry_records_over_time")
    assert len(series) >= 2  # hourly buckets over two hours
    for outcome in ("stored", "duplicate", "ignored", "rejected"):
        assert sum(b[outcome] for b in series) == sum(c[outcome] for c in expected.values()), outcome


def test_per_agent_instance_and_user(sent, client):
    _, _, install = sent
    rows = _rows(client, "telemetry_senders")
    gateway = [r for r in rows if r["source"] == "MCP gateway"]
    assert [(r["service"], r["versions"], r["agent_instance"], r["user_id"], r["user"], r["stored"], r["rejected"])
            for r in gateway] == [("mcp-gateway", "1.4.0", "laptop-7", "carol@example.com", "carol@example.com",
                                   3, 1)]
    genai = [r for r in rows if r["source"] == "GenAI SDK"]
    assert [(r["service"], r["user_id"], r["stored"], r["rejected"]) for r in genai] == [
        ("notes-app", "dave@example.com", 1, 1)]
    # Claude Code's install hash is its agent instance (and, without an email, its user).
    claude = {r["agent_instance"]: r for r in rows if r["source"] == "Claude Code"}
    assert install in claude and claude[install]["rejected"] == 2 and claude[install]["user_id"] == install
    # The MCP server's instance is its service.instance.id.
    servers = {r["agent_instance"] for r in rows if r["source"] == "MCP server"}
    assert servers == {"1c8b5bbb-ec4c-4131-ba69-5c819f56b505", "fdeb383d-a06d-4e9d-b8cf-2a27d5559c2a"}
    assert sum(r["received"] for r in rows) == sum(r["received"] for r in _rows(client, "telemetry_sources"))


def test_the_telemetry_metrics_need_only_a_query_token(sent, client):
    r = client.get("/api/v1/query/telemetry_sources", headers=QUERY)
    assert r.status_code == 200
    assert client.get("/api/v1/query/telemetry_sources").status_code == 401


def test_a_batch_the_database_refused_is_not_counted(app, client, conn, monkeypatch):
    """Counted in the batch's transaction: when the store fails, the sender is told to retry
    (503) and nothing of the batch is counted; the retry is counted once."""
    from agent_analytics.ingest import stats

    body = fixture_bytes("codex-0.171.0-shell-500-then-ok-logs-1.pb")
    real = stats.write

    def failing(*args, **kwargs):
        import psycopg

        raise psycopg.OperationalError("the database went away")

    monkeypatch.setattr(stats, "write", failing)
    assert post(client, "/v1/logs", body).status_code == 503
    assert conn.execute("SELECT count(*) FROM ingest_stats").fetchone()[0] == 0
    assert _facts(conn, "codex") == 0
    monkeypatch.setattr(stats, "write", real)
    assert post(client, "/v1/logs", body).status_code == 200
    (received,) = conn.execute("SELECT sum(records) FROM ingest_stats").fetchone()
    assert received == _records("logs", body)


def test_an_all_ignored_batch_is_counted(client, conn):
    """Records with nothing to store (here Codex's metrics) are counted too."""
    body = fixture_bytes("codex-0.171.0-shell-500-then-ok-metrics-1.pb")
    assert post(client, "/v1/metrics", body).status_code == 200
    assert conn.execute("SELECT outcome, sum(records) FROM ingest_stats GROUP BY 1").fetchall() == [
        ("ignored", _records("metrics", body))]


def test_sender_text_is_cut_and_cleaned(client, conn):
    """A key part is the sender's own text: cut, and without what PostgreSQL text cannot hold."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    for key, value in (("service.name", "x" * 5000), ("service.version", "1.0\x00evil")):
        kv = rl.resource.attributes.add()
        kv.key, kv.value.string_value = key, value
    rl.scope_logs.add().log_records.add().time_unix_nano = time.time_ns()
    assert post(client, "/v1/logs", req.SerializeToString()).status_code == 200
    assert conn.execute("SELECT source, length(service), version, outcome FROM ingest_stats").fetchall() == [
        ("other", 200, "1.0evil", "ignored")]


def test_senders_of_records_that_stored_nothing_are_bounded(client, conn):
    """10,000 rejected records, each naming another user, and 2,000 ignored ones naming 2,000
    instances: the senders beyond the bound are counted together as "(other)", every record
    still counted under its outcome and reason."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    from agent_analytics.ingest.stats import MAX_UNSTORED_SENDERS

    future = time.time_ns() + 2 * 86_400 * 10**9
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    kv = rl.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "claude-code"
    records = rl.scope_logs.add().log_records
    for i in range(10_000):
        r = records.add()
        r.time_unix_nano = future
        r.body.string_value = "claude_code.api_request"
        for key, value in (("user.email", f"user{i}@example.com"), ("user.id", "install-1")):
            kv = r.attributes.add()
            kv.key, kv.value.string_value = key, value
    other = req.resource_logs.add()
    kv = other.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "some-app"
    records = other.scope_logs.add().log_records
    for i in range(2_000):
        r = records.add()
        r.time_unix_nano = time.time_ns()
        kv = r.attributes.add()
        kv.key, kv.value.string_value = "service.instance.id", f"pod-{i}"
    r = post(client, "/v1/logs", req.SerializeToString())
    assert r.status_code == 200, r.data
    answer = ExportLogsServiceResponse.FromString(r.data)
    assert answer.partial_success.rejected_log_records == 10_000
    assert FUTURE in answer.partial_success.error_message
    assert conn.execute("SELECT outcome, reason, sum(records) FROM ingest_stats GROUP BY 1, 2 ORDER BY 1").fetchall() \
        == [("ignored", "", 2_000), ("rejected", FUTURE, 10_000)]
    assert conn.execute("SELECT count(*) FROM ingest_stats").fetchone()[0] <= MAX_UNSTORED_SENDERS + 2
    # What is kept apart is the sender's own: the rest is under "(other)", wholly.
    folded = conn.execute("SELECT service, version, agent_instance, user_id, sum(records) FROM ingest_stats"
                          " WHERE user_id = '(other)' OR agent_instance = '(other)' GROUP BY 1, 2, 3, 4").fetchall()
    assert folded == [("(other)", "(other)", "(other)", "(other)", 12_000 - MAX_UNSTORED_SENDERS)]
    apart = conn.execute("SELECT service, agent_instance, user_id, records FROM ingest_stats"
                         " WHERE user_id <> '(other)'").fetchall()
    assert len(apart) == MAX_UNSTORED_SENDERS and all(n == 1 for *_, n in apart)
    for service, instance, user, _ in apart:
        assert (service, instance) == ("claude-code", "install-1") and user.startswith("user") \
            or service == "some-app" and instance.startswith("pod-") and user == ""


def test_senders_of_stored_records_are_kept_apart(client, conn):
    """A sender that stored records keeps its own rows for what it sent that stored nothing,
    however many other senders the request names, each with more such records than it."""
    from agent_analytics.ingest.stats import MAX_UNSTORED_SENDERS, OTHER

    body, install = _future_api_request()
    req = logs_fixture_from(body)
    records = req.resource_logs[0].scope_logs[0].log_records
    senders = 3 * MAX_UNSTORED_SENDERS
    for i in range(2 * senders):
        r = records.add()
        r.time_unix_nano = time.time_ns()
        kv = r.attributes.add()
        kv.key, kv.value.string_value = "user.email", f"user{i % senders}@example.com"
    assert post(client, "/v1/logs", req.SerializeToString()).status_code == 200
    rejected = conn.execute("SELECT agent_instance, records FROM ingest_stats WHERE outcome = 'rejected'").fetchall()
    assert rejected == [(install, 1)]
    assert conn.execute("SELECT count(*), sum(records) FROM ingest_stats WHERE outcome = 'ignored'"
                        " AND user_id LIKE 'user%%@example.com'").fetchone() == (MAX_UNSTORED_SENDERS,
                                                                             2 * MAX_UNSTORED_SENDERS)
    assert conn.execute("SELECT outcome, sum(records) FROM ingest_stats WHERE user_id = %s GROUP BY 1",
                        (OTHER,)).fetchall() == [("ignored", 2 * (senders - MAX_UNSTORED_SENDERS))]


# --- agent-analytics status ------------------------------------------------------------------

def _status(monkeypatch, capsys, db_url: str, *args: str) -> str:
    from agent_analytics.cli import main

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("AA_INGEST_PORT", "4399")
    assert main(["status", *args]) == 0
    return capsys.readouterr().out


def test_status_on_an_empty_installation(db_url, monkeypatch, capsys):
    out = _status(monkeypatch, capsys, db_url)
    assert out.startswith("Nothing has arrived yet")
    assert ":4399" in out  # this installation's receiver
    assert all(f"agent-analytics setup {t}" in out for t in ("claude-code", "codex", "gateway"))
    assert "docs/opentelemetry.md" in out


def test_status_on_a_filled_installation(sent, db_url, monkeypatch, capsys):
    expected, rejections, _ = sent
    out = _status(monkeypatch, capsys, db_url, "--since", "now-1h")
    lines = out.splitlines()
    assert lines[0].startswith("What is arriving")
    header = lines[2].split()
    assert header[-5:] == ["received", "stored", "duplicate", "ignored", "rejected"]
    for source, counts in expected.items():
        line = next(l for l in lines if l.startswith(NAMES[source] + "  "))
        assert [int(x) for x in line.split()[-5:]] == [counts[o] for o in
                                                       ("received", "stored", "duplicate", "ignored", "rejected")]
    assert any(FUTURE in l and l.split()[0] == "Claude" for l in lines)
    assert "Nothing has arrived" not in out


def test_status_finds_no_database(monkeypatch, tmp_path, capsys):
    from agent_analytics.cli import main

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("AA_DATA_DIR", str(tmp_path / "none"))
    with pytest.raises(SystemExit) as exc:
        main(["status"])
    assert "agent-analytics up" in str(exc.value)


def test_status_reads_the_running_embedded_database(pg_cluster, monkeypatch, capsys):
    """Without DATABASE_URL, `status` reads the embedded cluster `agent-analytics up` runs in
    AA_DATA_DIR on AA_EMBEDDED_PG_PORT (here the test cluster, given the embedded database)."""
    import psycopg

    from agent_analytics.cli import main
    from agent_analytics.server import EMBEDDED_DB_NAME
    from agent_analytics.sql.migrate import migrate

    url = pg_cluster.create_database(EMBEDDED_DB_NAME)
    migrate(url, timescaledb="off", retention_days=0, compress_after_days=0)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("TRUNCATE ingest_stats")
        c.execute("INSERT INTO ingest_stats VALUES (date_trunc('hour', now()), 'codex', 'logs', 'codex_exec',"
                  " '0.171.0', '', 'erin@example.com', 'stored', '', 7, now())")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("AA_DATA_DIR", pg_cluster.data_dir)
    monkeypatch.setenv("AA_EMBEDDED_PG_PORT", str(pg_cluster.port))
    assert main(["status"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("Codex "))
    assert line.split()[1:3] == ["logs", "0.171.0"] and line.split()[-5:] == ["7", "7", "0", "0", "0"]


def test_concurrent_senders_are_all_counted(app, conn):
    """Six senders at once over real HTTP, each sending the same three batches (so their rows
    and their facts collide): every record is counted once per arrival, each fact stored once,
    and no receiver deadlocks or loses an update of a shared hourly row."""
    import threading

    import requests

    bodies = [("logs", fixture_bytes("claude-code-2.1.332-subagents-logs-1.pb")),
              ("metrics", fixture_bytes("claude-code-2.1.332-subagents-metrics-1.pb")),
              ("logs", fixture_bytes("codex-0.171.0-shell-500-then-ok-logs-1.pb"))]
    statuses: list[int] = []

    def sender() -> None:
        for signal, body in bodies:
            r = requests.post(f"{server.url}/v1/{signal}", data=body, timeout=60, headers={
                "Authorization": f"Bearer {INGEST_TOKEN}", "Content-Type": "application/x-protobuf"})
            statuses.append(r.status_code)

    with Server(app) as server:
        threads = [threading.Thread(target=sender) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert statuses == [200] * 18
    per_round = sum(_records(signal, body) for signal, body in bodies)
    got = dict(conn.execute("SELECT outcome, sum(records)::bigint FROM ingest_stats GROUP BY 1").fetchall())
    assert sum(got.values()) == 6 * per_round
    facts = _facts(conn, "claude_code") + _facts(conn, "codex")
    assert got["stored"] == facts and got["duplicate"] == 5 * facts
