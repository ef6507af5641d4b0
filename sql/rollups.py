"""The aggregates: rollups of the raw tables into time buckets, each declared once.

A `Rollup` names the raw table it groups, the rows it holds, its keys, its measures and the
bucket widths it is kept at (hourly; daily, by UTC day, for whole days of a window; and, for every
hourly one, a twin by minute for the partial hours at a window's edges). From it:

- `Aggregate.select` renders the SELECT of one width: aggregates.py builds from it a continuous
  aggregate on TimescaleDB and a rollup on plain PostgreSQL (plain/20_rollups.sql: a table of
  its buckets, `narrowed` to refresh it, a view adding `plain_live`, both in aggregates.py), and
  records its checksum;
- datasource/relations.py chooses which aggregate answers a question from the keys each holds,
  and projects the raw rows read in an aggregate's place from its measures (a `FilteredSum`
  renders both the measure and a raw row's share of it).

A database records the checksum of each aggregate's SELECT and rebuilds an aggregate whose
SELECT changes, from the raw rows that remain (retention may have dropped older ones): a change
to a key, a measure, a width or to `_render`'s layout (rollup_shapes.py) rebuilds what it touches. The comment
(`docs`) is no part of that checksum, but releases up to migration 0008 recorded the whole text,
so the rendered text stays byte for byte theirs (tests/test_rollups_declared.py holds it to
tests/legacy/aggregates_0008, but for the aggregates deliberately redefined since, named in
tests/rollups_support.py) until every database has been migrated by a release that records the
SELECT alone.
"""
from __future__ import annotations

from agent_analytics.config import ATTRIBUTION_COLUMNS
from agent_analytics.sql.rollup_shapes import (DAY, HOUR, MINUTE, SECONDS, SUFFIX, Aggregate, FilteredSum, Key,
                                               Measure, Raw, Rollup, narrowed, plain_live)

__all__ = ["DAY", "HOUR", "MINUTE", "SECONDS", "SUFFIX", "Aggregate", "FilteredSum", "Key", "Measure", "Raw", "Rollup",
           "narrowed", "plain_live", "ROLLUPS", "AGGREGATES"]

# The attribution dimensions (config.ATTRIBUTION): keys of every user-keyed LLM Usage rollup, so
# that LLM Usage's attribution filters narrow each of its panels, and of the productivity rollups
# the Value figures per team read (a process's attributes are the same for all its requests and
# points: the rows barely multiply).
ATTRIBUTION = tuple(Key(c) for c in ATTRIBUTION_COLUMNS)

# ---- tool calls --------------------------------------------------------------------------------

CALLS = Measure("calls", "count(*)")
TOOL_CALLS = Raw("tool_calls", (CALLS, Measure("duration_ms_sum", "sum(duration_ms)"),
                                Measure("duration_count", "count(duration_ms)")), column=18)
# Blocked calls never ran; the rollups that hold only them.
BLOCKED = "outcome = 'blocked'"
SOURCE, OUTCOME, USER, AGENT, AGENT_INSTANCE, MCP_SERVER, TOOL = (
    Key(n) for n in ("source", "outcome", "user_id", "agent_id", "agent_instance_id", "mcp_server_id", "tool_name"))
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

# ---- LLM requests (events) ---------------------------------------------------------------------

TOKEN_TOTAL = "input_tokens + output_tokens + cache_read_tokens + cache_write_tokens"
_REQUEST_SUMS = (Measure("requests", "count(*)"),
                 *(Measure(c, f"sum({c})") for c in ("input_tokens", "output_tokens", "cache_read_tokens",
                                                      "cache_write_tokens", "estimated_cost_usd", "reported_cost_usd")))
# Tokens without the cost (`counted` or not: a price is a request's).
_UNPRICED_TOKENS = tuple(FilteredSum(TOKEN_TOTAL, f"{c}_cost_usd IS NULL").measure(f"{c}_unpriced_tokens",
                                                                                    between="\n    ")
                         for c in ("estimated", "reported"))
