"""How to connect a sender to this installation: the text the Telemetry dashboard and
`agent-analytics status` show (one home). Agent-specific snippets are in the OpenTelemetry
guide (docs/opentelemetry.md), which this text links to."""
from __future__ import annotations

from agent_analytics.config import Config


def environment(cfg: Config, host: str = "<receiver host>") -> list[str]:
    """The OTLP settings every sender needs, for this installation's receiver."""
    return [f"OTEL_EXPORTER_OTLP_ENDPOINT=http://{host}:{cfg.ingest_port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
            'OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer <ingest token>"']


AGENTS = ("Claude Code also needs `CLAUDE_CODE_ENABLE_TELEMETRY=1`, `OTEL_LOGS_EXPORTER=otlp` and "
          "`OTEL_METRICS_EXPORTER=otlp` (for everyone at once: its managed settings); Codex an `[otel]` block in "
          "`~/.codex/config.toml`; a gateway one span per tool call.")
REFUSED = ("A request refused as a whole (wrong token, unreadable body) has no records to count: the sender's "
           "own log, and the receiver's `aa_ingest_requests_total` counter by status, show those.")


def markdown(cfg: Config) -> str:
    """For the Telemetry dashboard's text panel."""
    return (
        "**Connect a sender.** Agents and gateways send OpenTelemetry over OTLP/HTTP (`http/protobuf` or "
        f"`http/json`, not gRPC) to this installation's receiver, port **{cfg.ingest_port}**, with an ingest "
        "token (one of `AA_INGEST_TOKENS`):\n\n```sh\n" + "\n".join(environment(cfg)) + "\n```\n\n"
        + AGENTS + f" [The OpenTelemetry guide]({cfg.setup_guide_url}) has each, step by step.\n\n"
        "Nothing here after a few minutes? " + REFUSED
        + " `agent-analytics status` prints the Sources table in a terminal.")


def plain(cfg: Config) -> str:
    """For a terminal."""
    return ("How to connect: send OpenTelemetry over OTLP/HTTP to this installation's receiver with an "
            "ingest token (one of AA_INGEST_TOKENS), e.g. in the sender's environment:\n\n"
            + "\n".join("  " + line for line in environment(cfg, cfg.host))
            + "\n\n" + AGENTS.replace("`", "") + f"\nThe OpenTelemetry guide has each, step by step: "
            f"{cfg.setup_guide_url}\n" + REFUSED.replace("`", ""))
