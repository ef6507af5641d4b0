"""Security: blocked tool calls, ranked as MCP Usage ranks executions, and the policies that
blocked them. Each metric is declared once here (METRICS, collected by catalog.py) with what it
reads and its builder."""
from __future__ import annotations

from agent_analytics.datasource.catalog import (COUNT, INSTANCE_COLUMNS, MCP_COLUMNS, MCP_FILTERS, USER_COLUMNS,
                                                Metric, col)
from agent_analytics.datasource.declare import series, stat, top
from agent_analytics.datasource.mcp import TOOL_COLUMNS, _instance_top, _mcp_top, _tool_top, _user_top
from agent_analytics.datasource.relations import BLOCKED, POLICY_COLUMNS, TOOL_CALLS
from agent_analytics.datasource.sqltext import C as _C


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