UNPRICED_REQUESTS = Measure("unpriced_requests", "sum(CASE WHEN estimated_cost_usd IS NULL THEN 1 ELSE 0 END)")
# (The trailing space aligns its name with unpriced_requests' above it in llm_usage_hourly.)
_UNREPORTED_REQUESTS = Measure("unreported_requests", "sum(CASE WHEN reported_cost_usd IS NULL THEN 1 ELSE 0 END) ")
_LATENCY = (Measure("latency_ms_sum", "sum(latency_ms)"), Measure("latency_count", "count(latency_ms)"))
_TIMES = (Measure("first_time", "min(time)"), Measure("last_time", "max(time)"))
LLM_REQUESTS = Raw("llm_requests", (*_REQUEST_SUMS, *_UNPRICED_TOKENS, UNPRICED_REQUESTS, _UNREPORTED_REQUESTS,
                                    *_LATENCY, *_TIMES), column=57)
SESSION, PROVIDER, MODEL, COUNTED = (Key(n) for n in ("session_id", "provider", "model", "counted"))
_USAGE = (*_REQUEST_SUMS, *_UNPRICED_TOKENS)

LLM_USAGE_FULL = Rollup(
    "llm_usage", LLM_REQUESTS, (SOURCE, USER, AGENT, PROVIDER, MODEL, COUNTED),
    (*_USAGE, UNPRICED_REQUESTS, _UNREPORTED_REQUESTS, *_LATENCY),
    {HOUR: "LLM requests per hour by user, agent, provider and model (LLM Usage); `counted`: whether\n"
           "the request's tokens count (false when its session sent metric points instead). Their cost\n"
           "always counts (a price is a request's); `*_unpriced_tokens`: tokens without that cost."})
LLM_USAGE_BY_USER = Rollup(
    "llm_usage_by_user", LLM_REQUESTS, (USER, PROVIDER, MODEL, COUNTED), _USAGE,
    {DAY: "Daily (UTC) twin of llm_usage_hourly by user, provider and model: whole days of the window\n"
          "for metrics that do not look at the time (totals, top users and models)."})
LLM_USAGE_TOTALS = Rollup(
    "llm_usage_totals", LLM_REQUESTS, (COUNTED,), _USAGE,
    {HOUR: "llm_usage_hourly without users or models: LLM Usage totals and series without a filter.",
     DAY: "Daily (UTC) twin of llm_usage_totals_hourly: whole days of the window for totals."})
LLM_USAGE_BY_MODEL = Rollup(
    "llm_usage_by_model", LLM_REQUESTS, (PROVIDER, MODEL, COUNTED), _USAGE,
    {HOUR: "llm_usage_hourly by provider and model only: LLM Usage without a user or group filter.",
     DAY: "Daily (UTC) twin of llm_usage_by_model_hourly."})
LLM_USAGE_PER_USER = Rollup(
    "llm_usage_per_user", LLM_REQUESTS, (USER, COUNTED), _USAGE,
    {HOUR: "llm_usage_hourly by user only: top users, and every total under a user or group filter.",
     DAY: "Daily (UTC) twin of llm_usage_per_user_hourly: whole days of the window."})
# The spend of one agent (Value: the agents that send productivity metrics), by model or by user
# only: the full aggregate holds the agent too, but by every key and hour, with no daily twin.
LLM_USAGE_BY_AGENT = Rollup(
    "llm_usage_by_agent", LLM_REQUESTS, (AGENT, PROVIDER, MODEL, COUNTED), _USAGE,
    {HOUR: "llm_usage_hourly by agent, provider and model only: an agent's spend, in total or per model.",
     DAY: "Daily (UTC) twin of llm_usage_by_agent_hourly: whole days of the window."})
LLM_USAGE_BY_AGENT_USER = Rollup(
    "llm_usage_by_agent_user", LLM_REQUESTS, (AGENT, USER, COUNTED), _USAGE,
    {HOUR: "llm_usage_hourly by agent and user only: an agent's spend per user, and under a user filter.",
     DAY: "Daily (UTC) twin of llm_usage_by_agent_user_hourly: whole days of the window."})
LLM_SESSIONS = Rollup(
    "llm_sessions", LLM_REQUESTS, (SESSION, SOURCE, USER, AGENT, PROVIDER, MODEL, COUNTED),
    (*_REQUEST_SUMS, UNPRICED_REQUESTS, *_UNPRICED_TOKENS, *_LATENCY, *_TIMES),
    {HOUR: "LLM requests per hour and session (the Sessions table, session metrics, the drawer).",
     DAY: "Daily (UTC) twin of llm_sessions_hourly: whole days of the window for the session totals."})

# ---- metric points -----------------------------------------------------------------------------

