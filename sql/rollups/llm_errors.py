"""The rollups of llm_errors: the API errors the agents report (LLM Health)."""
from __future__ import annotations

from agent_analytics.sql.rollup_shapes import DAY, HOUR, Key, Measure, Raw, Rollup

from .keys import AGENT, ATTRIBUTION, KIND, MODEL, PROVIDER, SOURCE, USER

# API errors: failed requests ('error') and retries given up ('retries_exhausted'), by status.
ERRORS = Measure("errors", "count(*)")
LLM_ERRORS = Raw("llm_errors", (ERRORS,), column=0)
STATUS = Key("status_code", type="integer")
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
