"""What to set so that an agent (Claude Code, Codex) or an MCP gateway sends its telemetry here.

`snippets(endpoint, token)` is the one home of these texts: `agent-analytics setup TARGET` prints
them, and anything else that shows them (a dashboard panel, docs) takes them from here. Each
target maps to a list of `Snippet(title, language, text)`: the title says where the text goes,
`language` names its syntax for a code block (`sh`, `json`, `toml`, `markdown`), `text` is ready
to paste. The variables and syntax are those docs/opentelemetry.md explains.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any, Callable, NamedTuple

from agent_analytics.ingest import normalise_claude_code as claude_code
from agent_analytics.ingest import normalise_codex as codex
from agent_analytics.ingest import normalise_gateway as gateway
from agent_analytics.ingest.sources import AGENTS, SOURCES

TOKEN_PLACEHOLDER = "<ingest token>"

# Claude Code's managed settings file, per OS (its `env` block applies to every session).
MANAGED_SETTINGS_PATHS: tuple[tuple[str, str], ...] = (
    ("Linux, WSL", "/etc/claude-code/managed-settings.json"),
    ("macOS", "/Library/Application Support/ClaudeCode/managed-settings.json"),
    ("Windows", r"C:\Program Files\ClaudeCode\managed-settings.json"),
)

# The gateway's contract in short (docs/gateway-contract.md has every attribute and alternative;
# a test keeps the two in agreement): attribute, when it is needed, an example.
GATEWAY_ATTRIBUTES: tuple[tuple[str, str, str], ...] = (
    ("gen_ai.tool.name", "yes", "create_issue"),
    ("mcp.server.name", "yes", "github"),
    ("user.email", "recommended", "alice@example.com"),
    ("agent.id", "recommended", "claude-code"),
    ("agent.instance.id", "recommended", "alice-laptop"),
    ("session.id", "optional", "the agent's session id"),
    ("mcp.gateway.decision", "optional", "allow or block"),
    ("policy.id", "when blocked", "pol-readonly-prod-db"),
    ("policy.name", "when blocked", "Read-only production database"),
    ("policy.description", "optional", "the policy's description at that moment"),
)


class Snippet(NamedTuple):
    title: str     # what it is and where it goes
    language: str  # its syntax: sh, json, toml or markdown
    text: str      # ready to paste


def _otlp_env(endpoint: str, token: str) -> dict[str, str]:
    """What every OpenTelemetry SDK reads to send OTLP/HTTP protobuf here with the token."""
    return {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer {token}",
    }


def claude_code_env(endpoint: str, token: str) -> dict[str, str]:
    """Claude Code's telemetry settings: the same for one machine's environment and for the `env`
    block of the managed settings."""
    return {
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        **_otlp_env(endpoint, token),  # Claude Code has no default protocol: it must be named
        "OTEL_LOG_TOOL_DETAILS": "1",  # MCP tool names instead of "mcp_tool"
    }


def gateway_env(endpoint: str, token: str) -> dict[str, str]:
    return {"OTEL_TRACES_EXPORTER": "otlp", **_otlp_env(endpoint, token)}


def _exports(env: dict[str, str]) -> str:
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a TOML basic string


def codex_config(endpoint: str, token: str) -> str:
    """Codex's `[otel]` block: its exporter takes the full URL of the logs signal."""
    otlp_http = (f"{{ endpoint = {_toml_string(endpoint.rstrip('/') + '/v1/logs')}, protocol = \"binary\", "
                 f"headers = {{ authorization = {_toml_string('Bearer ' + token)} }} }}")
    return "\n".join([
        "[otel]",
        'environment = "prod"',
        "log_user_prompt = false",
        f"exporter = {{ otlp-http = {otlp_http} }}",
    ])


def _gateway_contract() -> str:
    rows = ["| attribute | needed | example |", "|---|---|---|"]
    rows += [f"| `{name}` | {needed} | {example} |" for name, needed, example in GATEWAY_ATTRIBUTES]
    return "\n".join(rows + ["", "One `tools/call {tool}` span per tool call (or a log event with "
                             "`event.name = mcp.tool.call`); every attribute and alternative: "
                             "docs/gateway-contract.md."])