_TOKENS = "metric = 'tokens'"
_POINT_TOKENS = tuple(FilteredSum("value", f"{_TOKENS} AND token_type = '{t}'").measure(f"{t}_tokens")
                      for t in ("input", "output", "cache_read", "cache_write"))
_OTHER_TOKENS = FilteredSum("value", f"{_TOKENS} AND token_type = ''").measure("other_tokens")
# Cost is counted once: a metric point's only where `cost_counted` (in sessions that sent no
# api_request events), and so are the unpriced tokens of that cost. The aggregates' measures and
# the raw rows' projections (datasource/relations.py) both read these. The reported cost is the
# cost metric's value, the estimate is priced on token points; as a raw row's share, the reported
# cost is numeric as the estimate is (one column holds either).
_COUNTED_TOKENS = f"{_TOKENS} AND cost_counted"
_POINT_COST = (
    FilteredSum("value", "metric = 'cost' AND cost_counted", row_type="numeric").measure("reported_cost_usd"),
    FilteredSum("estimated_cost_usd", _COUNTED_TOKENS).measure("estimated_cost_usd"))
_UNPRICED = f"{_COUNTED_TOKENS} AND estimated_cost_usd IS NULL"
_POINT_UNPRICED_TOKENS = FilteredSum("value", _UNPRICED).measure("estimated_unpriced_tokens", after="\n")
# The agent whose token points come with a cost metric (Claude Code's cost.usage): under the
# reported cost, the counted token points of every other agent are unpriced. (The source
# ingest/normalise_claude_code.py writes; not imported, to keep migrate free of the pricing.)
COST_METRIC_SOURCE = "claude_code"
_POINT_UNREPORTED_TOKENS = FilteredSum(
    "value", f"{_COUNTED_TOKENS} AND source <> '{COST_METRIC_SOURCE}'").measure(
    "reported_unpriced_tokens",
    before="-- Only Claude Code reports a cost metric (cost.usage) beside its token points.\n", after="\n")
_UNPRICED_POINTS = Measure("unpriced_points", f"count(*) FILTER (WHERE {_UNPRICED})\n")
_POINT_SESSION_TOKENS = FilteredSum("value", _TOKENS).measure("tokens")
_POINT_TIMES = (Measure("first_time", "min(coalesce(start_time, time))"), Measure("last_time", "max(time)"))
METRIC_POINTS = Raw("metric_points", (_POINT_SESSION_TOKENS, *_POINT_TOKENS, _OTHER_TOKENS, *_POINT_COST,
                                      _POINT_UNPRICED_TOKENS, _POINT_UNREPORTED_TOKENS, _UNPRICED_POINTS,
                                      *_POINT_TIMES), column=74)
# Points without a session are left out of LLM Usage: GenAI instrumentation reports those
# requests as spans too.
IN_SESSION = "session_id IS NOT NULL"
_METRIC_USAGE = (*_POINT_TOKENS, _OTHER_TOKENS, *_POINT_COST, _POINT_UNPRICED_TOKENS, _POINT_UNREPORTED_TOKENS)

LLM_METRIC_USAGE_FULL = Rollup(
    "llm_metric_usage", METRIC_POINTS, (SOURCE, USER, AGENT, PROVIDER, MODEL), _METRIC_USAGE,
    {HOUR: "Metric points of sessions per hour by user, agent, provider and model, without the session,\n"
           "token types and cost as columns (LLM Usage: these count instead of the sessions' events; their\n"
           "cost only where `cost_counted`: in sessions that sent no api_request events).\n"
           "Points without a session are left out: GenAI instrumentation reports those requests as spans too."},
    where=IN_SESSION)
LLM_METRIC_USAGE_BY_USER = Rollup(
    "llm_metric_usage_by_user", METRIC_POINTS, (USER, PROVIDER, MODEL), _METRIC_USAGE,
    {DAY: "Daily (UTC) twin of llm_metric_usage_hourly by user, provider and model: whole days of the\n"
          "window for metrics that do not look at the time (totals, top users and models)."},
    where=IN_SESSION)
LLM_METRIC_USAGE_TOTALS = Rollup(
    "llm_metric_usage_totals", METRIC_POINTS, (), _METRIC_USAGE,
    {HOUR: "llm_metric_usage_hourly without users or models: LLM Usage totals and series without a filter.",
     DAY: "Daily (UTC) twin of llm_metric_usage_totals_hourly: whole days of the window for totals."},
    where=IN_SESSION)
