"""MCP Usage: the tool-call metrics on executions (blocked calls never ran). Each metric is
declared once here, its builder bound into HANDLERS by metric id (engine.Engine.run reads it).
The top-list builders are shared with Security, which ranks blocked calls the same way."""
from __future__ import annotations

from typing import TYPE_CHECKING

from agent_analytics.datasource import kinds
from agent_analytics.datasource.catalog import NO_AGENT_INSTANCE, NO_MCP_SERVER, NO_USER
from agent_analytics.datasource.kinds import Handler, SeriesSpec, StatSpec, TopSpec
from agent_analytics.datasource.query import Query
from agent_analytics.datasource.relations import EXECUTED, TOOL_CALLS
from agent_analytics.datasource.result import Result
from agent_analytics.datasource.sqltext import C as _C
from agent_analytics.datasource.sqltext import literal as _literal

if TYPE_CHECKING:
    from agent_analytics.datasource.engine import Engine


def _tool_top(measure: str) -> str:
    return (f"SELECT g.tool_name AS tool, g.mcp_server_id,"
            f" coalesce(m.name, g.mcp_server_id, {_literal(NO_MCP_SERVER)}) AS mcp,"
            f" g.n AS {measure}, count(*) OVER () AS total"
            f" FROM (SELECT tool_name, mcp_server_id, sum(calls) AS n FROM src GROUP BY 1, 2) g"
            f" LEFT JOIN mcp_servers m ON m.id = g.mcp_server_id"
            f" ORDER BY g.n DESC, g.mcp_server_id {_C} NULLS LAST, g.tool_name {_C}")


def _instance_top(measure: str) -> str:
    return (f"SELECT g.agent_instance_id,"
            f" coalesce(ai.name, g.agent_instance_id, {_literal(NO_AGENT_INSTANCE)}) AS agent_instance,"
            f" ai.agent_id, coalesce(a.name, ai.agent_id) AS agent, ai.user_id,"
            f" coalesce(u.display_name, u.email, ai.user_id) AS \"user\", g.n AS {measure},"
            f" count(*) OVER () AS total"
            f" FROM (SELECT agent_instance_id, sum(calls) AS n FROM src GROUP BY 1) g"
            f" LEFT JOIN agent_instances ai ON ai.id = g.agent_instance_id"
            f" LEFT JOIN agents a ON a.id = ai.agent_id LEFT JOIN users u ON u.id = ai.user_id"
            f" ORDER BY g.n DESC, g.agent_instance_id {_C} NULLS LAST")


def _user_top(measure: str) -> str:
    return (f"SELECT g.user_id, coalesce(u.display_name, u.email, g.user_id, {_literal(NO_USER)}) AS \"user\","
            f" g.n AS {measure}, count(*) OVER () AS total"
            f" FROM (SELECT user_id, sum(calls) AS n FROM src GROUP BY 1) g"
            f" LEFT JOIN users u ON u.id = g.user_id ORDER BY g.n DESC, g.user_id {_C} NULLS LAST")


def _mcp_top(measure: str) -> str:
    return (f"SELECT g.mcp_server_id, coalesce(m.name, g.mcp_server_id, {_literal(NO_MCP_SERVER)}) AS mcp,"
            f" g.n AS {measure}, count(*) OVER () AS total"
            f" FROM (SELECT mcp_server_id, sum(calls) AS n FROM src GROUP BY 1) g"
            f" LEFT JOIN mcp_servers m ON m.id = g.mcp_server_id ORDER BY g.n DESC, g.mcp_server_id {_C} NULLS LAST")


STATS: dict[str, StatSpec] = {
    "mcp_tool_executions": (TOOL_CALLS, EXECUTED, "SELECT coalesce(sum(calls), 0) AS v FROM src", kinds.column("v")),
    # A hashed DISTINCT is much faster than count(DISTINCT (a, b)) on a row value.
    "mcp_unique_tools": (TOOL_CALLS, EXECUTED,
                         "SELECT count(*) AS v FROM (SELECT DISTINCT mcp_server_id, tool_name FROM src) d",
                         kinds.column("v")),
    "mcp_active_agent_instances": (TOOL_CALLS, EXECUTED, "SELECT count(*) AS v FROM (SELECT DISTINCT agent_instance_id"
                                                         " FROM src WHERE agent_instance_id IS NOT NULL) d",
                                   kinds.column("v")),
    "mcp_active_users": (TOOL_CALLS, EXECUTED, "SELECT count(*) AS v FROM (SELECT DISTINCT user_id FROM src"
                                               " WHERE user_id IS NOT NULL) d", kinds.column("v")),
}

SERIES: dict[str, SeriesSpec] = {
    "mcp_executions_over_time": (TOOL_CALLS, EXECUTED, "sum(calls) AS v", "v"),
}

TOPS: dict[str, TopSpec] = {
    "mcp_top_tools": (TOOL_CALLS, EXECUTED, _tool_top("executions")),
    "mcp_top_agent_instances": (TOOL_CALLS, EXECUTED, _instance_top("executions")),
    "mcp_top_users": (TOOL_CALLS, EXECUTED, _user_top("executions")),
    "mcp_top_mcps": (TOOL_CALLS, EXECUTED, _mcp_top("executions")),
}


def hourly_distribution(e: Engine, q: Query) -> Result:
    rows = e.with_src(e.source(TOOL_CALLS, q.window, q, EXECUTED),
                      "SELECT extract(hour FROM time AT TIME ZONE 'UTC')::int AS h, sum(calls) AS n"
                      " FROM src GROUP BY 1")
    by_hour = {r["h"]: r["n"] for r in rows}
    return Result([{"hour": h, "executions": by_hour.get(h, 0)} for h in range(24)])


HANDLERS: dict[str, Handler] = {
    **kinds.stats(STATS), **kinds.series_of(SERIES), **kinds.tops(TOPS),
    "mcp_hourly_distribution": hourly_distribution,
}
