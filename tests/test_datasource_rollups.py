"""The "choose aggregate" stage: each MCP Usage / Security / LLM Usage metric reads the smallest rollup that
holds every column its body and its filters need, and the full aggregate otherwise. (That the
numbers stay exact under every filter is proven against the oracle in test_datasource_metrics.)"""
from __future__ import annotations

from datetime import timedelta

import pytest

from agent_analytics.datasource import catalog
from agent_analytics.datasource.relations import ALL
from agent_analytics.datasource.relations import BLOCKED as IS_BLOCKED
from agent_analytics.datasource.relations import (AGENT_DECISIONS, EXECUTED, IN_SESSION, LLM_METRIC_USAGE,
                                                  LLM_SESSIONS, LLM_USAGE, PRODUCTIVITY, SESSION_METRICS, TOOL_CALLS,
                                                  Condition, choose_aggregate)
from tests.datasource_dataset import ANCHOR
from tests.datasource_support import api, materialised

# The metrics that do not look at the time, from their declarations.
TIME_FREE = {m.id for m in catalog.METRICS if m.reads is not None and not m.reads.time}


def needs(metric: str) -> frozenset[str] | None:
    return catalog.BY_ID[metric].reads.needs


BLOCKED = "tool_calls_blocked_hourly"
TOTALS = "tool_calls_totals_hourly"
BY_USER = "tool_calls_by_user_hourly"
BY_SERVER, BY_TOOL, BY_ACTOR, FULL = ("tool_calls_by_server_hourly", "tool_calls_by_tool_hourly",
                                      "tool_calls_by_actor_hourly", "tool_calls_hourly")
# The full aggregate with the attribution dimensions: under the group filter (whose rule maps
# dimension values), the dimensions with other keys, and when nothing smaller answers.
ATTRIBUTED = "tool_calls_attributed_hourly"
# The totals' keys with the dimensions: their top lists and filters without a filter on who or what.
BY_ATTRIBUTION = "tool_calls_by_attribution_hourly"


@pytest.mark.parametrize("metric,filters,extra,want", [
    ("mcp_tool_executions", [], EXECUTED, TOTALS),
    ("mcp_hourly_distribution", [], EXECUTED, TOTALS),
    ("security_blocked_over_time", [], IS_BLOCKED, TOTALS),
    ("mcp_executions_over_time", ["mcp"], EXECUTED, BY_SERVER),
    ("mcp_executions_over_time", ["mcp", "resource_tag"], EXECUTED, BY_TOOL),
    ("mcp_top_tools", [], EXECUTED, BY_TOOL),
    ("mcp_tool_executions", ["user"], EXECUTED, BY_USER),
    ("mcp_active_users", [], EXECUTED, BY_USER),
    ("mcp_top_users", ["user", "agent_tag"], EXECUTED, BY_ACTOR),
    ("mcp_top_users", ["group", "agent_tag"], EXECUTED, ATTRIBUTED),
    ("mcp_tool_executions", ["team"], EXECUTED, BY_ATTRIBUTION),
    ("security_blocked_calls", ["department", "cost_center"], IS_BLOCKED, BY_ATTRIBUTION),
    ("mcp_executions_by_team", [], EXECUTED, BY_ATTRIBUTION),
    ("mcp_executions_by_team", ["department"], EXECUTED, BY_ATTRIBUTION),
    # Who, which server (whole: the rollup keeps it for calls not reported by the gateway only), a rule.
    ("mcp_executions_by_team", ["user"], EXECUTED, ATTRIBUTED),
    ("mcp_executions_by_team", ["mcp"], EXECUTED, ATTRIBUTED),
    ("mcp_executions_by_team", ["group"], EXECUTED, ATTRIBUTED),
    ("security_top_policies", ["cost_center"], IS_BLOCKED, ATTRIBUTED),
    ("mcp_active_agent_instances", [], EXECUTED, BY_ACTOR),
    ("mcp_active_users", ["mcp"], EXECUTED, FULL),          # needs user and the server together
    ("mcp_top_tools", ["user"], EXECUTED, FULL),
    ("security_blocked_calls", ["agent_instance"], IS_BLOCKED, BY_ACTOR),
    ("security_top_policies", [], IS_BLOCKED, "tool_calls_by_policy_hourly"),
    ("security_top_policies", ["user"], IS_BLOCKED, BLOCKED),
    ("security_top_blocked_tools", ["user", "resource_tag"], IS_BLOCKED, BLOCKED),
    ("security_top_policies", [], EXECUTED, FULL),          # the blocked rollup holds only blocked calls
    # A condition on a column no rollup holds: play safe.
    ("mcp_tool_executions", [], Condition("other", "something else", frozenset({"something"})), ATTRIBUTED),
])
def test_choice(metric, filters, extra, want):
    name, columns, _ = choose_aggregate(TOOL_CALLS, needs(metric), filters, extra)
    assert name == want
    projected = [c.split(" AS ")[-1].strip() for c in columns.split(",")]
    full = [c.split(" AS ")[-1].strip() for c in TOOL_CALLS.agg_columns.split(",")]
    assert projected == full, "every relation projects the dataset's columns in the same order"


