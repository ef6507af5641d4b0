"""The rollups of llm_requests (the agents' request events): usage and cost, sessions, who made
the requests and how, and their durations and times to first token to the millisecond."""
from __future__ import annotations

from agent_analytics.sql.rollup_shapes import DAY, HOUR, FilteredSum, Key, Measure, Raw, Rollup

from .keys import AGENT, AGENT_NAME, ATTRIBUTION, EFFORT, MODEL, PROVIDER, QUERY_SOURCE, SESSION, SOURCE, USER

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
COUNTED = Key("counted")
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

# ---- who made the requests and how -------------------------------------------------------------

# The request's speed, where the agent says (migration 0013; its metric points carry none).
SPEED = Key("speed")
LLM_USAGE_BY_ORIGIN = Rollup(
    "llm_usage_by_origin", LLM_REQUESTS, (USER, PROVIDER, MODEL, QUERY_SOURCE, AGENT_NAME, EFFORT, SPEED, COUNTED,
                                             *ATTRIBUTION),
    _USAGE,
    {HOUR: "LLM requests per hour by who made them (main thread or subagent, and which) and how (effort,\n"
           "speed), with the LLM filters' columns (attribution too): where the tokens and the money go.",
     DAY: "Daily (UTC) twin of llm_usage_by_origin_hourly: whole days of the window."})
# Without user and attribution: what unfiltered (or model-filtered) cost by subagent, effort and
# speed read; the keyed rollup holds about a row per user and team for each.
LLM_USAGE_BY_ORIGIN_TOTALS = Rollup(
    "llm_usage_by_origin_totals", LLM_REQUESTS, (PROVIDER, MODEL, QUERY_SOURCE, AGENT_NAME, EFFORT, SPEED, COUNTED),
    _USAGE,
    {HOUR: "llm_usage_by_origin_hourly without users or attribution: where the tokens and the money go\n"
           "without a filter on who.",
     DAY: "Daily (UTC) twin of llm_usage_by_origin_totals_hourly: whole days of the window."})
LLM_SESSION_AGENTS = Rollup(
    "llm_session_agents", LLM_REQUESTS, (SESSION, USER, PROVIDER, MODEL, QUERY_SOURCE, AGENT_NAME, COUNTED), _USAGE,
    {HOUR: "LLM requests per hour, session, main thread or subagent: a session's subagents (the drawer).",
     DAY: "Daily (UTC) twin of llm_session_agents_hourly: whole days of the window."})

# ---- durations and times to first token --------------------------------------------------------

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
