"""Configuration from the environment: one frozen object, each setting with a documented default.

The README's configuration table is generated from SETTINGS, so the two cannot drift.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping


class ConfigError(ValueError):
    """A setting has a value that cannot be used."""


def _default_data_dir() -> str:
    if os.geteuid() == 0:
        # As root the cluster runs as an unprivileged user, who cannot reach /root.
        return "/var/lib/agent-analytics"
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return os.path.join(base, "agent-analytics")


def _tokens(raw: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in raw.split(",") if t.strip())


def _bool(raw: str) -> bool:
    v = raw.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"not a boolean: {raw!r}")


def _choice(*allowed: str):
    def parse(raw: str) -> str:
        v = raw.strip().lower()
        if v not in allowed:
            raise ConfigError(f"{raw!r} is not one of {', '.join(allowed)}")
        return v

    return parse


def _non_negative_int(raw: str) -> int:
    v = int(raw)
    if v < 0:
        raise ConfigError(f"must be >= 0, got {v}")
    return v


def _positive_int(raw: str) -> int:
    v = int(raw)
    if v < 1:
        raise ConfigError(f"must be >= 1, got {v}")
    return v


@dataclass(frozen=True)
class Dimension:
    """An attribution dimension: a resource attribute the agents' processes are started with
    (OTEL_RESOURCE_ATTRIBUTES) that becomes a column of the facts (`name`), a filter, a variable
    and a top list on LLM Usage and MCP Usage. `attribute`: the attribute it is read from unless
    AA_ATTRIBUTION names another."""
    name: str
    attribute: str
    title: str


# The attribution dimensions, each declared once: the facts' columns (migration 0017), the
# rollups' keys (sql/rollups/keys.py), the filters, variables and top lists derive from it.
ATTRIBUTION: tuple[Dimension, ...] = (
    Dimension("department", "department", "Department"),
    Dimension("team", "team.id", "Team"),
    Dimension("cost_center", "cost_center", "Cost centre"),
)
ATTRIBUTION_COLUMNS: tuple[str, ...] = tuple(d.name for d in ATTRIBUTION)
DEFAULT_ATTRIBUTION_TEXT = ",".join(f"{d.name}={d.attribute}" for d in ATTRIBUTION)


def attribution(raw: str) -> tuple[tuple[str, str], ...]:
    """`dimension=attribute` pairs, comma-separated: which resource attribute each dimension is
    read from (a dimension not named keeps its default attribute; `team=` turns it off)."""
    names = {d.name: d.attribute for d in ATTRIBUTION}
    for item in raw.split(","):
        if not item.strip():
            continue
        name, sep, attr = item.partition("=")
        name = name.strip()
        if not sep or name not in names:
            raise ConfigError(f"{item.strip()!r} is not dimension=attribute with a dimension of "
                              f"{', '.join(names)}")
        names[name] = attr.strip()
    return tuple((name, attr) for name, attr in names.items())


DEFAULT_ATTRIBUTION = attribution("")


@dataclass(frozen=True)
class Setting:
    env: str
    attr: str
    default: Any
    parse: Any
    doc: str


SETTINGS: tuple[Setting, ...] = (
    Setting("DATABASE_URL", "database_url", "", str,
            "PostgreSQL connection URL. Empty: `agent-analytics up` starts an embedded cluster in AA_DATA_DIR."),
    Setting("AA_DATA_DIR", "data_dir", None, str,
            "Where the embedded PostgreSQL keeps its data (default `~/.local/share/agent-analytics`; `/var/lib/agent-analytics` as root)."),
    Setting("AA_EMBEDDED_PG_PORT", "embedded_pg_port", 54329, int, "TCP port of the embedded PostgreSQL (loopback only)."),
    Setting("AA_HOST", "host", "127.0.0.1", str, "Address the HTTP listeners bind to (`0.0.0.0` in containers)."),
    Setting("AA_INGEST_PORT", "ingest_port", 4318, int, "OTLP/HTTP receiver and directory API port."),
    Setting("AA_QUERY_PORT", "query_port", 8080, int, "Data source (Grafana JSON protocol and JSON API) port."),
    Setting("AA_INGEST_PROCESSES", "ingest_processes", 1, _non_negative_int,
            "Receiver processes sharing the ingest port (SO_REUSEPORT). Decoding is CPU-bound Python: one "
            "process uses one core; set it to the cores you can give the receiver."),
    Setting("AA_INGEST_THREADS", "ingest_threads", 2, _positive_int,
            "Request threads per receiver process. Two keep a core busy (one decodes while the other "
            "waits on PostgreSQL); more contend for the interpreter lock and store fewer records per second."),
    Setting("AA_INGEST_TOKENS", "ingest_tokens", (), _tokens,
            "Comma-separated bearer tokens accepted by the receiver and the directory API."),
    Setting("AA_QUERY_TOKENS", "query_tokens", (), _tokens,
            "Comma-separated bearer tokens for queries without the llm-analytics permission."),
    Setting("AA_LLM_QUERY_TOKENS", "llm_query_tokens", (), _tokens,
            "Comma-separated query tokens that also carry the llm-analytics permission (LLM Usage, sessions, Value)."),
    Setting("AA_METRICS_TOKENS", "metrics_tokens", (), _tokens,
            "Comma-separated tokens for scraping the service's own Prometheus `/metrics` (query tokens work too)."),
    Setting("AA_ALLOW_NO_AUTH", "allow_no_auth", False, _bool,
            "Local development only: accept requests without a token (every permission granted)."),
    Setting("AA_MAX_BODY_BYTES", "max_body_bytes", 16 * 1024 * 1024, _non_negative_int,
            "Largest OTLP body accepted, after decompression (413 beyond)."),
    Setting("AA_MAX_RESOURCES", "max_resources", 1_000, _positive_int,
            "Most resources (ResourceLogs, ResourceMetrics, ResourceSpans) in one OTLP request (413 beyond, "
            "counted before any record is read). Exporters send one."),
    Setting("AA_MAX_SCOPES", "max_scopes", 10_000, _positive_int,
            "Most instrumentation scopes in one OTLP request, over all its resources (413 beyond)."),
    Setting("AA_MAX_RECORDS", "max_records", 50_000, _positive_int,
            "Most log records, spans, metrics and metric data points in one OTLP request (413 beyond). "
            "SDK exporters send up to 512 per request, the Collector's batch processor 8,192 by default."),
    Setting("AA_MAX_ATTRIBUTES", "max_attributes", 1_000_000, _positive_int,
            "Most attributes (of resources and records) in one OTLP request (413 beyond)."),
    Setting("AA_MAX_CONNECTIONS", "max_connections", 1_000, _positive_int,
            "Open connections per listener and process. At the limit the connections that have waited "
            "longest for a whole request are closed, so that new ones are still answered."),
    Setting("AA_REQUEST_TIMEOUT_S", "request_timeout_s", 20, _positive_int,
            "Seconds a request's headers and body may take to arrive from its first byte, and an idle "
            "connection may stay open; slower connections are closed."),
    Setting("AA_COST_SOURCE", "cost_source", "estimated", _choice("estimated", "reported"),
            "Which cost the dashboards show: list-price `estimated` or the agent's own `reported` figure."),
    Setting("AA_RETENTION_DAYS", "retention_days", 395, _non_negative_int,
            "Raw facts older than this are dropped (0 keeps them forever). Aggregates are kept."),
    Setting("AA_COMPRESS_AFTER_DAYS", "compress_after_days", 7, _non_negative_int,
            "TimescaleDB only: compress raw chunks older than this (0 disables compression)."),
    Setting("AA_TIMESCALEDB", "timescaledb", "auto", _choice("auto", "on", "off"),
            "`auto` uses TimescaleDB when the server has it; `on` requires it; `off` uses plain PostgreSQL."),
    Setting("AA_READ_AGGREGATES", "read_aggregates", True, _bool,
            "Queries read the aggregates (continuous aggregates on TimescaleDB, rollups refreshed every minute "
            "on plain PostgreSQL), in sessions that start no parallel workers. `0` reads raw rows only, with "
            "the server's parallel settings: for checking the aggregates and for benchmarks."),
    Setting("AA_DB_POOL_SIZE", "db_pool_size", 8, _positive_int, "Connections per process in the database pool."),
    Setting("AA_DB_TIMEOUT_S", "db_timeout_s", 10, _positive_int,
            "Seconds a request waits for the database (connection or statement) before a retryable error."),
    Setting("AA_RETRY_AFTER_S", "retry_after_s", 5, _positive_int,
            "Seconds a 503 (database unreachable, saturated or too slow) asks the sender to wait before "
            "retrying (`Retry-After`), on every listener: the OTLP receiver, the directory API and the data source."),
    Setting("AA_ATTRIBUTION", "attribution", DEFAULT_ATTRIBUTION_TEXT, attribution,
            "Which resource attribute (`OTEL_RESOURCE_ATTRIBUTES`) each attribution dimension "
            f"({', '.join(ATTRIBUTION_COLUMNS)}) is read from, as `dimension=attribute` pairs; a dimension "
            "not named keeps its default, `dimension=` turns it off. Read at ingest: a change applies to "
            "the records received after it."),
    Setting("AA_SETUP_GUIDE_URL", "setup_guide_url",
            "https://github.com/agent-analytics/agent-analytics/blob/main/docs/opentelemetry.md", str,
            "Where the LLM Usage empty state links to."),
)


@dataclass(frozen=True)
class Config:
    database_url: str = ""
    data_dir: str = field(default_factory=_default_data_dir)
    embedded_pg_port: int = 54329
    host: str = "127.0.0.1"
    ingest_port: int = 4318
    query_port: int = 8080
    ingest_processes: int = 1
    ingest_threads: int = 2
    ingest_tokens: tuple[str, ...] = ()
    query_tokens: tuple[str, ...] = ()
    llm_query_tokens: tuple[str, ...] = ()
    metrics_tokens: tuple[str, ...] = ()
    allow_no_auth: bool = False
    max_body_bytes: int = 16 * 1024 * 1024
    max_resources: int = 1_000
    max_scopes: int = 10_000
    max_records: int = 50_000
    max_attributes: int = 1_000_000
    max_connections: int = 1_000
    request_timeout_s: int = 20
    cost_source: str = "estimated"
    retention_days: int = 395
    compress_after_days: int = 7
    timescaledb: str = "auto"
    read_aggregates: bool = True
    db_pool_size: int = 8
    db_timeout_s: int = 10
    retry_after_s: int = 5
    attribution: tuple[tuple[str, str], ...] = DEFAULT_ATTRIBUTION
    setup_guide_url: str = SETTINGS[-1].default

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Config":
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for s in SETTINGS:
            raw = env.get(s.env)
            if raw is None:
                continue
            try:
                values[s.attr] = s.parse(raw)
            except (ValueError, ConfigError) as exc:
                raise ConfigError(f"{s.env}: {exc}") from None
        values.update(overrides)
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown settings: {sorted(unknown)}")
        return cls(**values)

    def ingest_url(self, from_elsewhere: bool = False) -> str:
        """This installation's OTLP/HTTP receiver (and directory API) as a URL: as this machine
        reaches it (a wildcard address answers on loopback), or `from_elsewhere`, as other machines
        would (the host's name for a wildcard address)."""
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            if from_elsewhere:
                host = socket.getfqdn()
                if host.startswith("localhost"):  # a machine whose name resolves to loopback only
                    host = socket.gethostname()
            else:
                host = "::1" if host == "::" else "127.0.0.1"
        if ":" in host:  # an IPv6 literal
            host = f"[{host}]"
        return f"http://{host}:{self.ingest_port}"

    def replace(self, **changes: Any) -> "Config":
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(changes)
        return Config(**data)


def settings_table() -> str:
    """The Markdown configuration table for the README."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        default = s.default
        if isinstance(default, tuple):
            default = ", ".join(default) or "(none)"
        elif default is None:
            default = "see meaning"
        elif default == "":
            default = "(empty)"
        rows.append(f"| `{s.env}` | `{default}` | {s.doc} |")
    return "\n".join(rows)
