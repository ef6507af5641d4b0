"""Security: blocked tool calls, ranked as MCP Usage ranks executions, and the policies that
blocked them; the agents' own enforcement (permission decisions, hook blocks, permission modes,
sandbox denials, MCP server connections). Each metric is declared once here (METRICS, collected
by catalog.py) with what it reads and its builder."""
from __future__ import annotations

from agent_analytics.datasource.catalog import (COUNT, INSTANCE_COLUMNS, MCP_COLUMNS, MCP_FILTERS, NO_AGENT_INSTANCE,
                                                NO_MCP_SERVER, NO_USER, USER_COLUMNS, Metric, col)
from agent_analytics.datasource.declare import series, stat, top
from agent_analytics.datasource.mcp import TOOL_COLUMNS, _instance_top, _mcp_top, _tool_top, _user_top
from agent_analytics.datasource.relations import (AGENT_BLOCKED, AGENT_DECISIONS, ALL, BLOCKED, BYPASS, FAILED,
                                                  HOOK_BLOCKED, MCP_CONNECTIONS, PERMISSION_MODES, POLICY_COLUMNS,
                                                  TOOL_CALLS)
from agent_analytics.datasource.sqltext import C as _C
from agent_analytics.datasource.sqltext import literal as _literal
from agent_analytics.datasource.sqltext import name_of


_POLICY_TOP = (
    f"SELECT g.policy_id, g.policy_name, g.policy_description, g.n AS blocked, p.name AS current_name,"
    f" (p.name IS NOT NULL AND p.name IS DISTINCT FROM g.policy_name) AS renamed, count(*) OVER () AS total"
    f" FROM (SELECT policy_id, sum(calls) AS n,"
    # As recorded on the latest block in the range (a policy may be renamed mid-range).
    f"   (array_agg(policy_name ORDER BY time DESC, policy_name {_C}))[1] AS policy_name,"
    f"   (array_agg(policy_description ORDER BY time DESC, policy_name {_C}))[1] AS policy_description"
    f"   FROM src WHERE policy_id IS NOT NULL GROUP BY 1) g"
    f" LEFT JOIN policies p ON p.id = g.policy_id ORDER BY g.n DESC, g.policy_id {_C}")


_BLOCKED = col("blocked", "number", COUNT, "Blocked calls")

METRICS: tuple[Metric, ...] = (
    stat("security_blocked_calls", "security", "Blocked calls", COUNT, MCP_FILTERS, "Calls blocked by policy.",
         TOOL_CALLS, BLOCKED, needs=(), body="SELECT coalesce(sum(calls), 0) AS v FROM src"),
    series("security_blocked_over_time", "security", "Blocked calls", COUNT, MCP_FILTERS, "Blocked calls per bucket.",
           TOOL_CALLS, BLOCKED, needs=(), sums="sum(calls) AS v", column="v"),
    top("security_top_blocked_tools", "security", "Top blocked tools", TOOL_COLUMNS, _BLOCKED, MCP_FILTERS,
        "Tools by blocked calls.", TOOL_CALLS, BLOCKED, needs=("mcp_server_id", "tool_name"),
        body=_tool_top("blocked")),
    top("security_top_blocked_agent_instances", "security", "Top blocked agent instances", INSTANCE_COLUMNS,
        _BLOCKED, MCP_FILTERS, "Agent instances by blocked calls.", TOOL_CALLS, BLOCKED,
        needs=("agent_instance_id",), body=_instance_top("blocked")),
    top("security_top_blocked_users", "security", "Top blocked users", USER_COLUMNS, _BLOCKED, MCP_FILTERS,
        "Users by blocked calls.", TOOL_CALLS, BLOCKED, needs=("user_id",), body=_user_top("blocked")),
    top("security_top_blocked_mcps", "security", "Top blocked MCPs", MCP_COLUMNS, _BLOCKED, MCP_FILTERS,
        "MCP servers by blocked calls.", TOOL_CALLS, BLOCKED, needs=("mcp_server_id",), body=_mcp_top("blocked")),
    top("security_top_policies", "security", "Top blocking policies",
        (col("policy_id", title="Policy id"), col("policy_name", title="Policy (as recorded)"),
         col("policy_description", title="Description (as recorded)")), _BLOCKED, MCP_FILTERS,
        "Policies by blocks; name/description as recorded on the latest block in range; current_name is "
        "today's name, renamed true when it differs.", TOOL_CALLS, BLOCKED, needs=POLICY_COLUMNS, body=_POLICY_TOP,
        more=(col("current_name", title="Current name"), col("renamed", "boolean", None, "Renamed"))),
)