LLM_METRIC_USAGE_BY_MODEL = Rollup(
    "llm_metric_usage_by_model", METRIC_POINTS, (PROVIDER, MODEL), _METRIC_USAGE,
    {HOUR: "llm_metric_usage_hourly by provider and model only: LLM Usage without a user or group filter.",
     DAY: "Daily (UTC) twin of llm_metric_usage_by_model_hourly."},
    where=IN_SESSION)
LLM_METRIC_USAGE_PER_USER = Rollup(
    "llm_metric_usage_per_user", METRIC_POINTS, (USER,), _METRIC_USAGE,
    {HOUR: "llm_metric_usage_hourly by user only: top users, and every total under a user or group filter.",
     DAY: "Daily (UTC) twin of llm_metric_usage_per_user_hourly: whole days of the window."},
    where=IN_SESSION)
LLM_METRIC_USAGE_BY_AGENT = Rollup(
    "llm_metric_usage_by_agent", METRIC_POINTS, (AGENT, PROVIDER, MODEL), _METRIC_USAGE,
    {HOUR: "llm_metric_usage_hourly by agent, provider and model only: an agent's spend, in total or per model.",
     DAY: "Daily (UTC) twin of llm_metric_usage_by_agent_hourly: whole days of the window."},
    where=IN_SESSION)
LLM_METRIC_USAGE_BY_AGENT_USER = Rollup(
    "llm_metric_usage_by_agent_user", METRIC_POINTS, (AGENT, USER), _METRIC_USAGE,
    {HOUR: "llm_metric_usage_hourly by agent and user only: an agent's spend per user, and under a user filter.",
     DAY: "Daily (UTC) twin of llm_metric_usage_by_agent_user_hourly: whole days of the window."},
    where=IN_SESSION)
SESSION_METRICS = Rollup(
    "session_metrics", METRIC_POINTS, (SESSION, SOURCE, USER, AGENT, PROVIDER, MODEL),
    (_POINT_SESSION_TOKENS, *_POINT_TOKENS, *_POINT_COST, _UNPRICED_POINTS, _POINT_UNPRICED_TOKENS,
     _POINT_UNREPORTED_TOKENS, *_POINT_TIMES),
    {HOUR: "Metric points (the session totals agents send as metrics) per hour, session and model, the\n"
           "token types and cost as columns (the Sessions table, session metrics, the drawer).",
     DAY: "Daily (UTC) twin of session_metrics_hourly: whole days of the window for the session totals."})

# ---- the agents' own enforcement (migration 0012) -----------------------------------------------

EVENTS = Measure("events", "count(*)")
AGENT_ENFORCEMENT = Raw("agent_enforcement", (EVENTS,), column=0)
KIND, DECISION_SOURCE, BLOCKED_KEY, PERMISSION_MODE, ERROR_CODE, POLICY_ID, POLICY_NAME = (Key(n) for n in (
    "kind", "decision_source", "blocked", "permission_mode", "error_code", "policy_id", "policy_name"))
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

# ---- productivity points (migration 0015) -----------------------------------------------------

# What productivity points count (the table's CHECK names the same), each a measure of its own.
PRODUCTIVITY_METRICS = ("lines_added", "lines_removed", "commits", "pull_requests", "edits_accepted",
                        "edits_rejected", "active_seconds")
PRODUCTIVITY = Raw("productivity_points", tuple(FilteredSum("value", f"metric = '{m}'").measure(m)
                                                for m in PRODUCTIVITY_METRICS), column=51)
PRODUCTIVITY_FULL = Rollup(
    "productivity", PRODUCTIVITY, (SOURCE, USER, AGENT, MODEL, *(Key(n) for n in ("language", "tool_name", "decided_by")),
                                   *ATTRIBUTION),
    PRODUCTIVITY.measures,
    {HOUR: "What the spend bought, per hour: lines, commits, pull requests, edit decisions and active time\n"
           "by user, agent, model (lines only name one), an edit decision's language, tool and decider,\n"
           "and attribution (migration 0018)."})
PRODUCTIVITY_PER_USER = Rollup(
    "productivity_per_user", PRODUCTIVITY, (USER, MODEL, *ATTRIBUTION), PRODUCTIVITY.measures,
    {HOUR: "productivity_hourly by user, model and attribution only: the Value figures per user, group,\n"
           "model and team (department, cost centre), and under the group filter's mapping rule.",
     DAY: "Daily (UTC) twin of productivity_per_user_hourly: whole days of the window."})
