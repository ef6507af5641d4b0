"""The metric registry: every metric either face can answer, with its tab, kind, title, unit,
the filters it honours, the columns of its rows, what it reads and its query builder. Each metric
is declared once, in its tab's module (mcp.py, llm.py, sessions.py, security.py, telemetry.py, value.py;
declare.py shapes the common kinds); METRICS collects them. Ids are a contract with the
dashboards and alert rules: never rename one, only add.

Kinds and the rows they answer (JSON API `rows`; the Grafana face turns them into one frame):
- stat:       one row {value, previous, change_pct}
- timeseries: wide rows {time (epoch ms, bucket start), current, previous}; "previous" is the
              preceding window shifted onto the current one (session charts have no previous)
- bars:       one row per category (hour of day, token type)
- table:      ranked rows; paginated (page, page_size; `total` counts every row)
- record:     one row with many named fields (session metrics, session totals)
- status:     one row {has_data, message, setup_url} (the LLM Usage empty state)
(The Telemetry tab's series has a column per outcome, and no previous period.)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Collection

from agent_analytics.auth import Permission
from agent_analytics.datasource import filters
from agent_analytics.datasource.relations import Reads

if TYPE_CHECKING:
    from agent_analytics.datasource.kinds import Handler

# Filters per tab, from their declarations (filters.py); the same names in Grafana payloads,
# scopedVars and JSON API parameters.
COMMON_FILTERS = filters.applying_to("mcp", "llm")
MCP_FILTERS = filters.applying_to("mcp")
LLM_FILTERS = filters.applying_to("llm")
SESSION_FILTERS = filters.applying_to("session")
# The LLM Usage filters its sessions list answers: not the attribution dimensions, which the
# session aggregates do not hold.
LLM_SESSION_FILTERS = filters.applying_to("llm", "session")
VALUE_FILTERS = filters.applying_to("value")
ALL_FILTERS = tuple(filters.FILTERS)

TABS = ("mcp", "llm", "sessions", "security", "telemetry", "value")
KINDS = ("stat", "timeseries", "bars", "table", "record", "status")
SESSION_ORDER = ("cost", "tokens", "recency")
COMPARISON_DIMENSIONS = ("cost", "tokens", "duration", "requests")

# Grafana unit ids.
COUNT = "short"
USD = "currencyUSD"
SECONDS = "s"
MS = "ms"
PERCENT = "percent"
RATIO = "suffix:×"


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # Grafana field type: time | number | string | boolean
    unit: str | None = None
    title: str | None = None


@dataclass(frozen=True)
class Metric:
    """One metric's declaration. `build` answers a query (engine.Engine.run dispatches to it);
    `reads` is what the "choose aggregate" stage plans from (None: the metric reads no dataset
    of relations.py, e.g. ingest_stats or an existence check)."""
    id: str
    tab: str
    kind: str
    title: str
    unit: str | None
    columns: tuple[Column, ...]
    filters: tuple[str, ...]
    description: str = ""
    paged: bool = False
    options: tuple[str, ...] = field(default=())  # extra payload fields (order_by, tz, ...)
    build: Handler = field(kw_only=True, compare=False, repr=False)
    reads: Reads | None = field(kw_only=True)

    def __post_init__(self) -> None:
        if self.tab not in TABS or self.kind not in KINDS:
            raise ValueError(f"{self.id}: unknown tab {self.tab!r} or kind {self.kind!r}")

    @property
    def permission(self) -> Permission:
        return Permission.LLM_ANALYTICS if self.tab in ("llm", "sessions", "value") else Permission.QUERY

    @property
    def dataset_reads(self) -> Reads:
        """`reads`, for a builder that reads a dataset: its dataset and rows come from here."""
        if self.reads is None:
            raise TypeError(f"{self.id} reads a dataset but declares no `reads`")
        return self.reads

    @property
    def payload_fields(self) -> tuple[str, ...]:
        extra = ("page", "page_size") if self.paged else ()
        return self.filters + extra + self.options + ("tz",)


def col(name: str, type_: str = "string", unit: str | None = None, title: str | None = None) -> Column:
    return Column(name, type_, unit, title)


# Top lists show the usage that names no user, agent instance or MCP server as a row of its own
# (its id null), so that each list adds up to its headline.
NO_USER = "(no user)"
NO_AGENT_INSTANCE = "(no agent instance)"
NO_MCP_SERVER = "(no MCP server)"
# Usage whose process set no value of an attribution dimension (config.ATTRIBUTION).
NO_ATTRIBUTION = "(unattributed)"

# Columns several tabs' metrics share.
USER_COLUMNS = (col("user_id", title="User id"), col("user", title="User"))
MCP_COLUMNS = (col("mcp_server_id", title="MCP id"), col("mcp", title="MCP"))
INSTANCE_COLUMNS = (col("agent_instance_id", title="Agent instance id"),
                    col("agent_instance", title="Agent instance"), col("agent_id", title="Agent id"),
                    col("agent", title="Agent"), col("user_id", title="Owner id"), col("user", title="Owner"))
TOKENS_COLUMN = col("tokens", "number", COUNT, "Tokens")
COST_COLUMN = col("cost", "number", USD, "Cost (USD)")
REQUESTS_COLUMN = col("requests", "number", COUNT, "Requests")


def attribution_columns(dimension: str, title: str) -> tuple[Column, ...]:
    """A top list's key columns by an attribution dimension: its value (NO_ATTRIBUTION for the
    usage without one) and whether the row is attributed."""
    return (col(dimension, title=title), col("attributed", "boolean", None, "Attributed"))


# What a cost figure could not price (models no price table knows): never shown as $0.
UNPRICED_COLUMNS = (col("unpriced_tokens", "number", COUNT, "Unpriced tokens"),
                    col("unpriced", "boolean", None, "Unpriced"))

METRICS: tuple[Metric, ...]
BY_ID: dict[str, Metric]


def _collect() -> tuple[tuple[Metric, ...], dict[str, Metric]]:
    # The tab modules import this module's vocabulary, so they are collected on first use.
    from agent_analytics.datasource import llm, mcp, security, sessions, telemetry, value

    metrics = mcp.METRICS + llm.METRICS + sessions.METRICS + security.METRICS + telemetry.METRICS + value.METRICS
    ids = [m.id for m in metrics]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ValueError(f"metrics declared twice: {twice}")
    return metrics, {m.id: m for m in metrics}


def _registry(name: str) -> Any:
    if name not in globals():
        globals()["METRICS"], globals()["BY_ID"] = _collect()
    return globals()[name]


def __getattr__(name: str) -> Any:
    if name in ("METRICS", "BY_ID"):
        return _registry(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Variables (POST /grafana/variable target, GET /api/v1/variables/<name>) and who may read them:
# one per filter.
VARIABLES: dict[str, object] = {f.name: f.permission for f in filters.DECLARED}


def metrics_for(granted: Collection[object]) -> list[Metric]:
    """The metrics a token with these permissions may read: the only ones either face lists to it."""
    return [m for m in _registry("METRICS") if m.permission in granted]


def variables_for(granted: Collection[object]) -> list[str]:
    """The variables (and filters: one per variable) a token with these permissions may read."""
    return [name for name, permission in VARIABLES.items() if permission in granted]


def get(metric_id: str) -> Metric | None:
    return _registry("BY_ID").get(metric_id)


def describe(metric: Metric) -> dict:
    """The catalog entry as JSON (GET /api/v1/metrics)."""
    return {
        "id": metric.id, "tab": metric.tab, "kind": metric.kind, "title": metric.title, "unit": metric.unit,
        "description": metric.description, "permission": metric.permission.value, "paged": metric.paged,
        "filters": list(metric.filters), "payload_fields": list(metric.payload_fields),
        "columns": [{"name": c.name, "type": c.type, "unit": c.unit, "title": c.title or c.name}
                    for c in metric.columns],
    }
