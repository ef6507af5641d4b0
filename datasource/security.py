"""Security: blocked tool calls, ranked as MCP Usage ranks executions, and the policies that
blocked them. Each metric is declared once here, bound into HANDLERS by metric id."""
from __future__ import annotations

from agent_analytics.datasource import kinds
from agent_analytics.datasource.kinds import Handler, SeriesSpec, StatSpec, TopSpec
from agent_analytics.datasource.mcp import _instance_top, _mcp_top, _tool_top, _user_top
from agent_analytics.datasource.relations import BLOCKED, TOOL_CALLS
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


STATS: dict[str, StatSpec] = {
    "security_blocked_calls": (TOOL_CALLS, BLOCKED, "SELECT coalesce(sum(calls), 0) AS v FROM src", kinds.column("v")),
}

SERIES: dict[str, SeriesSpec] = {
    "security_blocked_over_time": (TOOL_CALLS, BLOCKED, "sum(calls) AS v", "v"),
}

TOPS: dict[str, TopSpec] = {
    "security_top_blocked_tools": (TOOL_CALLS, BLOCKED, _tool_top("blocked")),
    "security_top_blocked_agent_instances": (TOOL_CALLS, BLOCKED, _instance_top("blocked")),
    "security_top_blocked_users": (TOOL_CALLS, BLOCKED, _user_top("blocked")),
    "security_top_blocked_mcps": (TOOL_CALLS, BLOCKED, _mcp_top("blocked")),
    "security_top_policies": (TOOL_CALLS, BLOCKED, _POLICY_TOP),
}

HANDLERS: dict[str, Handler] = {**kinds.stats(STATS), **kinds.series_of(SERIES), **kinds.tops(TOPS)}