PRODUCTIVITY_TOTALS = Rollup(
    "productivity_totals", PRODUCTIVITY, (), PRODUCTIVITY.measures,
    {HOUR: "productivity_hourly without keys: the Value totals and series without a filter.",
     DAY: "Daily (UTC) twin of productivity_totals_hourly: whole days of the window for totals."})
# ---- LLM health and where the money goes -------------------------------------------------------

# Who made a request (query_source: 'main' or 'subagent'; agent_name: the subagent) and how
# (effort, speed), where the agent says (migration 0013).
QUERY_SOURCE, AGENT_NAME, EFFORT, SPEED = (Key(n) for n in ("query_source", "agent_name", "effort", "speed"))

LLM_USAGE_BY_ORIGIN = Rollup(
    "llm_usage_by_origin", LLM_REQUESTS, (USER, PROVIDER, MODEL, QUERY_SOURCE, AGENT_NAME, EFFORT, SPEED, COUNTED,
                                             *ATTRIBUTION),
    _USAGE,
    {HOUR: "LLM requests per hour by who made them (main thread or subagent, and which) and how (effort,\n"
           "speed), with the LLM filters' columns (attribution too): where the tokens and the money go.",
     DAY: "Daily (UTC) twin of llm_usage_by_origin_hourly: whole days of the window."})
LLM_METRIC_USAGE_BY_ORIGIN = Rollup(
    "llm_metric_usage_by_origin", METRIC_POINTS, (USER, PROVIDER, MODEL, QUERY_SOURCE, AGENT_NAME, EFFORT,
                                                   *ATTRIBUTION),
    _METRIC_USAGE,
    {HOUR: "Metric points of sessions per hour by main thread or subagent, subagent and effort (Claude\n"
           "Code's token.usage and cost.usage carry them), and attribution: what counts instead of events.",
     DAY: "Daily (UTC) twin of llm_metric_usage_by_origin_hourly: whole days of the window."},
    where=IN_SESSION)
# The origin rollups without user and attribution: what unfiltered (or model-filtered) cost by
# subagent, effort and speed read; the keyed ones hold about a row per user and team for each.
LLM_USAGE_BY_ORIGIN_TOTALS = Rollup(
    "llm_usage_by_origin_totals", LLM_REQUESTS, (PROVIDER, MODEL, QUERY_SOURCE, AGENT_NAME, EFFORT, SPEED, COUNTED),
    _USAGE,
    {HOUR: "llm_usage_by_origin_hourly without users or attribution: where the tokens and the money go\n"
           "without a filter on who.",
     DAY: "Daily (UTC) twin of llm_usage_by_origin_totals_hourly: whole days of the window."})
LLM_METRIC_USAGE_BY_ORIGIN_TOTALS = Rollup(
    "llm_metric_usage_by_origin_totals", METRIC_POINTS, (PROVIDER, MODEL, QUERY_SOURCE, AGENT_NAME, EFFORT),
    _METRIC_USAGE,
    {HOUR: "llm_metric_usage_by_origin_hourly without users or attribution: sessions' metric points by\n"
           "main thread or subagent and effort without a filter on who.",
     DAY: "Daily (UTC) twin of llm_metric_usage_by_origin_totals_hourly: whole days of the window."},
    where=IN_SESSION)
LLM_SESSION_AGENTS = Rollup(
    "llm_session_agents", LLM_REQUESTS, (SESSION, USER, PROVIDER, MODEL, QUERY_SOURCE, AGENT_NAME, COUNTED), _USAGE,
    {HOUR: "LLM requests per hour, session, main thread or subagent: a session's subagents (the drawer).",
     DAY: "Daily (UTC) twin of llm_session_agents_hourly: whole days of the window."})
SESSION_METRIC_AGENTS = Rollup(
    "session_metric_agents", METRIC_POINTS, (SESSION, USER, PROVIDER, MODEL, QUERY_SOURCE, AGENT_NAME),
    _METRIC_USAGE,
    {HOUR: "Metric points per hour, session, main thread or subagent: a session's subagents (the drawer).",
     DAY: "Daily (UTC) twin of session_metric_agents_hourly: whole days of the window."})