DECISIONS_BY_SOURCE, DECISIONS_BY_TOOL_USER = "agent_decisions_by_source_hourly", "agent_decisions_by_tool_user_hourly"


@pytest.mark.parametrize("metric,filters,want", [
    ("security_agent_policy_blocks", [], DECISIONS_BY_SOURCE),
    ("security_hook_blocks", ["agent"], DECISIONS_BY_SOURCE),
    ("security_agent_blocks_over_time", ["agent_tag"], DECISIONS_BY_SOURCE),
    ("security_top_agent_policies", [], DECISIONS_BY_SOURCE),
    ("security_decisions_by_source", [], DECISIONS_BY_SOURCE),
    ("security_decisions_by_tool_user", [], DECISIONS_BY_TOOL_USER),
    ("security_decisions_by_tool_user", ["user", "mcp", "resource_tag"], DECISIONS_BY_TOOL_USER),
    # A policy with a user, a server with the decisions by source, an agent instance: only the wide aggregate.
    ("security_agent_policy_blocks", ["user"], DECISIONS_BY_TOOL_USER),
    ("security_top_agent_policies", ["user"], "agent_decisions_hourly"),
    ("security_decisions_by_source", ["mcp"], "agent_decisions_hourly"),
    ("security_decisions_by_tool_user", ["agent_instance"], "agent_decisions_hourly"),
])
def test_decisions_choice(metric, filters, want):
    """Security's agent enforcement row reads the narrow rollups of the decisions (each with its
    daily twin) where they hold every column, the wide aggregate otherwise."""
    reads = catalog.BY_ID[metric].reads
    name, columns, rollup = choose_aggregate(AGENT_DECISIONS, reads.needs, filters, reads.rows)
    assert name == want
    assert (rollup.daily if rollup else None) == (None if want == "agent_decisions_hourly"
                                                  else want.replace("_hourly", "_daily"))
    projected = [c.split(" AS ")[-1].strip() for c in columns.split(",")]
    assert projected == [c.split(" AS ")[-1].strip() for c in AGENT_DECISIONS.agg_columns.split(",")]


@pytest.mark.parametrize("metric,filters,events,points", [
    ("llm_total_tokens", [], "llm_usage_totals_hourly", "llm_metric_usage_totals_hourly"),
    ("llm_tokens_over_time", [], "llm_usage_totals_hourly", "llm_metric_usage_totals_hourly"),
    ("llm_tokens_over_time", ["provider", "model"], "llm_usage_by_model_hourly", "llm_metric_usage_by_model_hourly"),
    ("llm_top_models_by_cost", [], "llm_usage_by_model_hourly", "llm_metric_usage_by_model_hourly"),
    ("llm_total_cost", ["user"], "llm_usage_per_user_hourly", "llm_metric_usage_per_user_hourly"),
    ("llm_top_users_by_tokens", [], "llm_usage_per_user_hourly", "llm_metric_usage_per_user_hourly"),
    ("llm_top_users_by_cost", ["group"], "llm_usage_attributed_hourly", "llm_metric_usage_attributed_hourly"),
    ("llm_models_used", ["user"], "llm_usage_hourly", "llm_metric_usage_hourly"),
    ("llm_total_cost", ["department"], "llm_usage_by_attribution_hourly", "llm_metric_usage_by_attribution_hourly"),
    *((f"llm_cost_by_{d}", [], "llm_usage_by_attribution_hourly", "llm_metric_usage_by_attribution_hourly")
      for d in ("department", "team", "cost_center")),
    ("llm_cost_by_team", ["team"], "llm_usage_by_attribution_hourly", "llm_metric_usage_by_attribution_hourly"),
    ("llm_cost_by_team", ["user"], "llm_usage_attributed_hourly", "llm_metric_usage_attributed_hourly"),
    ("llm_cost_by_department", ["model"], "llm_usage_attributed_hourly", "llm_metric_usage_attributed_hourly"),
    ("llm_cost_by_cost_center", ["group"], "llm_usage_attributed_hourly", "llm_metric_usage_attributed_hourly"),
    ("llm_total_tokens", ["user", "model"], "llm_usage_hourly", "llm_metric_usage_hourly"),
])
def test_llm_choice(metric, filters, events, points):
    for ds, want in ((LLM_USAGE, events), (LLM_METRIC_USAGE, points)):
        name, columns, _ = choose_aggregate(ds, needs(metric), filters, ALL)
        assert name == want
        projected = [c.split(" AS ")[-1].strip() for c in columns.split(",")]
        assert projected == [c.split(" AS ")[-1].strip() for c in ds.agg_columns.split(",")]