# ---- agent enforcement: what the agents themselves enforced (agent_enforcement) ---------------

_EVENTS = "SELECT coalesce(sum(events), 0) AS v FROM src"
_MCP = f"{name_of('mcp_servers', 'mcp_server_id', NO_MCP_SERVER)} AS mcp"
_USER = f"{name_of('users', 'user_id', NO_USER)} AS \"user\""
_AGENT_POLICY_TOP = (
    f"SELECT g.policy_id, g.policy_name, p.description AS policy_description, g.n AS blocked,"
    f" p.name AS current_name, (p.name IS NOT NULL AND p.name IS DISTINCT FROM g.policy_name) AS renamed,"
    f" count(*) OVER () AS total"
    f" FROM (SELECT policy_id, sum(events) AS n,"
    # As recorded on the latest block in the range.
    f"   (array_agg(policy_name ORDER BY time DESC, policy_name {_C}))[1] AS policy_name"
    f"   FROM src WHERE policy_id IS NOT NULL GROUP BY 1) g"
    f" LEFT JOIN policies p ON p.id = g.policy_id ORDER BY g.n DESC, g.policy_id {_C}")
_BY_SOURCE = (
    f"SELECT g.agent_id, coalesce(a.name, g.agent_id) AS agent, g.outcome AS decision, g.decision_source,"
    f" g.n AS decisions, g.b AS blocked, count(*) OVER () AS total"
    f" FROM (SELECT agent_id, outcome, decision_source, sum(events) AS n,"
    f"   coalesce(sum(events) FILTER (WHERE blocked), 0) AS b FROM src GROUP BY 1, 2, 3) g"
    f" LEFT JOIN agents a ON a.id = g.agent_id"
    f" ORDER BY g.n DESC, g.agent_id {_C} NULLS LAST, g.outcome {_C}, g.decision_source {_C} NULLS LAST")
_BY_TOOL_USER = (
    f"SELECT g.tool_name AS tool, g.mcp_server_id, {_MCP},"
    f" g.user_id, {_USER}, g.outcome AS decision, g.decision_source, g.n AS decisions, count(*) OVER () AS total"
    f" FROM (SELECT tool_name, mcp_server_id, user_id, outcome, decision_source, sum(events) AS n"
    f"   FROM src GROUP BY 1, 2, 3, 4, 5) g"
    f" ORDER BY g.n DESC, g.tool_name {_C} NULLS LAST, g.mcp_server_id {_C} NULLS LAST, g.user_id {_C} NULLS LAST,"
    f" g.outcome {_C}, g.decision_source {_C} NULLS LAST")
# The riskiest modes first: every check skipped, then edits accepted without asking.
_MODES = (
    f"SELECT g.permission_mode, g.user_id, {_USER}, g.agent_instance_id,"
    f" {name_of('agent_instances', 'agent_instance_id', NO_AGENT_INSTANCE)} AS agent_instance,"
    f" g.sessions, g.n AS decisions, count(*) OVER () AS total"
    # Sessions counted as the groups of a hashed aggregate by session (count(DISTINCT) sorts).
    f" FROM (SELECT permission_mode, user_id, agent_instance_id, count(session_id) AS sessions, sum(n) AS n"
    f"   FROM (SELECT permission_mode, user_id, agent_instance_id, session_id, sum(events) AS n"
    f"     FROM src GROUP BY 1, 2, 3, 4) s GROUP BY 1, 2, 3) g"
    f" ORDER BY CASE g.permission_mode WHEN 'bypassPermissions' THEN 0 WHEN 'acceptEdits' THEN 1 ELSE 2 END,"
    f" g.sessions DESC, g.permission_mode {_C}, g.user_id {_C} NULLS LAST, g.agent_instance_id {_C} NULLS LAST")
_CONNECTION_FAILURES = (
    f"SELECT g.mcp_server_id, {_MCP}, g.error_code,"
    f" g.user_id, {_USER}, g.n AS failures, count(*) OVER () AS total"
    f" FROM (SELECT mcp_server_id, error_code, user_id, sum(events) AS n FROM src GROUP BY 1, 2, 3) g"
    f" ORDER BY g.n DESC, g.mcp_server_id {_C} NULLS LAST, g.error_code {_C} NULLS LAST, g.user_id {_C} NULLS LAST")
