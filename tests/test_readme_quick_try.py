"""The README's quick try, as written: its environment, its demo command (sending to this
installation on a changed port) and its `curl` lines, whose requests the real app answers with
the figures the demo sent."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import psycopg
import pytest
import requests

pytest.importorskip("opentelemetry.sdk")

from agent_analytics import demo  # noqa: E402
from agent_analytics.cli import main  # noqa: E402
from agent_analytics.config import Config  # noqa: E402
from agent_analytics.datasource.catalog import METRICS  # noqa: E402
from tests.harness_support import refresh_aggregates  # noqa: E402
from tests.ingest_support import Server  # noqa: E402

README = Path(__file__).resolve().parent.parent / "README.md"


def _quick_try() -> list[str]:
    text = README.read_text()
    block = re.search(r"<!-- quick-try -->\n```sh\n(.*?)```\n<!-- /quick-try -->", text, re.S)
    assert block, "README.md has no quick-try block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def _expand(line: str, env: dict[str, str]) -> str:
    """The shell's ${NAME:-default}, the only expansion the lines use."""
    line = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m.group(1)) or m.group(2), line)
    assert "$" not in line, f"an expansion this test does not know: {line}"
    return line


def _curl(line: str) -> tuple[str, dict[str, str]]:
    """The URL and headers of a `curl -s -H ... URL` line (any other option fails the test)."""
    args = shlex.split(line)
    assert args[0] == "curl"
    headers, urls, i = {}, [], 1
    while i < len(args):
        if args[i] == "-s":
            i += 1
        elif args[i] == "-H":
            name, value = args[i + 1].split(":", 1)
            headers[name.strip()] = value.strip()
            i += 2
        else:
            assert not args[i].startswith("-"), f"an option this test does not know: {args[i]}"
            urls.append(args[i])
            i += 1
    assert len(urls) == 1
    return urls[0], headers


def test_the_quick_try_runs_as_written_on_a_changed_port(db_url, monkeypatch):
    lines = _quick_try()
    exports = [line for line in lines if line.startswith("export ")]
    commands = [line for line in lines if "agent-analytics" in line]
    curls = [line for line in lines if line.startswith("curl ")]
    assert len(exports) == 1 and len(commands) == 1 and len(curls) == 3
    assert len(lines) == len(exports) + len(commands) + len(curls), lines
    env = dict(item.split("=", 1) for item in shlex.split(exports[0])[1:])

    # The installation as `scripts/run` starts it with that environment, on ports other than the default.
    cfg = Config.from_env(env, database_url=db_url)
    from agent_analytics.app import create_app

    app = create_app(cfg, role="all")
    try:
        with Server(app) as server:
            assert server.port not in (4318, 8080)
            for name, value in {**env, "AA_INGEST_PORT": str(server.port), "AA_QUERY_PORT": str(server.port)}.items():
                monkeypatch.setenv(name, value)
            command = shlex.split(commands[0])
            assert command[:2] == [".venv/bin/agent-analytics", "demo"]
            # A smaller demo than the README's 30 days of a dozen people: the same path, faster.
            size = ["--days", "3", "--users", "3"]
            plans = [demo.plan(days=3, users=3)]
            assert main(command[1:] + size) == 0
            plans.append(demo.plan(days=3, users=3))  # the same plan unless the hour turned meanwhile
            # What the service's refresh jobs do every minute (the tests' databases have them off).
            with psycopg.connect(db_url, autocommit=True) as conn:
                refresh_aggregates(conn)
            figures = {}
            for line in curls:
                url, headers = _curl(_expand(line, {"AA_QUERY_PORT": str(server.port)}))
                resp = requests.get(url, headers=headers, timeout=30)
                assert resp.status_code == 200, resp.text
                body = resp.json()
                figures[body["metric"]] = body["rows"][0]["value"]
    finally:
        app.extensions["aa_db"].close()

    # One headline figure of each dashboard.
    tabs = {m.id: m.tab for m in METRICS}
    assert {tabs[metric] for metric in figures} == {"mcp", "llm", "security"}
    # The figures, counted from what the demo planned to send.
    oracles = []
    for p in plans:
        calls = [c for s in p.sessions for c in s.tool_calls]
        oracles.append({
            "mcp_tool_executions": sum(c.outcome != "blocked" for c in calls),
            "security_blocked_calls": sum(c.outcome == "blocked" for c in calls),
            "llm_total_tokens": sum(r.input_tokens + r.output_tokens + r.cache_read_tokens + r.cache_write_tokens
                                    for s in p.sessions for r in s.requests),
        })
    assert figures in oracles
    assert all(v > 0 for v in figures.values())
