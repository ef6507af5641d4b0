"""MCP Usage: the tool-call metrics on executions (blocked calls never ran). Each metric is
declared once here (METRICS, collected by catalog.py) with what it reads and its builder. The
top-list bodies are shared with Security, which ranks blocked calls the same way."""
from __future__ import annotations

from typing import TYPE_CHECKING

from agent_analytics.config import ATTRIBUTION
from agent_analytics.datasource.catalog import (COUNT, INSTANCE_COLUMNS, MCP_COLUMNS, MCP_FILTERS, NO_AGENT_INSTANCE,
                                                NO_ATTRIBUTION, NO_MCP_SERVER, NO_USER, USER_COLUMNS, Metric,
                                                attribution_columns, col)
from agent_analytics.datasource.declare import series, stat, top
from agent_analytics.datasource.query import Query
from agent_analytics.datasource.relations import EXECUTED, TOOL_CALLS, reads
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


def _dimension_top(dimension: str, measure: str) -> str:
    """By an attribution dimension's value; the calls without one are the (unattributed) row."""
    return (f"SELECT coalesce(g.{dimension}, {_literal(NO_ATTRIBUTION)}) AS {dimension},"
            f" g.{dimension} IS NOT NULL AS attributed, g.n AS {measure}, count(*) OVER () AS total"
            f" FROM (SELECT {dimension}, sum(calls) AS n FROM src GROUP BY 1) g"
            f" ORDER BY g.n DESC, g.{dimension} {_C} NULLS LAST")


TEAM = next(d for d in ATTRIBUTION if d.name == "team")
TOOL_COLUMNS = (col("tool", title="Tool"),) + MCP_COLUMNS
_EXECUTIONS = col("executions", "number", COUNT, "Executions")


def hourly_distribution(e: Engine, q: Query) -> Result:
    r = q.metric.dataset_reads
    rows = e.with_src(e.source(r.dataset, q.window, q, r.rows),
                      "SELECT extract(hour FROM time AT TIME ZONE 'UTC')::int AS h, sum(calls) AS n"
                      " FROM src GROUP BY 1")
    by_hour = {r["h"]: r["n"] for r in rows}
    return Result([{"hour": h, "executions": by_hour.get(h, 0)} for h in range(24)])


# Tool executions are calls with outcome ok or error (EXECUTED).
METRICS: tuple[Metric, ...] = (
    stat("mcp_tool_executions", "mcp", "Tool executions", COUNT, MCP_FILTERS, "Tool calls that ran (ok or error).",
         TOOL_CALLS, EXECUTED, needs=(), body="SELECT coalesce(sum(calls), 0) AS v FROM src"),
    # A hashed DISTINCT is much faster than count(DISTINCT (a, b)) on a row value.
    stat("mcp_unique_tools", "mcp", "Unique tools", COUNT, MCP_FILTERS, "Distinct (MCP server, tool) pairs executed.",
         TOOL_CALLS, EXECUTED, needs=("mcp_server_id", "tool_name"),
         body="SELECT count(*) AS v FROM (SELECT DISTINCT mcp_server_id, tool_name FROM src) d"),
    stat("mcp_active_agent_instances", "mcp", "Active agent instances", COUNT, MCP_FILTERS,
         "Distinct agent instances with at least one execution.", TOOL_CALLS, EXECUTED, needs=("agent_instance_id",),
         body="SELECT count(*) AS v FROM (SELECT DISTINCT agent_instance_id FROM src"
              " WHERE agent_instance_id IS NOT NULL) d"),
    stat("mcp_active_users", "mcp", "Active users", COUNT, MCP_FILTERS, "Distinct users with at least one execution.",
         TOOL_CALLS, EXECUTED, needs=("user_id",),
         body="SELECT count(*) AS v FROM (SELECT DISTINCT user_id FROM src WHERE user_id IS NOT NULL) d"),
    series("mcp_executions_over_time", "mcp", "Tool executions", COUNT, MCP_FILTERS, "Executions per bucket.",
           TOOL_CALLS, EXECUTED, needs=(), sums="sum(calls) AS v", column="v"),
    Metric("mcp_hourly_distribution", "mcp", "bars", "Executions by hour of day (UTC)", COUNT,
           (col("hour", "number", None, "Hour (UTC)"), _EXECUTIONS), MCP_FILTERS,
           "24 rows, hour 0-23 UTC, executions in the range at that hour of day.",
           build=hourly_distribution, reads=reads(TOOL_CALLS, EXECUTED, (), time=True)),
    top("mcp_top_tools", "mcp", "Top tools", TOOL_COLUMNS, _EXECUTIONS, MCP_FILTERS,
        "Tools by executions, with their MCP server.", TOOL_CALLS, EXECUTED,
        needs=("mcp_server_id", "tool_name"), body=_tool_top("executions")),
    top("mcp_top_agent_instances", "mcp", "Top agent instances", INSTANCE_COLUMNS, _EXECUTIONS, MCP_FILTERS,
        "Agent instances by executions, with their owner (from the directory).", TOOL_CALLS, EXECUTED,
        needs=("agent_instance_id",), body=_instance_top("executions")),
    top("mcp_top_users", "mcp", "Top users", USER_COLUMNS, _EXECUTIONS, MCP_FILTERS, "Users by executions.",
        TOOL_CALLS, EXECUTED, needs=("user_id",), body=_user_top("executions")),
    top("mcp_top_mcps", "mcp", "Top MCPs", MCP_COLUMNS, _EXECUTIONS, MCP_FILTERS, "MCP servers by executions.",
        TOOL_CALLS, EXECUTED, needs=("mcp_server_id",), body=_mcp_top("executions")),
    top("mcp_executions_by_team", "mcp", "Executions by team", attribution_columns(TEAM.name, TEAM.title),
        _EXECUTIONS, MCP_FILTERS,
        f"Executions by team (resource attribute {TEAM.attribute} by default); the calls of processes that set "
        "none are the (unattributed) row.", TOOL_CALLS, EXECUTED, needs=(TEAM.name,),
        body=_dimension_top(TEAM.name, "executions")),
)