_BLOCKS = col("blocked", "number", COUNT, "Blocks")
_DECISIONS = col("decisions", "number", COUNT, "Decisions")
_DECISION = (col("decision", title="Decision"), col("decision_source", title="Source"))

METRICS += (
    stat("security_agent_policy_blocks", "security", "Agent policy blocks", COUNT, MCP_FILTERS,
         "Tool uses an agent's own enforcement stopped: rejections by its permission rules, a hook or the user "
         "when asked, Codex denials and sandbox denials; a user's interrupt is no block.",
         AGENT_DECISIONS, AGENT_BLOCKED, needs=(), body=_EVENTS),
    stat("security_hook_blocks", "security", "Hook blocks", COUNT, MCP_FILTERS,
         "Tool uses a Claude Code PreToolUse hook refused (each counted once).",
         AGENT_DECISIONS, HOOK_BLOCKED, needs=(), body=_EVENTS),
    stat("security_bypass_sessions", "security", "Bypass-mode sessions", COUNT, MCP_FILTERS,
         "Sessions that ran with bypassPermissions: every permission check skipped.",
         PERMISSION_MODES, BYPASS, needs=("session_id",), body="SELECT count(*) AS v FROM (SELECT DISTINCT session_id FROM src WHERE session_id IS NOT NULL) s"),
    stat("security_mcp_connection_failures", "security", "MCP connection failures", COUNT, MCP_FILTERS,
         "Failed attempts by an agent to connect to an MCP server.", MCP_CONNECTIONS, FAILED, needs=(), body=_EVENTS),
    series("security_agent_blocks_over_time", "security", "Agent policy blocks", COUNT, MCP_FILTERS,
           "Agent policy blocks per bucket.", AGENT_DECISIONS, AGENT_BLOCKED, needs=(), sums="sum(events) AS v",
           column="v"),
    top("security_top_agent_policies", "security", "Top agent policies",
        (col("policy_id", title="Policy id"), col("policy_name", title="Policy (as recorded)"),
         col("policy_description", title="Description")), _BLOCKS, MCP_FILTERS,
        "The agents' own policies by blocks (a hook by its event and matcher); name as recorded on the latest "
        "block in range, description from the directory (where a hook was configured).",
        AGENT_DECISIONS, AGENT_BLOCKED, needs=("policy_id", "policy_name"), body=_AGENT_POLICY_TOP,
        more=(col("current_name", title="Current name"), col("renamed", "boolean", None, "Renamed"))),
    top("security_decisions_by_source", "security", "Permission decisions by source",
        (col("agent_id", title="Agent id"), col("agent", title="Agent")) + _DECISION, _DECISIONS, MCP_FILTERS,
        "Permission decisions by agent, decision and its source (config, hook, user_permanent, user_temporary, "
        "user_reject, user_abort; sandbox), with how many were blocks.",
        AGENT_DECISIONS, ALL, needs=("agent_id", "outcome", "decision_source", "blocked"), body=_BY_SOURCE,
        more=(_BLOCKS,)),
    top("security_decisions_by_tool_user", "security", "Permission decisions by tool and user",
        (col("tool", title="Tool"),) + MCP_COLUMNS + USER_COLUMNS + _DECISION, _DECISIONS, MCP_FILTERS,
        "Permission decisions by tool (with its MCP server), user, decision and source.", AGENT_DECISIONS, ALL,
        needs=("tool_name", "mcp_server_id", "user_id", "outcome", "decision_source"), body=_BY_TOOL_USER),
    top("security_permission_modes", "security", "Sessions by permission mode",
        (col("permission_mode", title="Permission mode"),) + USER_COLUMNS
        + (col("agent_instance_id", title="Agent instance id"), col("agent_instance", title="Agent instance")),
        col("sessions", "number", COUNT, "Sessions"), MCP_FILTERS,
        "Sessions by the permission mode they ran in, user and agent instance, bypassPermissions and acceptEdits "
        "first; decisions made in them.", PERMISSION_MODES, ALL,
        needs=("permission_mode", "user_id", "agent_instance_id", "session_id"), body=_MODES, more=(_DECISIONS,)),
    top("security_mcp_connection_failures_top", "security", "MCP server connection failures",
        MCP_COLUMNS + (col("error_code", title="Error code"),) + USER_COLUMNS,
        col("failures", "number", COUNT, "Failures"), MCP_FILTERS,
        "Failed connections to MCP servers by server, error code and user.", MCP_CONNECTIONS, FAILED,
        needs=("mcp_server_id", "error_code", "user_id"), body=_CONNECTION_FAILURES),
)