# Request durations and times to first token, exact to the millisecond: how many requests took
# each whole millisecond (both agents send whole milliseconds; other sources are rounded), so a
# percentile read from a rollup is the one the raw rows give.
REQUESTS = _REQUEST_SUMS[0]
# The unfiltered percentiles find the band of BAND_MS milliseconds holding their rank in the
# bands rollups (a few hundred rows a day per model), then read that band's milliseconds alone
# from the per-millisecond rollups, by the index on (provider, model, milliseconds, bucket,
# requests): holding the count, the index alone answers the probe (migration 0020).
BAND_MS = 100
_BY_VALUE = "value"  # the index's name suffix


def _milliseconds(name: str, column: str, what: str) -> tuple[Rollup, Rollup, Rollup]:
    """A per-request time in whole milliseconds (`column`, `what` it measures), as three rollups
    of the requests that sent one: by user and attribution, by model alone (indexed by the
    millisecond), and by model and band of BAND_MS."""
    ms, where = Key(column, f"round({column})"), f"{column} IS NOT NULL"
    full = Rollup(
        name, LLM_REQUESTS, (USER, PROVIDER, MODEL, ms, *ATTRIBUTION), (REQUESTS,),
        {HOUR: f"Requests per hour, user, attribution, model and {what} (whole milliseconds): exact percentiles.",
         DAY: f"Daily (UTC) twin of {name}_hourly: whole days of the window."}, where=where)
    by_model = Rollup(
        f"{name}_by_model", LLM_REQUESTS, (PROVIDER, MODEL, ms), (REQUESTS,),
        {HOUR: f"{name}_hourly without users: {what} percentiles without a user or group filter.",
         DAY: f"Daily (UTC) twin of {name}_by_model_hourly: whole days of the window."},
        where=where, indexes=((_BY_VALUE, ("provider", "model", column, "bucket", "requests")),))
    bands = Rollup(
        f"{name}_bands", LLM_REQUESTS, (PROVIDER, MODEL, Key("band", f"floor(round({column}) / {BAND_MS})")),
        (REQUESTS,),
        {HOUR: f"Requests per hour, model and band of {BAND_MS} ms of {what}: where an unfiltered\n"
               f"percentile's rank falls, read exactly from {name}_by_model in that band alone.",
         DAY: f"Daily (UTC) twin of {name}_bands_hourly: whole days of the window."}, where=where)
    return full, by_model, bands


LLM_LATENCY, LLM_LATENCY_BY_MODEL, LLM_LATENCY_BANDS = _milliseconds("llm_latency", "latency_ms", "duration")
# The duration's P95 over every model (the unfiltered stat): its bands and milliseconds without
# the model, a sixth of the per-model rows to count and one index range to probe (the index holds
# the requests too: the probe reads the index alone, not a page of the table per row).
_LATENCY_MS = Key("latency_ms", "round(latency_ms)")
LLM_LATENCY_TOTALS = Rollup(
    "llm_latency_totals", LLM_REQUESTS, (_LATENCY_MS,), (REQUESTS,),
    {HOUR: "llm_latency_by_model_hourly without the model: the duration's percentiles over every model.",
     DAY: "Daily (UTC) twin of llm_latency_totals_hourly: whole days of the window."},
    where="latency_ms IS NOT NULL", indexes=((_BY_VALUE, ("latency_ms", "bucket", "requests")),))
LLM_LATENCY_TOTALS_BANDS = Rollup(
    "llm_latency_totals_bands", LLM_REQUESTS, (Key("band", f"floor(round(latency_ms) / {BAND_MS})"),), (REQUESTS,),
    {HOUR: f"llm_latency_bands_hourly without the model: where the rank of a percentile over every\n"
           f"model falls, read exactly from llm_latency_totals in that band alone.",
     DAY: "Daily (UTC) twin of llm_latency_totals_bands_hourly: whole days of the window."},
    where="latency_ms IS NOT NULL")
LLM_TTFT, LLM_TTFT_BY_MODEL, LLM_TTFT_BANDS = _milliseconds("llm_ttft", "ttft_ms", "time to first token")

# API errors: failed requests ('error') and retries given up ('retries_exhausted'), by status.
ERRORS = Measure("errors", "count(*)")
LLM_ERRORS = Raw("llm_errors", (ERRORS,), column=0)
STATUS = Key("status_code", type="integer")  # (KIND: the agents' enforcement's, above)
LLM_ERRORS_FULL = Rollup(
    "llm_errors", LLM_ERRORS, (SOURCE, USER, AGENT, PROVIDER, MODEL, KIND, STATUS, *ATTRIBUTION), (ERRORS,),
    {HOUR: "API errors per hour by user, agent, attribution, model, kind (error, retries_exhausted) and status."})