def _claude_code(endpoint: str, token: str) -> list[Snippet]:
    env = claude_code_env(endpoint, token)
    files = "; ".join(f"{os_name}: {path}" for os_name, path in MANAGED_SETTINGS_PATHS)
    return [
        Snippet("One machine: add to the shell profile (or the environment of whatever starts `claude`)",
                "sh", _exports(env)),
        Snippet(f"Whole organisation: Claude Code's managed settings, which users cannot override ({files})",
                "json", json.dumps({"env": env}, indent=2)),
    ]


def _codex(endpoint: str, token: str) -> list[Snippet]:
    return [
        Snippet("Codex: ~/.codex/config.toml (for everyone: the same block in the file your device "
                "management installs)", "toml", codex_config(endpoint, token)),
    ]


def _gateway(endpoint: str, token: str) -> list[Snippet]:
    return [
        Snippet("The gateway's environment (for a gateway built on an OpenTelemetry SDK, which reads it)",
                "sh", _exports(gateway_env(endpoint, token))),
        Snippet("The attributes of each tool call", "markdown", _gateway_contract()),
    ]


# Each target (an agent, by its agent id, or the gateway) and what to set for it, in the order
# they are shown.
_SNIPPETS: dict[str, Callable[[str, str], list[Snippet]]] = {
    claude_code.AGENT.agent_id: _claude_code, codex.AGENT.agent_id: _codex, gateway.SOURCE: _gateway,
}
TARGETS: tuple[str, ...] = tuple(_SNIPPETS)
# What each target is called (the agents' and sources' own names: ingest/sources.py).
TITLES: dict[str, str] = {t: next((a.name for a in AGENTS if a.agent_id == t), None) or SOURCES[t] for t in TARGETS}


def snippets(endpoint: str, token: str) -> dict[str, list[Snippet]]:
    """For each target of TARGETS, what to set so that it sends to `endpoint` (this installation's
    OTLP/HTTP receiver, e.g. http://analytics.example.com:4318) with the ingest token `token`."""
    return {target: made(endpoint, token) for target, made in _SNIPPETS.items()}


def render(items: list[Snippet]) -> str:
    """Snippets as the terminal shows them: a `### title` line, then the text to paste."""
    return "\n\n".join(f"### {s.title}\n{s.text}" for s in items) + "\n"


def cmd_setup(args: argparse.Namespace) -> int:
    from agent_analytics.config import Config, ConfigError

    try:
        cfg = Config.from_env()
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc}")
    endpoint = args.endpoint or cfg.ingest_url(from_elsewhere=True)
    token = args.token or (cfg.ingest_tokens[0] if cfg.ingest_tokens else TOKEN_PLACEHOLDER)
    print(render(snippets(endpoint, token)[args.target]), end="", flush=True)
    notes = []
    if token == TOKEN_PLACEHOLDER:
        notes.append(f"no ingest token: replace {TOKEN_PLACEHOLDER} with one of AA_INGEST_TOKENS "
                     "(set it where `agent-analytics up` runs), or pass --token")
    if not args.endpoint and cfg.host in ("127.0.0.1", "localhost", "::1"):
        notes.append(f"the receiver listens on {cfg.host} only: agents on other machines need AA_HOST=0.0.0.0 "
                     "(or a proxy in front of it: pass its URL with --endpoint)")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def register_commands(subparsers: Any) -> None:
    p = subparsers.add_parser("setup", help=f"print what to set so that a sender ({', '.join(TITLES.values())}) "
                                            "sends its telemetry to this installation")
    p.add_argument("target", choices=TARGETS)
    p.add_argument("--endpoint", help="the receiver's URL as the agents reach it (default: this installation's, "
                                      "from AA_HOST and AA_INGEST_PORT)")
    p.add_argument("--token", help="the ingest token to send (default: the first of AA_INGEST_TOKENS)")
    p.set_defaults(func=cmd_setup)
