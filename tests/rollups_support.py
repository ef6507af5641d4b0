"""The aggregates of the previous release (the one with migration 0008), as the tests of upgrading
from it and of the declarations rendering its SQL read them."""
from __future__ import annotations

from pathlib import Path

from agent_analytics.sql.rollups import AGGREGATES

RELEASE = Path(__file__).parent / "legacy" / "aggregates_0008"

# Aggregates whose definition changed since that release: rebuilt on upgrade, deliberately.
# Migration 0011 (session unpriced tokens): the session and metric-usage aggregates gain each
# bucket's tokens without an estimated or a reported cost (`estimated_unpriced_tokens`,
# `reported_unpriced_tokens`), as the sessions' totals do.
REDEFINED: frozenset[str] = frozenset({
    "llm_metric_usage_hourly", "llm_metric_usage_by_user_daily",
    *(f"llm_metric_usage_{k}_{w}" for k in ("by_model", "totals", "per_user") for w in ("hourly", "daily")),
    "llm_sessions_hourly", "llm_sessions_daily", "session_metrics_hourly", "session_metrics_daily"})

# Aggregates declared since that release, by what brought them: created on upgrade. Migration
# 0012: the agents' own enforcement facts, agent_enforcement. The per-minute twin of every hourly
# aggregate, which the planner reads for the partial hours at a window's edges. Migration 0013
# (LLM health): who made the requests and how, their durations and times to first token, and the
# API errors (with their per-minute twins, over the same new columns).
_LLM_HEALTH = ("llm_usage_by_origin", "llm_metric_usage_by_origin", "llm_session_agents", "session_metric_agents",
               "llm_latency", "llm_latency_by_model", "llm_ttft", "llm_ttft_by_model", "llm_errors_by_model")
ADDED_BY: dict[str, frozenset[str]] = {
    "0012": frozenset({"agent_decisions_hourly", "agent_permission_modes_hourly", "mcp_connections_hourly"}),
    "0013": frozenset({*(f"{r}_{w}" for r in _LLM_HEALTH for w in ("minutely", "hourly", "daily")),
                       "llm_errors_minutely", "llm_errors_hourly", "llm_errors_by_user_daily"}),
}
# Migration 0015 (productivity points): what the spend bought (but its rollup by attribution, below).
ADDED_BY["0015"] = frozenset(a for a in AGGREGATES if a.startswith("productivity_") and "_by_attribution_" not in a)
# Migration 0017 (team attribution): the fullest rollup of each raw table LLM Usage and MCP Usage
# read, with the attribution dimensions.
ADDED_BY["0017"] = frozenset(a for a in AGGREGATES if "_attributed_" in a)
# The agents' decisions by source and by tool and user: Security's enforcement row without the
# wide rollup of every key (over 0012's table; no migration of their own).
ADDED_BY["decisions-narrow"] = frozenset(
    f"agent_decisions_{r}_{w}" for r in ("by_source", "by_tool_user") for w in ("minutely", "hourly", "daily"))
# Where the money goes without users or attribution: the origin rollups' totals, for LLM Usage's
# unfiltered cost by subagent, effort and speed (over 0013's columns; no migration of their own).
ADDED_BY["origin-totals"] = frozenset(
    f"{r}_totals_{w}" for r in ("llm_usage_by_origin", "llm_metric_usage_by_origin")
    for w in ("minutely", "hourly", "daily"))
# Where an unfiltered duration or time-to-first-token percentile's rank falls: bands of 100 ms
# per model (over 0013's columns; no migration of their own).
ADDED_BY["bands"] = frozenset(
    f"{r}_{w}" for r in ("llm_latency_bands", "llm_ttft_bands") for w in ("minutely", "hourly", "daily"))
# The permission modes' daily twin: whole days of Security's sessions by permission mode (over
# 0012's table; no migration of its own).
ADDED_BY["modes-daily"] = frozenset({"agent_permission_modes_daily"})
# The spend of one agent by model or by user alone, for the Value figures (over 0002's columns; no
# migration of their own).
ADDED_BY["agent-spend"] = frozenset(
    f"{r}_{w}" for r in ("llm_usage_by_agent", "llm_usage_by_agent_user", "llm_metric_usage_by_agent",
                         "llm_metric_usage_by_agent_user") for w in ("minutely", "hourly", "daily"))
# The duration's P95 over every model: its milliseconds and bands without the model (over 0002's
# latency_ms; no migration of their own).
ADDED_BY["latency-totals"] = frozenset(
    f"{r}_{w}" for r in ("llm_latency_totals", "llm_latency_totals_bands") for w in ("minutely", "hourly", "daily"))
# The totals of tool calls, requests, metric points and productivity points with the attribution
# dimensions: the panels by a dimension without a filter on who or what (over 0017's and 0018's
# columns; no migration of their own).
ADDED_BY["by-attribution"] = frozenset(
    f"{r}_by_attribution_{w}" for r in ("tool_calls", "llm_usage", "llm_metric_usage", "productivity")
    for w in ("minutely", "hourly", "daily"))
# API errors by kind only: their stats and series without a filter (over 0013's table; no
# migration of their own).
ADDED_BY["errors-totals"] = frozenset(f"llm_errors_totals_{w}" for w in ("minutely", "hourly", "daily"))
ADDED_BY["per-minute"] = (frozenset(a for a in AGGREGATES if a.endswith("_minutely"))
                          - ADDED_BY["0013"] - ADDED_BY["0015"] - ADDED_BY["0017"] - ADDED_BY["decisions-narrow"]
                          - ADDED_BY["origin-totals"] - ADDED_BY["bands"] - ADDED_BY["agent-spend"]
                          - ADDED_BY["latency-totals"] - ADDED_BY["by-attribution"] - ADDED_BY["errors-totals"])
ADDED: frozenset[str] = frozenset().union(*ADDED_BY.values())
