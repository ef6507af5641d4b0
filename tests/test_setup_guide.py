"""`agent-analytics setup claude-code|codex|gateway`: what it prints for this installation works.

The shell snippets are run by bash and, with nothing else in the environment, configure the
OpenTelemetry SDK itself (the SDK's own environment configuration, as `opentelemetry-instrument`
uses it) in a separate process, which sends to a real receiver; the JSON and TOML are parsed with
json and tomllib, and Codex's exporter settings send a record too. The database shows each record.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk")

from agent_analytics.cli import main  # noqa: E402
from agent_analytics.setup_guide import GATEWAY_ATTRIBUTES, TARGETS, snippets  # noqa: E402
from tests.harness_support import INGEST_TOKEN  # noqa: E402
from tests.ingest_support import Server  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _printed(target: str, capsys, monkeypatch, port: int) -> dict[str, str]:
    """`agent-analytics setup TARGET` for an installation on `port`: its sections by title."""
    monkeypatch.setenv("AA_HOST", "127.0.0.1")
    monkeypatch.setenv("AA_INGEST_PORT", str(port))
    monkeypatch.setenv("AA_INGEST_TOKENS", f"{INGEST_TOKEN},a-second-token")
    capsys.readouterr()
    assert main(["setup", target]) == 0
    out = capsys.readouterr().out
    sections = re.split(r"^### (.*)\n", out, flags=re.M)
    assert sections[0] == ""
    return {title: text.strip() for title, text in zip(sections[1::2], sections[2::2])}


def _section(sections: dict[str, str], starts: str) -> str:
    found = [text for title, text in sections.items() if title.startswith(starts)]
    assert len(found) == 1, list(sections)
    return found[0]


def _environment_of(exports: str) -> dict[str, str]:
    """The environment the lines make, run by bash in an otherwise empty environment."""
    proc = subprocess.run(["env", "-i", "bash", "-c", f"set -eu\n{exports}\nenv -0"],
                          capture_output=True, text=True, check=True)
    env = dict(item.split("=", 1) for item in proc.stdout.split("\0") if item)
    return {k: v for k, v in env.items() if k not in ("PWD", "SHLVL", "_")}


def _send_from_environment(env: dict[str, str], program: str) -> None:
    """Run `program` in a process whose SDK is configured from `env` alone."""
    prelude = textwrap.dedent("""
        import time
        from opentelemetry.sdk._configuration import _OTelSDKConfigurator
        _OTelSDKConfigurator().configure()  # exporters, endpoint, headers, protocol: all from the environment
        from opentelemetry import _logs, metrics, trace
        now = time.time_ns()
    """)
    proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(program)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # The SDK logs failed exports instead of raising: none may have failed.
    assert "Failed to export" not in proc.stderr and "rror" not in proc.stderr, proc.stderr


def test_claude_code_environment_configures_an_sdk_that_sends_events_and_metrics(app, conn, capsys, monkeypatch):
    with Server(app) as server:
        sections = _printed("claude-code", capsys, monkeypatch, server.port)
        env = _environment_of(_section(sections, "One machine"))
        assert env["CLAUDE_CODE_ENABLE_TELEMETRY"] == "1"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://127.0.0.1:{server.port}"
        assert env["OTEL_EXPORTER_OTLP_HEADERS"] == f"Authorization=Bearer {INGEST_TOKEN}"
        # The organisation's managed settings carry the very same environment.
        managed = json.loads(_section(sections, "Whole organisation"))
        assert managed == {"env": env}
        # Claude Code names itself; everything else comes from the printed environment.
        _send_from_environment({**env, "OTEL_SERVICE_NAME": "claude-code"}, """
            who = {"session.id": "sess-setup", "user.email": "setup@example.com", "user.id": "anon"}
            events = _logs.get_logger_provider().get_logger("com.anthropic.claude_code.events")
            events.emit(body="claude_code.api_request", timestamp=now, attributes={
                **who, "event.name": "api_request", "model": "claude-sonnet-4-5", "input_tokens": 120,
                "output_tokens": 30, "cache_read_tokens": 0, "cache_creation_tokens": 0, "cost_usd": 0.01,
                "duration_ms": 900})
            tokens = metrics.get_meter("com.anthropic.claude_code").create_counter("claude_code.token.usage")
            tokens.add(777, {**who, "model": "claude-sonnet-4-5", "type": "output"})
            _logs.get_logger_provider().shutdown()
            metrics.get_meter_provider().shutdown()
        """)
    assert conn.execute("SELECT session_id, user_id, model, input_tokens, output_tokens FROM llm_requests"
                        ).fetchall() == [("sess-setup", "setup@example.com", "claude-sonnet-4-5", 120, 30)]
    assert conn.execute("SELECT session_id, metric, token_type, value FROM metric_points").fetchall() == [
        ("sess-setup", "tokens", "output", 777.0)]


def test_gateway_environment_configures_an_sdk_that_sends_tool_calls(app, conn, capsys, monkeypatch):
    with Server(app) as server:
        sections = _printed("gateway", capsys, monkeypatch, server.port)
        env = _environment_of(_section(sections, "The gateway's environment"))
        _send_from_environment({**env, "OTEL_SERVICE_NAME": "mcp-gateway"}, """
            tracer = trace.get_tracer("mcp-gateway")
            with tracer.start_as_current_span("tools/call create_issue", kind=trace.SpanKind.SERVER, attributes={
                    "mcp.method.name": "tools/call", "gen_ai.tool.name": "create_issue",
                    "mcp.server.name": "github", "user.email": "gw@example.com", "agent.id": "claude-code",
                    "agent.instance.id": "gw-laptop"}):
                pass
            trace.get_tracer_provider().shutdown()
        """)
        contract = _section(sections, "The attributes of each tool call")
    assert conn.execute("SELECT mcp_server_id, tool_name, outcome, user_id, agent_instance_id FROM tool_calls"
                        ).fetchall() == [("github", "create_issue", "ok", "gw@example.com", "gw-laptop")]
    for name, _, _ in GATEWAY_ATTRIBUTES:
        assert f"`{name}`" in contract


def test_codex_config_parses_and_its_exporter_settings_send(app, conn, capsys, monkeypatch):
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    with Server(app) as server:
        sections = _printed("codex", capsys, monkeypatch, server.port)
        otel = tomllib.loads(_section(sections, "Codex"))["otel"]
        exporter = otel["exporter"]["otlp-http"]
        assert exporter["endpoint"] == f"http://127.0.0.1:{server.port}/v1/logs"  # the full URL of the signal
        assert exporter["protocol"] == "binary" and otel["log_user_prompt"] is False
        # What Codex does with these settings: protobuf log records to that URL with those headers.
        provider = LoggerProvider(resource=Resource.create({"service.name": "codex_cli_rs"}))
        provider.add_log_record_processor(BatchLogRecordProcessor(
            OTLPLogExporter(endpoint=exporter["endpoint"], headers=exporter["headers"])))
        provider.get_logger("codex_otel").emit(body="", timestamp=0, attributes={
            "event.name": "codex.sse_event", "event.kind": "response.completed", "event.timestamp":
            "2026-12-01T10:00:00.000Z", "conversation.id": "conv-setup", "model": "gpt-5",
            "user.email": "codex@example.com", "input_token_count": 100, "cached_token_count": 20,
            "output_token_count": 50, "reasoning_token_count": 10, "tool_token_count": 150})
        assert provider.force_flush(10_000)
        provider.shutdown()
    # Codex's input count includes the cached tokens; stored, input excludes them.
    assert conn.execute("SELECT session_id, user_id, model, input_tokens, cache_read_tokens, output_tokens"
                        " FROM llm_requests").fetchall() == [
        ("conv-setup", "codex@example.com", "gpt-5", 80, 20, 50)]


def test_every_target_has_snippets_and_the_token_and_endpoint_are_in_each():
    made = snippets("https://analytics.example.com:4318", "tok-123")
    assert set(made) == set(TARGETS)
    for target, items in made.items():
        assert items, target
        assert all(s.language in ("sh", "json", "toml", "markdown") for s in items)
        pasted = "\n".join(s.text for s in items if s.language != "markdown")
        assert "tok-123" in pasted and "https://analytics.example.com:4318" in pasted, target


def test_the_gateway_attributes_agree_with_the_contract():
    """The short list names each attribute as docs/gateway-contract.md does, needed as there,
    and every required one."""
    doc = (REPO / "docs" / "gateway-contract.md").read_text()
    # The column's first words (the doc may add a remark in brackets).
    table = {m.group(1): m.group(2).split(" (")[0].strip()
             for m in re.finditer(r"^\| `([^`]+)`[^|]*\| ([^|]+)\|", doc, re.M)}
    for name, needed, _ in GATEWAY_ATTRIBUTES:
        assert table.get(name) == needed, (name, table.get(name))
    required = {name for name, needed in table.items() if needed == "yes"}
    assert required <= {name for name, _, _ in GATEWAY_ATTRIBUTES}


def test_without_tokens_the_placeholder_is_printed_and_said(capsys, monkeypatch):
    monkeypatch.delenv("AA_INGEST_TOKENS", raising=False)
    monkeypatch.setenv("AA_HOST", "127.0.0.1")
    assert main(["setup", "codex"]) == 0
    captured = capsys.readouterr()
    assert "Bearer <ingest token>" in captured.out
    assert "AA_INGEST_TOKENS" in captured.err and "AA_HOST=0.0.0.0" in captured.err