@pytest.mark.parametrize("metric,daily", [("sessions_table", True), ("session_metrics", True),
                                          ("session_models", True), ("session_tokens_over_time", False)])
def test_session_choice(metric, daily):
    """Session totals may read whole days from the daily twins; activity over time may not."""
    for ds, hourly, twin in ((LLM_SESSIONS, "llm_sessions_hourly", "llm_sessions_daily"),
                             (SESSION_METRICS, "session_metrics_hourly", "session_metrics_daily")):
        name, _, rollup = choose_aggregate(ds, needs(metric), ["user", "model", "session"], IN_SESSION)
        assert name == hourly
        assert (rollup is not None and rollup.daily == twin and metric in TIME_FREE) == daily


def test_the_service_reads_the_rollups(ds_client):
    """On both backends: continuous aggregates on TimescaleDB, rollups on plain PostgreSQL."""
    start, end = ANCHOR - timedelta(days=7, minutes=17), ANCHOR
    relations = {m: api(ds_client, m, start, end)["meta"]["relations"]
                 for m in ("mcp_tool_executions", "mcp_top_users", "security_top_policies", "llm_total_tokens",
                           "llm_cost_by_team", "mcp_executions_by_team")}
    assert materialised(ds_client)
    assert relations["llm_total_tokens"] == [
        "llm_usage_totals_daily", "llm_usage_totals_hourly", "llm_usage_totals_minutely", "llm_requests",
        "llm_metric_usage_totals_daily", "llm_metric_usage_totals_hourly", "llm_metric_usage_totals_minutely",
        "metric_points"]
    # Whole UTC days daily, the hours around them hourly, the partial hours' whole minutes by
    # minute, the partial minutes raw; executions first look up the servers the gateway reported
    # in those hours, from the rollups as well.
    gateway = ["tool_calls_by_server_daily", "tool_calls_by_server_hourly"]
    by_minute = lambda hourly: hourly.removesuffix("_hourly") + "_minutely"  # noqa: E731
    assert relations["mcp_tool_executions"] == [*gateway, "tool_calls_totals_daily", TOTALS, by_minute(TOTALS),
                                                "tool_calls"]
    assert relations["mcp_top_users"] == [*gateway, "tool_calls_by_user_daily", BY_USER, by_minute(BY_USER),
                                          "tool_calls"]
    assert relations["security_top_policies"] == ["tool_calls_by_policy_daily", "tool_calls_by_policy_hourly",
                                                  "tool_calls_by_policy_minutely", "tool_calls"]
    assert relations["llm_cost_by_team"] == [
        "llm_usage_by_attribution_daily", "llm_usage_by_attribution_hourly", "llm_usage_by_attribution_minutely",
        "llm_requests", "llm_metric_usage_by_attribution_daily", "llm_metric_usage_by_attribution_hourly",
        "llm_metric_usage_by_attribution_minutely", "metric_points"]
    assert relations["mcp_executions_by_team"] == [*gateway, "tool_calls_by_attribution_daily", BY_ATTRIBUTION,
                                                   by_minute(BY_ATTRIBUTION), "tool_calls"]
    # Under a user filter, the attributed rollups (the narrow ones hold no user).
    team = api(ds_client, "mcp_executions_by_team", start, end, user="user2@example.com")["meta"]["relations"]
    assert team == [*gateway, "tool_calls_attributed_daily", ATTRIBUTED, by_minute(ATTRIBUTED), "tool_calls"]
    # Value by team: the spend of the agents reporting productivity and what it bought, by team.
    value = api(ds_client, "value_by_team", start, end)["meta"]["relations"]
    assert [r for r in value if r.endswith("_daily")] == [
        "llm_usage_by_attribution_daily", "llm_metric_usage_by_attribution_daily", "productivity_by_attribution_daily"]
    # A user's tools: whole days from the daily rollup by user and tool, the hours around them
    # from the full hourly aggregate.
    tools = api(ds_client, "mcp_top_tools", start, end, user="user2@example.com")["meta"]["relations"]
    assert tools == [*gateway, "tool_calls_by_user_tool_daily", FULL, by_minute(FULL), "tool_calls"]