LLM_ERRORS_BY_USER = Rollup(
    "llm_errors_by_user", LLM_ERRORS, (USER, PROVIDER, MODEL, KIND, STATUS, *ATTRIBUTION), (ERRORS,),
    {DAY: "Daily (UTC) twin of llm_errors_hourly by user, attribution, model, kind and status: whole days."})
LLM_ERRORS_BY_MODEL = Rollup(
    "llm_errors_by_model", LLM_ERRORS, (PROVIDER, MODEL, KIND, STATUS), (ERRORS,),
    {HOUR: "llm_errors_hourly without users or agents: API errors without a user or group filter.",
     DAY: "Daily (UTC) twin of llm_errors_by_model_hourly."})
LLM_ERRORS_TOTALS = Rollup(
    "llm_errors_totals", LLM_ERRORS, (KIND,), (ERRORS,),
    {HOUR: "llm_errors_hourly by kind only: API errors and retries given up, and their series, without a\n"
           "filter (a few rows an hour where by model and status are tens).",
     DAY: "Daily (UTC) twin of llm_errors_totals_hourly."})

# ---- attribution -------------------------------------------------------------------------------

# The attribution dimensions (config.ATTRIBUTION, keys above): the rollups below add them to
# their table's fullest rollup, so that a filter or a top list on them has an aggregate to read,
# and to its totals (the rollups by attribution), so that a top list on them without a filter on
# who or what reads a few rows a bucket, not about as many as the raw table holds.


def _attributed(full: Rollup) -> Rollup:
    name = f"{full.name}_attributed"
    return Rollup(name, full.raw, (*full.keys, *ATTRIBUTION), full.measures,
                  {HOUR: f"{full.hourly.name} with the attribution dimensions (department, team, cost centre)\n"
                         "as keys: under an attribution or group filter, and the top lists by them.",
                   DAY: f"Daily (UTC) twin of {name}_hourly: whole days of the window."}, where=full.where)


TOOL_CALLS_ATTRIBUTED = _attributed(TOOL_CALLS_FULL)
LLM_USAGE_ATTRIBUTED = _attributed(LLM_USAGE_FULL)
LLM_METRIC_USAGE_ATTRIBUTED = _attributed(LLM_METRIC_USAGE_FULL)


def _by_attribution(totals: Rollup, *keys: Key) -> Rollup:
    """`totals` (a table's rollup without who or what) with the attribution dimensions and `keys`
    as keys: the panels by a dimension without a filter on who or what. The attributed rollups
    hold every key besides, and about as many rows as the raw table."""
    name = f"{totals.name.removesuffix('_totals')}_by_attribution"
    also = "".join(f" and {k.name}" for k in keys)
    return Rollup(name, totals.raw, (*keys, *totals.keys, *ATTRIBUTION), totals.measures,
                  {HOUR: f"{totals.hourly.name} by the attribution dimensions (department, team, cost centre){also}:\n"
                         "the panels by a dimension without a filter on who or what.",
                   DAY: f"Daily (UTC) twin of {name}_hourly: whole days of the window."}, where=totals.where)


# Executions by team; the cost by each dimension, and the spend of the agents that send
# productivity metrics (Value: `agent_id = ANY(...)`) by each, with what it bought.
TOOL_CALLS_BY_ATTRIBUTION = _by_attribution(TOOL_CALLS_TOTALS)
LLM_USAGE_BY_ATTRIBUTION = _by_attribution(LLM_USAGE_TOTALS, AGENT)
LLM_METRIC_USAGE_BY_ATTRIBUTION = _by_attribution(LLM_METRIC_USAGE_TOTALS, AGENT)
PRODUCTIVITY_BY_ATTRIBUTION = _by_attribution(PRODUCTIVITY_TOTALS)

# Every rollup declared above.
ROLLUPS: tuple[Rollup, ...] = tuple(v for v in tuple(globals().values()) if isinstance(v, Rollup))
# Every aggregate, by name.
AGGREGATES: dict[str, Aggregate] = dict(sorted(
    (a.name, a) for r in ROLLUPS for a in (r.at(w) for w in r.widths)))
# The per-minute twin of each hourly aggregate, by the hourly one's name.
MINUTELY: dict[str, str] = {r.hourly.name: r.minutely.name for r in ROLLUPS if r.minutely is not None}
