"""The rollups of agent_enforcement (migration 0012): the agents' own permission decisions, sandbox
outcomes and MCP server connections (Security)."""
from __future__ import annotations

from agent_analytics.sql.rollup_shapes import DAY, HOUR, Key, Measure, Raw, Rollup

from .keys import AGENT, AGENT_INSTANCE, KIND, MCP_SERVER, OUTCOME, SESSION, SOURCE, TOOL, USER

EVENTS = Measure("events", "count(*)")
AGENT_ENFORCEMENT = Raw("agent_enforcement", (EVENTS,), column=0)
DECISION_SOURCE, BLOCKED_KEY, PERMISSION_MODE, ERROR_CODE, POLICY_ID, POLICY_NAME = (Key(n) for n in (
    "decision_source", "blocked", "permission_mode", "error_code", "policy_id", "policy_name"))
AGENT_DECISIONS = Rollup(
    "agent_decisions", AGENT_ENFORCEMENT, (SOURCE, KIND, USER, AGENT, AGENT_INSTANCE, MCP_SERVER, TOOL, OUTCOME,
                                           DECISION_SOURCE, BLOCKED_KEY, POLICY_ID, POLICY_NAME), (EVENTS,),
    {HOUR: "The agents' permission decisions and sandbox outcomes per hour, built-in and MCP tools alike, by\n"
           "who, the tool, the decision and its source, and for a block the policy as recorded (Security)."},
    where="kind IN ('decision', 'sandbox')")
# The decisions' two narrow rollups: the wide one's rows are nearly as many as the raw events.
AGENT_DECISIONS_BY_SOURCE = Rollup(
    "agent_decisions_by_source", AGENT_ENFORCEMENT, (AGENT, OUTCOME, DECISION_SOURCE, BLOCKED_KEY, POLICY_ID,
                                                     POLICY_NAME), (EVENTS,),
    {HOUR: "agent_decisions_hourly by agent, decision, its source and the policy of a block only: the blocks,\n"
           "their series, the agents' policies and the decisions by source without a filter on who or what.",
     DAY: "Daily (UTC) twin of agent_decisions_by_source_hourly: whole days of the window."},
    where=AGENT_DECISIONS.where)
AGENT_DECISIONS_BY_TOOL_USER = Rollup(
    "agent_decisions_by_tool_user", AGENT_ENFORCEMENT, (USER, MCP_SERVER, TOOL, OUTCOME, DECISION_SOURCE, BLOCKED_KEY),
    (EVENTS,),
    {HOUR: "agent_decisions_hourly by user, tool (and its MCP server), decision, its source and whether it blocked:\n"
           "the decisions by tool and user, and the blocks under a user or tool filter.",
     DAY: "Daily (UTC) twin of agent_decisions_by_tool_user_hourly: whole days of the window."},
    where=AGENT_DECISIONS.where)
AGENT_PERMISSION_MODES = Rollup(
    "agent_permission_modes", AGENT_ENFORCEMENT, (PERMISSION_MODE, SESSION, SOURCE, USER, AGENT, AGENT_INSTANCE),
    (EVENTS,), {HOUR: "Decisions per hour by the permission mode the session ran in (Claude Code's permission_mode)\n"
                      "and the session: which sessions ran with bypassPermissions or acceptEdits, whose (Security).",
                # A session rarely spans hours but is counted in each: a day's rows are about half the hours'.
                DAY: "Daily (UTC) twin of agent_permission_modes_hourly: whole days of the window."},
    where="kind = 'decision' AND permission_mode IS NOT NULL")
MCP_CONNECTIONS = Rollup(
    "mcp_connections", AGENT_ENFORCEMENT, (SOURCE, USER, AGENT, AGENT_INSTANCE, MCP_SERVER, OUTCOME, ERROR_CODE),
    (EVENTS,), {HOUR: "The agents' connection attempts to MCP servers per hour by server, status and error code, and\n"
                      "who made them (Security: MCP server health)."},
    where="kind = 'mcp_connection'")
