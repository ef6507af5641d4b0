"""The rollups of tool_calls: the calls' counts and durations (MCP Usage, Security)."""
from __future__ import annotations

from agent_analytics.sql.rollup_shapes import DAY, HOUR, Key, Measure, Raw, Rollup

from .keys import AGENT, AGENT_INSTANCE, MCP_SERVER, OUTCOME, SOURCE, TOOL, USER

CALLS = Measure("calls", "count(*)")
TOOL_CALLS = Raw("tool_calls", (CALLS, Measure("duration_ms_sum", "sum(duration_ms)"),
                                Measure("duration_count", "count(duration_ms)")), column=18)
# Blocked calls never ran; the rollups that hold only them.
BLOCKED = "outcome = 'blocked'"
POLICY = tuple(Key(n) for n in ("policy_id", "policy_name", "policy_description"))
# The MCP server of calls not reported by the gateway: all that the "gateway first"
# de-duplication of executions needs to know about them.
NON_GATEWAY_SERVER = Key("mcp_server_id", "CASE WHEN source = 'gateway' THEN NULL ELSE mcp_server_id END")

TOOL_CALLS_FULL = Rollup(
    "tool_calls", TOOL_CALLS, (SOURCE, USER, AGENT, AGENT_INSTANCE, MCP_SERVER, TOOL, OUTCOME, *POLICY),
    TOOL_CALLS.measures,
    {HOUR: "Tool calls per hour by every filter dimension, outcome and policy (MCP Usage, Security)."})
TOOL_CALLS_BLOCKED = Rollup(
    "tool_calls_blocked", TOOL_CALLS, TOOL_CALLS_FULL.keys, (CALLS,),
    {HOUR: "Blocked calls only (a few percent of all calls), with every filter column and the policy as\n"
           "recorded: what the Security tab reads, filtered or not."},
    where=BLOCKED)
TOOL_CALLS_TOTALS = Rollup(
    "tool_calls_totals", TOOL_CALLS, (SOURCE, OUTCOME, NON_GATEWAY_SERVER), (CALLS,),
    {HOUR: "The smallest rollup of tool_calls: calls per hour by source and outcome, for the totals and\n"
           "time series with no filter on who or what. The MCP server is kept only for calls not reported\n"
           "by the gateway, which is all that the \"gateway first\" de-duplication needs about them.",
     DAY: "Daily (UTC) twin of tool_calls_totals_hourly (see tool_calls_by_tool_daily.sql)."})
TOOL_CALLS_BY_POLICY = Rollup(
    "tool_calls_by_policy", TOOL_CALLS, (OUTCOME, *POLICY), (CALLS,),
    {HOUR: "Blocked calls per hour and policy as recorded: the top blocking policies when no filter\n"
           "narrows the actors or tools.",
     DAY: "Daily (UTC) twin of tool_calls_by_policy_hourly (see tool_calls_by_tool_daily.sql)."},
    where=BLOCKED)
TOOL_CALLS_BY_SERVER = Rollup(
    "tool_calls_by_server", TOOL_CALLS, (SOURCE, OUTCOME, MCP_SERVER), (CALLS,),
    {HOUR: "The smallest tool-call rollup: calls per hour, source, outcome and MCP server. Enough for the\n"
           "executions and blocked-calls counts and their time series (with gateway de-duplication).",
     DAY: "Daily (UTC) twin of tool_calls_by_server_hourly (see tool_calls_by_tool_daily.sql)."})
TOOL_CALLS_BY_TOOL = Rollup(
    "tool_calls_by_tool", TOOL_CALLS, (SOURCE, OUTCOME, MCP_SERVER, TOOL), (CALLS,),
    {HOUR: "Rollup of tool_calls_hourly without the actor columns: what unfiltered (or MCP / resource-tag\n"
           "filtered) MCP Usage and Security panels read. Far fewer rows than the full aggregate, whose\n"
           "actor x tool combinations are nearly as many as the raw calls.",
     DAY: "Daily (UTC) twin of tool_calls_by_tool_hourly: whole days inside a window are read from here,\n"
          "the hours around them from the hourly rollup, the partial hours at the edges from raw rows."})
TOOL_CALLS_BY_USER = Rollup(
    "tool_calls_by_user", TOOL_CALLS, (SOURCE, OUTCOME, USER, NON_GATEWAY_SERVER), (CALLS,),
    {HOUR: "Rollup of tool_calls_hourly by user only (active and top users, the user and group filters).\n"
           "The MCP server is kept only for calls not reported by the gateway, which is all that the\n"
           "\"gateway first\" de-duplication of executions needs to know about them.",
     DAY: "Daily (UTC) twin of tool_calls_by_user_hourly (see tool_calls_by_tool_daily.sql)."})
TOOL_CALLS_BY_ACTOR = Rollup(
    "tool_calls_by_actor", TOOL_CALLS, (SOURCE, OUTCOME, USER, AGENT, AGENT_INSTANCE, NON_GATEWAY_SERVER), (CALLS,),
    {HOUR: "Rollup of tool_calls_hourly without the tool: who called (user, agent, agent instance).\n"
           "The MCP server is kept only for calls not reported by the gateway, which is all that the\n"
           "\"gateway first\" de-duplication of executions needs to know about them.",
     DAY: "Daily (UTC) twin of tool_calls_by_actor_hourly (see tool_calls_by_tool_daily.sql)."})
TOOL_CALLS_BY_USER_TOOL = Rollup(
    "tool_calls_by_user_tool", TOOL_CALLS, (SOURCE, OUTCOME, USER, MCP_SERVER, TOOL), (CALLS,),
    {DAY: "Tool calls per UTC day by user and tool: the daily twin, for these columns, of tool_calls_hourly\n"
          "(which answers the hours around whole days). Which tools and MCP servers a user or a group\n"
          "used: a filter on users together with a question on tools needs both columns."})
