"""The metric registry: every metric either face can answer, with its tab, kind, title, unit,
the filters it honours and the columns of its rows. Ids are a contract with the dashboards and
alert rules: never rename one, only add.

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
from typing import Collection

from agent_analytics.auth import Permission

# Filters per tab; the same names in Grafana payloads, scopedVars and JSON API parameters.
COMMON_FILTERS = ("user", "group")
MCP_FILTERS = COMMON_FILTERS + ("agent_instance", "agent", "mcp", "agent_tag", "resource_tag")
LLM_FILTERS = COMMON_FILTERS + ("provider", "model")
SESSION_FILTERS = LLM_FILTERS + ("session",)
ALL_FILTERS = ("user", "group", "agent_instance", "agent", "mcp", "agent_tag", "resource_tag",
               "provider", "model", "session")

TABS = ("mcp", "llm", "sessions", "security", "telemetry")
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

    @property
    def permission(self) -> Permission:
        return Permission.LLM_ANALYTICS if self.tab in ("llm", "sessions") else Permission.QUERY

    @property
    def payload_fields(self) -> tuple[str, ...]:
        extra = ("page", "page_size") if self.paged else ()
        return self.filters + extra + self.options + ("tz",)


def _stat(id_: str, tab: str, title: str, unit: str, filters: tuple[str, ...], description: str) -> Metric:
    return Metric(id_, tab, "stat", title, unit,
                  (Column("value", "number", unit, title), Column("previous", "number", unit, "Previous period"),
                   Column("change_pct", "number", PERCENT, "Change")),
                  filters, description)


def _series(id_: str, tab: str, title: str, unit: str, filters: tuple[str, ...], description: str) -> Metric:
    return Metric(id_, tab, "timeseries", title, unit,
                  (Column("time", "time"), Column("current", "number", unit, title),
                   Column("previous", "number", unit, "Previous period")),
                  filters, description)


def _C(name: str, type_: str = "string", unit: str | None = None, title: str | None = None) -> Column:
    return Column(name, type_, unit, title)


# Top lists show the usage that names no user, agent instance or MCP server as a row of its own
# (its id null), so that each list adds up to its headline.
NO_USER = "(no user)"
NO_AGENT_INSTANCE = "(no agent instance)"
NO_MCP_SERVER = "(no MCP server)"

_USER = (_C("user_id", title="User id"), _C("user", title="User"))
_MCP = (_C("mcp_server_id", title="MCP id"), _C("mcp", title="MCP"))
_INSTANCE = (_C("agent_instance_id", title="Agent instance id"), _C("agent_instance", title="Agent instance"),
             _C("agent_id", title="Agent id"), _C("agent", title="Agent"),
             _C("user_id", title="Owner id"), _C("user", title="Owner"))


def _top(id_: str, tab: str, title: str, key_columns: tuple[Column, ...], measure: Column,
         filters: tuple[str, ...], description: str, extra: tuple[Column, ...] = ()) -> Metric:
    return Metric(id_, tab, "table", title, measure.unit, key_columns + (measure,) + extra, filters,
                  description, paged=True)


_EXEC = _C("executions", "number", COUNT, "Executions")
_BLOCKED = _C("blocked", "number", COUNT, "Blocked calls")
_TOKENS = _C("tokens", "number", COUNT, "Tokens")
_COST = _C("cost", "number", USD, "Cost (USD)")
# What a cost figure could not price (models no price table knows): never shown as $0.
_UNPRICED = (_C("unpriced_tokens", "number", COUNT, "Unpriced tokens"), _C("unpriced", "boolean", None, "Unpriced"))

METRICS: tuple[Metric, ...] = (
    # MCP Usage: tool executions are calls with outcome ok or error (blocked calls never ran).
    _stat("mcp_tool_executions", "mcp", "Tool executions", COUNT, MCP_FILTERS, "Tool calls that ran (ok or error)."),
    _stat("mcp_unique_tools", "mcp", "Unique tools", COUNT, MCP_FILTERS, "Distinct (MCP server, tool) pairs executed."),
    _stat("mcp_active_agent_instances", "mcp", "Active agent instances", COUNT, MCP_FILTERS,
          "Distinct agent instances with at least one execution."),
    _stat("mcp_active_users", "mcp", "Active users", COUNT, MCP_FILTERS, "Distinct users with at least one execution."),
    _series("mcp_executions_over_time", "mcp", "Tool executions", COUNT, MCP_FILTERS, "Executions per bucket."),
    Metric("mcp_hourly_distribution", "mcp", "bars", "Executions by hour of day (UTC)", COUNT,
           (_C("hour", "number", None, "Hour (UTC)"), _EXEC), MCP_FILTERS,
           "24 rows, hour 0-23 UTC, executions in the range at that hour of day."),
    _top("mcp_top_tools", "mcp", "Top tools", (_C("tool", title="Tool"),) + _MCP, _EXEC, MCP_FILTERS,
         "Tools by executions, with their MCP server."),
    _top("mcp_top_agent_instances", "mcp", "Top agent instances", _INSTANCE, _EXEC, MCP_FILTERS,
         "Agent instances by executions, with their owner (from the directory)."),
    _top("mcp_top_users", "mcp", "Top users", _USER, _EXEC, MCP_FILTERS, "Users by executions."),
    _top("mcp_top_mcps", "mcp", "Top MCPs", _MCP, _EXEC, MCP_FILTERS, "MCP servers by executions."),

    # LLM Usage: per session its metric points when it sent any, else its request events (never both).
    _stat("llm_total_tokens", "llm", "Total tokens", COUNT, LLM_FILTERS, "Input + output + cache read + cache write."),
    Metric("llm_total_cost", "llm", "stat", "Total cost", USD,
           _stat("llm_total_cost", "llm", "Total cost", USD, (), "").columns
           + (_C("unpriced_tokens", "number", COUNT, "Unpriced tokens"), _C("unpriced_models", title="Unpriced models")),
           LLM_FILTERS, "Cost in USD (AA_COST_SOURCE), request by request where the requests are known; "
           "null when there is usage but none of it priced, 0 when there is none. unpriced_tokens and "
           "unpriced_models: what it could not price (docs/ingest.md, Cost)."),
    _stat("llm_models_used", "llm", "Models used", COUNT, LLM_FILTERS, "Distinct models with at least one request."),
    Metric("llm_tokens_by_type", "llm", "bars", "Tokens by type", COUNT,
           (_C("type", title="Token type"), _TOKENS), LLM_FILTERS,
           "Four rows: input, output, cache_read, cache_write."),
    _series("llm_tokens_over_time", "llm", "Tokens", COUNT, LLM_FILTERS, "Tokens per bucket."),
    Metric("llm_cost_over_time", "llm", "timeseries", "Cost", USD,
           _series("llm_cost_over_time", "llm", "Cost", USD, (), "").columns
           + (_C("unpriced_tokens", "number", COUNT, "Unpriced tokens"),),
           LLM_FILTERS, "Cost (USD) per bucket, null when the bucket has usage but none of it priced; "
           "unpriced_tokens: the bucket's tokens it could not price (docs/ingest.md, Cost)."),
    _top("llm_top_users_by_tokens", "llm", "Top users by tokens", _USER, _TOKENS, LLM_FILTERS,
         "Users ranked by tokens; requests counts request events.",
         (_COST, _C("requests", "number", COUNT, "Requests"), *_UNPRICED)),
    _top("llm_top_users_by_cost", "llm", "Top users by cost", _USER, _COST, LLM_FILTERS,
         "Users ranked by cost (unpriced last).", (_TOKENS, _C("requests", "number", COUNT, "Requests"), *_UNPRICED)),
    _top("llm_top_models_by_tokens", "llm", "Top models by tokens", (_C("provider", title="Provider"),
         _C("model", title="Model")), _TOKENS, LLM_FILTERS, "Models ranked by tokens.",
         (_COST, _C("requests", "number", COUNT, "Requests"), *_UNPRICED)),
    _top("llm_top_models_by_cost", "llm", "Top models by cost", (_C("provider", title="Provider"),
         _C("model", title="Model")), _COST, LLM_FILTERS,
         "Models ranked by cost (unpriced last: cost null, unpriced true, never $0).",
         (_TOKENS, _C("requests", "number", COUNT, "Requests"), *_UNPRICED)),
    Metric("llm_status", "llm", "status", "LLM telemetry status", None,
           (_C("has_data", "boolean"), _C("message"), _C("setup_url")), (),
           "Empty state: has_data is false until any LLM telemetry (events or metrics) has arrived."),

    # Sessions.
    Metric("sessions_table", "sessions", "table", "Sessions", USD,
           (_C("session_id", title="Session"), _C("user_id", title="User id"), _C("user", title="User"),
            _C("agent_id", title="Agent id"), _C("agent", title="Agent"), _C("models", title="Models"),
            _C("start", "time", None, "Start"), _C("end", "time", None, "End"),
            _C("duration", "number", SECONDS, "Duration"), _C("requests", "number", COUNT, "Requests"),
            _TOKENS, _COST, *_UNPRICED,
            _C("cost_ratio", "number", RATIO, "Cost vs median"), _C("cost_top_5pct", "boolean", None, "Top 5% cost"),
            _C("tokens_ratio", "number", RATIO, "Tokens vs median"),
            _C("tokens_top_5pct", "boolean", None, "Top 5% tokens"),
            _C("duration_ratio", "number", RATIO, "Duration vs median"),
            _C("duration_top_5pct", "boolean", None, "Top 5% duration"),
            _C("requests_ratio", "number", RATIO, "Requests vs median"),
            _C("requests_top_5pct", "boolean", None, "Top 5% requests")),
           LLM_FILTERS, "Sessions ranked by order_by (cost | tokens | recency). Requests are the session's request "
           "events: null (unknown, not 0) for a session that sent metrics only. Cost is what could be priced; "
           "unpriced_tokens / unpriced: the session's tokens no price is known for (its cost is then a lower "
           "bound, null when nothing was priced).", paged=True,
           options=("order_by",)),
    Metric("session_metrics", "sessions", "record", "Session metrics", None,
           (_C("sessions", "number", COUNT, "Sessions"),)
           + tuple(Column(f"{dim}_{cut}", "number", unit, f"{label} {cut_label}")
                   for dim, unit, label in (("cost", USD, "Cost"), ("tokens", COUNT, "Tokens"),
                                            ("duration", SECONDS, "Duration"), ("requests", COUNT, "Requests"))
                   for cut, cut_label in (("p50", "P50"), ("avg", "average"), ("p95", "P95"))),
           LLM_FILTERS, "Count and P50 / average / P95 of each dimension over the matching sessions; requests over "
           "the sessions whose requests are known (a session that sent metrics only is left out, not counted as 0)."),
    Metric("session_totals", "sessions", "record", "Session totals", None,
           (_C("session_id"), _C("user_id"), _C("user"), _C("agent_id"), _C("agent"), _C("models"),
            _C("start", "time"), _C("end", "time"), _C("duration", "number", SECONDS, "Duration"),
            _C("requests", "number", COUNT, "Requests"), _TOKENS,
            _C("input_tokens", "number", COUNT), _C("output_tokens", "number", COUNT),
            _C("cache_read_tokens", "number", COUNT), _C("cache_write_tokens", "number", COUNT), _COST,
            *_UNPRICED, _C("totals_source", title="Totals from")),
           SESSION_FILTERS, "One row for the `session` filter; tokens from metrics when the session sent metric "
           "points, else from events (totals_source says which); cost from its events, request by request, "
           "when it sent any, else from its metric points; unpriced_tokens: its tokens no price is known for; "
           "requests null (unknown) when it sent metrics only."),
    Metric("session_models", "sessions", "table", "Models", COUNT,
           (_C("provider"), _C("model"), _C("requests", "number", COUNT, "Requests"), _TOKENS, _COST,
            _C("avg_latency_ms", "number", MS, "Average latency")),
           SESSION_FILTERS, "Per-model rollup of the session."),
    Metric("session_token_mix", "sessions", "bars", "Token mix", COUNT,
           (_C("type", title="Token type"), _TOKENS), SESSION_FILTERS, "The session's tokens by type."),
    Metric("session_tokens_over_time", "sessions", "timeseries", "Tokens over time", COUNT,
           (_C("time", "time"), _C("current", "number", COUNT, "Tokens")), SESSION_FILTERS,
           "From events, bucketed over the session's lifespan (1m..1d buckets); no previous period."),
    Metric("session_cumulative_cost", "sessions", "timeseries", "Cumulative cost", USD,
           (_C("time", "time"), _C("current", "number", USD, "Cumulative cost")), SESSION_FILTERS,
           "From events: running total of cost at the end of each bucket."),
    Metric("session_comparison", "sessions", "table", "Compared with the median session", None,
           (_C("dimension"), _C("value", "number"), _C("median", "number"), _C("ratio", "number", RATIO),
            _C("p95", "number"), _C("top_5pct", "boolean"), _C("baseline_sessions", "number", COUNT)),
           SESSION_FILTERS, "Four rows (cost, tokens, duration, requests); ratio null (chip hidden) when "
           "fewer than 2 sessions form the baseline, the median is 0/null, or the session's value is unknown "
           "(requests of a session that sent metrics only)."),

    # Security: blocked calls.
    _stat("security_blocked_calls", "security", "Blocked calls", COUNT, MCP_FILTERS, "Calls blocked by policy."),
    _series("security_blocked_over_time", "security", "Blocked calls", COUNT, MCP_FILTERS, "Blocked calls per bucket."),
    _top("security_top_blocked_tools", "security", "Top blocked tools", (_C("tool", title="Tool"),) + _MCP,
         _BLOCKED, MCP_FILTERS, "Tools by blocked calls."),
    _top("security_top_blocked_agent_instances", "security", "Top blocked agent instances", _INSTANCE, _BLOCKED,
         MCP_FILTERS, "Agent instances by blocked calls."),
    _top("security_top_blocked_users", "security", "Top blocked users", _USER, _BLOCKED, MCP_FILTERS,
         "Users by blocked calls."),
    _top("security_top_blocked_mcps", "security", "Top blocked MCPs", _MCP, _BLOCKED, MCP_FILTERS,
         "MCP servers by blocked calls."),
    _top("security_top_policies", "security", "Top blocking policies",
         (_C("policy_id", title="Policy id"), _C("policy_name", title="Policy (as recorded)"),
          _C("policy_description", title="Description (as recorded)")), _BLOCKED, MCP_FILTERS,
         "Policies by blocks; name/description as recorded on the latest block in range; current_name is "
         "today's name, renamed true when it differs.",
         (_C("current_name", title="Current name"), _C("renamed", "boolean", None, "Renamed"))),
)

# Telemetry: what the receiver has answered (ingest_stats), by hour of arrival.
_RECORDS = tuple(_C(name, "number", COUNT, title) for name, title in (
    ("received", "Received"), ("stored", "Stored"), ("duplicate", "Duplicates"), ("ignored", "Ignored"),
    ("rejected", "Rejected")))
_LAST_SEEN = _C("last_seen", "time", None, "Last seen")
METRICS += (
    Metric("telemetry_sources", "telemetry", "table", "Sources", COUNT,
           (_C("source_id", title="Source id"), _C("source", title="Source"), _C("signals", title="Signals"),
            _C("versions", title="Versions"), _LAST_SEEN) + _RECORDS, (),
           "Per source (Claude Code, Codex, MCP gateway, MCP server, MCP client, GenAI SDK): the signals and "
           "versions (service.version) that arrived, when the last record did, and the records received, stored, "
           "already stored (duplicates), ignored and rejected.", paged=True),
    Metric("telemetry_senders", "telemetry", "table", "Agent instances and users", COUNT,
           (_C("source", title="Source"), _C("service", title="Service"), _C("versions", title="Versions"),
            _C("agent_instance", title="Agent instance"), _C("user_id", title="User id"), _C("user", title="User"),
            _LAST_SEEN) + _RECORDS, (),
           "Per sending service, agent instance and user, the most recent first.", paged=True),
    Metric("telemetry_records_over_time", "telemetry", "timeseries", "Records by outcome", COUNT,
           (_C("time", "time"),) + _RECORDS[1:], (),
           "Records per bucket of arrival by what became of them; no previous period."),
    Metric("telemetry_rejections", "telemetry", "table", "Rejection reasons", COUNT,
           (_C("source", title="Source"), _C("reason", title="Reason"),
            _C("rejected", "number", COUNT, "Rejected"), _LAST_SEEN), (),
           "Rejected records by source and reason (the reason's words before any quoted or numeric detail).",
           paged=True),
)

BY_ID: dict[str, Metric] = {m.id: m for m in METRICS}
assert len(BY_ID) == len(METRICS), "duplicate metric id"

# Variables (POST /grafana/variable target, GET /api/v1/variables/<name>) and who may read them.
VARIABLES: dict[str, object] = {
    "user": Permission.QUERY, "group": Permission.QUERY, "agent_instance": Permission.QUERY,
    "agent": Permission.QUERY, "mcp": Permission.QUERY, "agent_tag": Permission.QUERY,
    "resource_tag": Permission.QUERY, "provider": Permission.LLM_ANALYTICS,
    "model": Permission.LLM_ANALYTICS, "session": Permission.LLM_ANALYTICS,
}


def metrics_for(granted: Collection[object]) -> list[Metric]:
    """The metrics a token with these permissions may read: the only ones either face lists to it."""
    return [m for m in METRICS if m.permission in granted]


def variables_for(granted: Collection[object]) -> list[str]:
    """The variables (and filters: one per variable) a token with these permissions may read."""
    return [name for name, permission in VARIABLES.items() if permission in granted]


def get(metric_id: str) -> Metric | None:
    return BY_ID.get(metric_id)


def describe(metric: Metric) -> dict:
    """The catalog entry as JSON (GET /api/v1/metrics)."""
    return {
        "id": metric.id, "tab": metric.tab, "kind": metric.kind, "title": metric.title, "unit": metric.unit,
        "description": metric.description, "permission": metric.permission.value, "paged": metric.paged,
        "filters": list(metric.filters), "payload_fields": list(metric.payload_fields),
        "columns": [{"name": c.name, "type": c.type, "unit": c.unit, "title": c.title or c.name}
                    for c in metric.columns],
    }
