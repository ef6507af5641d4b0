"""The "choose aggregate" stage: the logical datasets, the relations that can answer each (an
hourly aggregate with every column, smaller rollups, daily twins, the raw table), and the
choice of the smallest relation that holds every column a metric and its filters need.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

# Row conditions of the tool-call metrics.
EXECUTED = "outcome IN ('ok', 'error')"  # blocked calls never ran
BLOCKED = "outcome = 'blocked'"


@dataclass(frozen=True)
class Rollup:
    """A smaller hourly aggregate over the same raw table, holding a subset of its columns (or the
    full aggregate itself, read for a subset of its columns, when only the daily twin is smaller).
    `columns`: those it holds; `answers`: those it holds completely (a filter or a question on
    any other column needs a larger relation). Columns it lacks project as NULL."""
    name: str
    columns: frozenset[str]
    answers: frozenset[str]
    daily: str | None = None  # its twin by UTC day, for metrics that do not look at the time
    condition: str | None = None  # holds only the rows meeting this condition (e.g. blocked calls)


@dataclass(frozen=True)
class Dataset:
    """A logical relation: the hourly aggregate read, the raw table written, and the same column
    list projected from each ({cost} becomes the configured cost column); optionally smaller
    rollups of the aggregate, smallest first, tried before it."""
    aggregate: str
    raw: str
    agg_columns: str
    raw_columns: str
    filterable: tuple[str, ...]  # the filters its columns can answer
    rollups: tuple[Rollup, ...] = ()
    raw_condition: str = "TRUE"  # which raw rows the aggregate holds (read from raw only)
    measures: frozenset[str] = frozenset({"calls"})  # summed columns every rollup holds
    always: frozenset[str] = frozenset()  # columns every question on it reads


_POLICY_COLUMNS = frozenset({"policy_id", "policy_name", "policy_description"})
_ALL_TOOL_CALL_COLUMNS = frozenset({"source", "user_id", "agent_id", "agent_instance_id", "mcp_server_id", "tool_name",
                                    "outcome", "policy_id", "policy_name", "policy_description"})
TOOL_CALLS = Dataset(
    "tool_calls_hourly", "tool_calls",
    "bucket AS time, source, user_id, agent_id, agent_instance_id, mcp_server_id, tool_name, outcome,"
    " policy_id, policy_name, policy_description, calls",
    "time, source, user_id, agent_id, agent_instance_id, mcp_server_id, tool_name, outcome,"
    " policy_id, policy_name, policy_description, 1::bigint AS calls",
    ("user", "group", "agent_instance", "agent", "mcp", "agent_tag", "resource_tag"),
    rollups=(
        # Holds the MCP server only for calls not from the gateway: enough for de-duplication.
        Rollup("tool_calls_totals_hourly", frozenset({"source", "outcome", "mcp_server_id"}),
               frozenset({"source", "outcome", "gateway_dedupe"}), daily="tool_calls_totals_daily"),
        Rollup("tool_calls_by_policy_hourly", _POLICY_COLUMNS | {"outcome"}, _POLICY_COLUMNS | {"outcome"},
               daily="tool_calls_by_policy_daily", condition="outcome = 'blocked'"),
        Rollup("tool_calls_by_server_hourly", frozenset({"source", "outcome", "mcp_server_id"}),
               frozenset({"source", "outcome", "mcp_server_id", "gateway_dedupe"}),
               daily="tool_calls_by_server_daily"),
        Rollup("tool_calls_by_tool_hourly", frozenset({"source", "outcome", "mcp_server_id", "tool_name"}),
               frozenset({"source", "outcome", "mcp_server_id", "tool_name", "gateway_dedupe"}),
               daily="tool_calls_by_tool_daily"),
        Rollup("tool_calls_by_user_hourly", frozenset({"source", "outcome", "user_id", "mcp_server_id"}),
               frozenset({"source", "outcome", "user_id", "gateway_dedupe"}), daily="tool_calls_by_user_daily"),
        # Holds the MCP server only for calls not from the gateway: enough for de-duplication.
        Rollup("tool_calls_by_actor_hourly",
               frozenset({"source", "outcome", "user_id", "agent_id", "agent_instance_id", "mcp_server_id"}),
               frozenset({"source", "outcome", "user_id", "agent_id", "agent_instance_id", "gateway_dedupe"}),
               daily="tool_calls_by_actor_daily"),
        # Last: bigger than the others, but it alone answers policies and tool x actor questions.
        Rollup("tool_calls_blocked_hourly", _ALL_TOOL_CALL_COLUMNS, _ALL_TOOL_CALL_COLUMNS | {"gateway_dedupe"},
               condition="outcome = 'blocked'"),
        # Users' tools: the full aggregate hour by hour, whole days from its daily twin by user and tool.
        Rollup("tool_calls_hourly", frozenset({"source", "outcome", "user_id", "mcp_server_id", "tool_name"}),
               frozenset({"source", "outcome", "user_id", "mcp_server_id", "tool_name", "gateway_dedupe"}),
               daily="tool_calls_by_user_tool_daily"),
    ))

# The columns each filter reads (see filters.py).
FILTER_COLUMNS: dict[str, frozenset[str]] = {
    "user": frozenset({"user_id"}), "group": frozenset({"user_id"}),
    "agent_instance": frozenset({"agent_instance_id"}), "agent": frozenset({"agent_id"}),
    "agent_tag": frozenset({"agent_id"}), "mcp": frozenset({"mcp_server_id"}),
    "resource_tag": frozenset({"mcp_server_id", "tool_name"}),
    "provider": frozenset({"provider"}), "model": frozenset({"model"}), "session": frozenset({"session_id"}),
}

_TOKEN_SUMS = "input_tokens, output_tokens, cache_read_tokens, cache_write_tokens"
# Row condition of the LLM request events whose tokens count (their session sent no metric
# points; decided at ingest). An event's cost always counts: a price is a request's.
COUNTED = "counted"
_TOKEN_TOTAL = "input_tokens + output_tokens + cache_read_tokens + cache_write_tokens"

_LLM_MEASURES = frozenset({"requests", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                           "other_tokens", "cost", "unpriced_tokens"})
_BY_MODEL = frozenset({"provider", "model"})
_BY_USER = frozenset({"user_id", "provider", "model"})

LLM_USAGE = Dataset(
    "llm_usage_hourly", "llm_requests",
    f"bucket AS time, user_id, agent_id, provider, model, counted, requests, {_TOKEN_SUMS},"
    " {cost}_cost_usd AS cost, {cost}_unpriced_tokens AS unpriced_tokens",
    f"time, user_id, agent_id, provider, model, counted, 1::bigint AS requests, {_TOKEN_SUMS},"
    f" {{cost}}_cost_usd AS cost, CASE WHEN {{cost}}_cost_usd IS NULL THEN {_TOKEN_TOTAL} END AS unpriced_tokens",
    ("user", "group", "provider", "model"),
    rollups=(
        Rollup("llm_usage_totals_hourly", frozenset({"counted"}), frozenset({"counted"}),
               daily="llm_usage_totals_daily"),
        Rollup("llm_usage_by_model_hourly", _BY_MODEL | {"counted"}, _BY_MODEL | {"counted"},
               daily="llm_usage_by_model_daily"),
        Rollup("llm_usage_per_user_hourly", frozenset({"user_id", "counted"}), frozenset({"user_id", "counted"}),
               daily="llm_usage_per_user_daily"),
        # The full hourly aggregate, with a daily twin by user for whole days.
        Rollup("llm_usage_hourly", _BY_USER | {"counted"}, _BY_USER | {"counted"},
               daily="llm_usage_by_user_daily"),
    ),
    measures=_LLM_MEASURES, always=frozenset({"counted"}))

# Sessions' metric points without the session, token types and cost as columns: what counts
# for the sessions that sent them (their cost only where `cost_counted`: sessions without events).
_POINT_SUMS = "input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, other_tokens"
# The reported cost is the cost metric's value: no token of a session priced by it is unpriced.
_POINT_UNPRICED = "CASE WHEN '{cost}' = 'estimated' THEN estimated_unpriced_tokens ELSE 0 END AS unpriced_tokens"
LLM_METRIC_USAGE = Dataset(
    "llm_metric_usage_hourly", "metric_points",
    f"bucket AS time, user_id, agent_id, provider, model, {_POINT_SUMS}, {{cost}}_cost_usd AS cost, {_POINT_UNPRICED}",
    "time, user_id, agent_id, provider, model,"
    + ", ".join(f" CASE WHEN metric = 'tokens' AND token_type = '{t}' THEN value END AS {t}_tokens"
                for t in ("input", "output", "cache_read", "cache_write"))
    + ", CASE WHEN metric = 'tokens' AND token_type = '' THEN value END AS other_tokens,"
    # The reported cost is the cost metric's value; the estimate is priced on token points.
    " CASE WHEN NOT cost_counted THEN NULL WHEN '{cost}' = 'reported' THEN CASE WHEN metric = 'cost' THEN value::numeric END"
    " ELSE CASE WHEN metric = 'tokens' THEN estimated_cost_usd END END AS cost,"
    " CASE WHEN '{cost}' = 'estimated' AND metric = 'tokens' AND cost_counted AND estimated_cost_usd IS NULL"
    " THEN value END AS unpriced_tokens",
    ("user", "group", "provider", "model"), raw_condition="session_id IS NOT NULL",
    rollups=(
        Rollup("llm_metric_usage_totals_hourly", frozenset(), frozenset(), daily="llm_metric_usage_totals_daily"),
        Rollup("llm_metric_usage_by_model_hourly", _BY_MODEL, _BY_MODEL, daily="llm_metric_usage_by_model_daily"),
        Rollup("llm_metric_usage_per_user_hourly", frozenset({"user_id"}), frozenset({"user_id"}),
               daily="llm_metric_usage_per_user_daily"),
        Rollup("llm_metric_usage_hourly", _BY_USER, _BY_USER, daily="llm_metric_usage_by_user_daily"),
    ),
    measures=_LLM_MEASURES)

_SESSION_MEASURES = frozenset({"requests", "input_tokens", "output_tokens", "cache_read_tokens",
                               "cache_write_tokens", "tokens", "cost", "latency_ms_sum", "latency_count",
                               "first_time", "last_time"})
_SESSION_KEYS = frozenset({"session_id", "user_id", "agent_id", "provider", "model"})

LLM_SESSIONS = Dataset(
    "llm_sessions_hourly", "llm_requests",
    f"bucket AS time, session_id, user_id, agent_id, provider, model, counted, requests, {_TOKEN_SUMS},"
    " {cost}_cost_usd AS cost, latency_ms_sum, latency_count, first_time, last_time",
    f"time, session_id, user_id, agent_id, provider, model, counted, 1::bigint AS requests, {_TOKEN_SUMS},"
    " {cost}_cost_usd AS cost, latency_ms AS latency_ms_sum, (latency_ms IS NOT NULL)::int::bigint AS latency_count,"
    " time AS first_time, time AS last_time",
    ("user", "group", "provider", "model", "session"),
    rollups=(Rollup("llm_sessions_hourly", _SESSION_KEYS | {"counted"}, _SESSION_KEYS | {"counted"},
                    daily="llm_sessions_daily"),),
    measures=_SESSION_MEASURES, always=frozenset({"counted"}))

SESSION_METRICS = Dataset(
    "session_metrics_hourly", "metric_points",
    f"bucket AS time, session_id, user_id, agent_id, provider, model, tokens, {_TOKEN_SUMS},"
    " {cost}_cost_usd AS cost, first_time, last_time",
    "time, session_id, user_id, agent_id, provider, model,"
    " CASE WHEN metric = 'tokens' THEN value END AS tokens,"
    + ", ".join(f" CASE WHEN metric = 'tokens' AND token_type = '{t}' THEN value END AS {t}_tokens"
                for t in ("input", "output", "cache_read", "cache_write"))
    + ", CASE WHEN NOT cost_counted THEN NULL WHEN '{cost}' = 'reported' THEN CASE WHEN metric = 'cost' THEN value::numeric END"
    " ELSE CASE WHEN metric = 'tokens' THEN estimated_cost_usd END END AS cost,"
    " coalesce(start_time, time) AS first_time, time AS last_time",
    ("user", "group", "provider", "model", "session"),
    rollups=(Rollup("session_metrics_hourly", _SESSION_KEYS, _SESSION_KEYS, daily="session_metrics_daily"),),
    measures=_SESSION_MEASURES)

# The session totals: what a session did within the window, whenever within it.
_SESSION_TOTALS = ("sessions_table", "session_metrics", "session_totals", "session_token_mix",
                   "session_comparison", "session_models")


# The "choose aggregate" stage for datasets with rollups: the columns each metric's body reads beyond
# its dataset's measures and time. A metric not listed here reads the full aggregate.
_NEEDS: dict[str, frozenset[str]] = {
    "mcp_tool_executions": frozenset(), "mcp_executions_over_time": frozenset(),
    "mcp_hourly_distribution": frozenset(), "security_blocked_calls": frozenset(),
    "security_blocked_over_time": frozenset(),
    "mcp_unique_tools": frozenset({"mcp_server_id", "tool_name"}),
    "mcp_top_tools": frozenset({"mcp_server_id", "tool_name"}),
    "security_top_blocked_tools": frozenset({"mcp_server_id", "tool_name"}),
    "mcp_top_mcps": frozenset({"mcp_server_id"}), "security_top_blocked_mcps": frozenset({"mcp_server_id"}),
    "mcp_active_agent_instances": frozenset({"agent_instance_id"}),
    "mcp_top_agent_instances": frozenset({"agent_instance_id"}),
    "security_top_blocked_agent_instances": frozenset({"agent_instance_id"}),
    "mcp_active_users": frozenset({"user_id"}), "mcp_top_users": frozenset({"user_id"}),
    "security_top_blocked_users": frozenset({"user_id"}),
    # LLM Usage (events and metric points alike).
    "llm_total_tokens": frozenset(), "llm_total_cost": frozenset(), "llm_tokens_by_type": frozenset(),
    "llm_tokens_over_time": frozenset(), "llm_cost_over_time": frozenset(),
    "llm_models_used": frozenset({"model"}),
    "llm_top_users_by_tokens": frozenset({"user_id"}), "llm_top_users_by_cost": frozenset({"user_id"}),
    "llm_top_models_by_tokens": _BY_MODEL, "llm_top_models_by_cost": _BY_MODEL,
    **{m: _SESSION_KEYS for m in _SESSION_TOTALS},
}
_EXTRA_NEEDS = {EXECUTED: frozenset({"outcome", "source", "gateway_dedupe"}), BLOCKED: frozenset({"outcome"}),
                "TRUE": frozenset(), "session_id IS NOT NULL": frozenset({"session_id"})}


# Metrics whose answer does not depend on when within the window a call happened: whole days
# of the window may come from a daily rollup.
TIME_FREE = frozenset({
    "mcp_tool_executions", "mcp_unique_tools", "mcp_active_agent_instances", "mcp_active_users",
    "mcp_top_tools", "mcp_top_agent_instances", "mcp_top_users", "mcp_top_mcps", "security_blocked_calls",
    "security_top_blocked_tools", "security_top_blocked_agent_instances", "security_top_blocked_users",
    "security_top_blocked_mcps", "security_top_policies", "llm_total_tokens", "llm_total_cost",
    "llm_models_used", "llm_tokens_by_type",
    "llm_top_users_by_tokens", "llm_top_users_by_cost", "llm_top_models_by_tokens", "llm_top_models_by_cost",
    *_SESSION_TOTALS})


def choose_aggregate(ds: Dataset, metric_id: str, filters: Sequence[str],
                     extra: str) -> tuple[str, str, Rollup | None]:
    """The smallest relation that answers the metric under these filters, the dataset's column
    list projected from it (NULL for the columns it does not hold), and the rollup if one."""
    needs = _NEEDS.get(metric_id, _POLICY_COLUMNS if metric_id == "security_top_policies" else None)
    extra_needs = _EXTRA_NEEDS.get(extra)
    if needs is None or extra_needs is None or not ds.rollups:
        return ds.aggregate, ds.agg_columns, None
    wanted = needs | extra_needs | ds.always
    for f in filters:
        wanted |= FILTER_COLUMNS[f]
    for rollup in ds.rollups:
        if rollup.condition is not None and rollup.condition != extra:
            continue
        if wanted <= rollup.answers:
            items = []
            for item in ds.agg_columns.split(","):
                expr, _, alias = item.strip().partition(" AS ")
                name = alias or expr
                keep = expr == "bucket" or name in ds.measures or name in rollup.columns
                items.append(item.strip() if keep else f"NULL::text AS {name}")
            return rollup.name, ", ".join(items), rollup
    return ds.aggregate, ds.agg_columns, None
