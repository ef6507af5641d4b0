"""How to connect a sender to this installation: the text the Telemetry dashboard and
`agent-analytics status` show (one home). What each agent needs set comes from
agent_analytics/setup_guide.py, the texts `agent-analytics setup` prints."""
from __future__ import annotations

from agent_analytics.config import Config
from agent_analytics.setup_guide import TARGETS, TITLES, TOKEN_PLACEHOLDER, snippets

# What each set-up target is called on the dashboard.
TARGET_TITLES = TITLES
RECEIVER_HOST = "<receiver host>"
REFUSED = ("A request refused as a whole (wrong token, unreadable body) has no records to count: the sender's "
           "own log, and the receiver's `aa_ingest_requests_total` counter by status, show those.")


def endpoint(cfg: Config) -> str:
    """The receiver's URL with its host left for the reader: a generated dashboard serves every
    installation that shares its port."""
    return f"http://{RECEIVER_HOST}:{cfg.ingest_port}"


def markdown(cfg: Config) -> str:
    """For the Telemetry dashboard's How to connect panel."""
    return (
        "**Connect a sender.** Agents and gateways send OpenTelemetry over OTLP/HTTP (`http/protobuf` or "
        f"`http/json`, not gRPC) to this installation's receiver, port **{cfg.ingest_port}**, with an ingest "
        "token (one of `AA_INGEST_TOKENS`). What to set for each is below; on the machine that runs the "
        f"service, `agent-analytics setup {'|'.join(TARGETS)}` prints it with this installation's "
        f"address and token filled in, and [the OpenTelemetry guide]({cfg.setup_guide_url}) explains it.\n\n"
        "Nothing here after a few minutes? " + REFUSED
        + " `agent-analytics status` prints the Sources table in a terminal.")


def target_markdown(cfg: Config, target: str) -> str:
    """What to set for one set-up target (TARGETS), as markdown: each snippet's title, then its
    text (in a code block unless it is markdown itself)."""
    parts = []
    for s in snippets(endpoint(cfg), TOKEN_PLACEHOLDER)[target]:
        body = s.text if s.language == "markdown" else f"```{s.language}\n{s.text}\n```"
        parts.append(f"**{s.title}**\n\n{body}")
    return "\n\n".join(parts)


def plain(cfg: Config) -> str:
    """For a terminal, when nothing has arrived."""
    return ("How to connect: send OpenTelemetry over OTLP/HTTP to this installation's receiver, "
            f"{cfg.ingest_url(from_elsewhere=True)}, with an ingest token (one of AA_INGEST_TOKENS).\n"
            "What to set, with this installation's address and token filled in:\n\n"
            + "\n".join(f"  agent-analytics setup {t}" for t in TARGETS)
            + f"\n\nThe OpenTelemetry guide explains each: {cfg.setup_guide_url}\n" + REFUSED.replace("`", ""))