def test_raw_reads_give_the_same_answers(ds_app):
    """AA_READ_AGGREGATES=0 (benchmarks' baseline) answers from raw rows, identically."""
    from tests.harness_support import LLM_TOKEN

    start, end = ANCHOR - timedelta(days=7, minutes=17), ANCHOR
    raw_app_config = ds_app.config["AA"].replace(read_aggregates=False)
    client = ds_app.test_client()
    metrics = ("mcp_tool_executions", "mcp_active_users", "mcp_top_tools", "security_top_policies",
               "llm_total_tokens", "sessions_table", "llm_cost_by_team", "mcp_executions_by_team")
    with_aggregates = {m: api(client, m, start, end, token=LLM_TOKEN) for m in metrics}
    ds_app.config["AA"], kept = raw_app_config, ds_app.config["AA"]
    try:
        raw = {m: api(client, m, start, end, token=LLM_TOKEN) for m in metrics}
    finally:
        ds_app.config["AA"] = kept
    for m in metrics:
        assert raw[m]["rows"] == with_aggregates[m]["rows"], m
        assert all(not r.endswith(("_minutely", "_hourly", "_daily")) for r in raw[m]["meta"]["relations"]), m


def test_dashboard_sessions_start_no_parallel_workers(ds_app):
    """Reading aggregates, the service's sessions run serially; reading raw rows (the
    benchmarks' baseline) they keep the server's default."""
    from agent_analytics.db import Database

    with ds_app.extensions["aa_db"].connection() as c:
        assert c.execute("SHOW max_parallel_workers_per_gather").fetchone()[0] == "0"
    raw = Database(ds_app.config["AA"].database_url, size=1, serial=False)
    raw.open()
    try:
        with raw.connection() as c:
            assert c.execute("SHOW max_parallel_workers_per_gather").fetchone()[0] == \
                c.execute("SELECT boot_val FROM pg_settings WHERE name = 'max_parallel_workers_per_gather'").fetchone()[0]
    finally:
        raw.close()


@pytest.mark.parametrize("metric,filters,want", [
    ("value_pull_requests", [], "productivity_totals_hourly"),
    ("value_lines_over_time", [], "productivity_totals_hourly"),
    ("value_commits", ["user"], "productivity_per_user_hourly"),
    ("value_cost_per_pull_request", ["group"], "productivity_per_user_hourly"),
    ("value_by_user", [], "productivity_per_user_hourly"),
    ("value_by_model", ["user"], "productivity_per_user_hourly"),
    ("value_by_team", [], "productivity_by_attribution_hourly"),
    ("value_by_department", [], "productivity_by_attribution_hourly"),
    ("value_by_team", ["user"], "productivity_per_user_hourly"),
    ("value_by_cost_center", ["group"], "productivity_per_user_hourly"),
    ("value_edits_by_language", [], "productivity_hourly"),  # language and tool: the full aggregate
])
def test_value_choice(metric, filters, want):
    name, columns, rollup = choose_aggregate(PRODUCTIVITY, needs(metric), filters, ALL)
    assert name == want
    if rollup is not None and metric in TIME_FREE:  # whole days from the daily twin
        assert rollup.daily == want.replace("_hourly", "_daily")


@pytest.mark.parametrize("by,filters,events,points", [
    ("team", [], "llm_usage_by_attribution_hourly", "llm_metric_usage_by_attribution_hourly"),
    ("cost_center", [], "llm_usage_by_attribution_hourly", "llm_metric_usage_by_attribution_hourly"),
    ("team", ["user"], "llm_usage_attributed_hourly", "llm_metric_usage_attributed_hourly"),
    ("department", ["group"], "llm_usage_attributed_hourly", "llm_metric_usage_attributed_hourly"),
    # Not by a dimension: the rollups without them.
    ("total", [], "llm_usage_by_agent_hourly", "llm_metric_usage_by_agent_hourly"),
    ("total", ["user"], "llm_usage_by_agent_user_hourly", "llm_metric_usage_by_agent_user_hourly"),
])
def test_value_spend_choice(by, filters, events, points):
    """Value's spend (of the agents reporting productivity: it needs the agent) by an attribution
    dimension reads the rollups by attribution and agent without a filter on who."""
    from agent_analytics.datasource.value import _KEYS

    spend = frozenset({"agent_id", *_KEYS[by][1]})
    for ds, want in ((LLM_USAGE, events), (LLM_METRIC_USAGE, points)):
        name, _, rollup = choose_aggregate(ds, spend, filters, ALL)
        assert name == want
        if rollup is not None and "by_attribution" in want:
            assert rollup.daily == want.replace("_hourly", "_daily")
