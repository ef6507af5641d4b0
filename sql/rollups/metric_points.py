"""The rollups of metric_points (the usage and cost agents send as metrics): usage and cost, the
sessions' totals, and who made the requests."""
from __future__ import annotations

from agent_analytics.sql.rollup_shapes import DAY, HOUR, FilteredSum, Measure, Raw, Rollup

from .keys import AGENT, AGENT_NAME, ATTRIBUTION, EFFORT, MODEL, PROVIDER, QUERY_SOURCE, SESSION, SOURCE, USER

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

# ---- who made the requests and how -------------------------------------------------------------

LLM_METRIC_USAGE_BY_ORIGIN = Rollup(
    "llm_metric_usage_by_origin", METRIC_POINTS, (USER, PROVIDER, MODEL, QUERY_SOURCE, AGENT_NAME, EFFORT,
                                                   *ATTRIBUTION),
    _METRIC_USAGE,
    {HOUR: "Metric points of sessions per hour by main thread or subagent, subagent and effort (Claude\n"
           "Code's token.usage and cost.usage carry them), and attribution: what counts instead of events.",
     DAY: "Daily (UTC) twin of llm_metric_usage_by_origin_hourly: whole days of the window."},
    where=IN_SESSION)
# Without user and attribution: what unfiltered (or model-filtered) cost by subagent and effort
# reads; the keyed rollup holds about a row per user and team for each.
LLM_METRIC_USAGE_BY_ORIGIN_TOTALS = Rollup(
    "llm_metric_usage_by_origin_totals", METRIC_POINTS, (PROVIDER, MODEL, QUERY_SOURCE, AGENT_NAME, EFFORT),
    _METRIC_USAGE,
    {HOUR: "llm_metric_usage_by_origin_hourly without users or attribution: sessions' metric points by\n"
           "main thread or subagent and effort without a filter on who.",
     DAY: "Daily (UTC) twin of llm_metric_usage_by_origin_totals_hourly: whole days of the window."},
    where=IN_SESSION)
SESSION_METRIC_AGENTS = Rollup(
    "session_metric_agents", METRIC_POINTS, (SESSION, USER, PROVIDER, MODEL, QUERY_SOURCE, AGENT_NAME),
    _METRIC_USAGE,
    {HOUR: "Metric points per hour, session, main thread or subagent: a session's subagents (the drawer).",
     DAY: "Daily (UTC) twin of session_metric_agents_hourly: whole days of the window."})
