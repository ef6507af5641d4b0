"""The rollups that add the attribution dimensions to other rollups of their raw table."""
from __future__ import annotations

from agent_analytics.sql.rollup_shapes import DAY, HOUR, Key, Rollup

from .keys import AGENT, ATTRIBUTION
from .llm_requests import LLM_USAGE_FULL, LLM_USAGE_TOTALS
from .metric_points import LLM_METRIC_USAGE_FULL, LLM_METRIC_USAGE_TOTALS
from .productivity_points import PRODUCTIVITY_TOTALS
from .tool_calls import TOOL_CALLS_FULL, TOOL_CALLS_TOTALS

# The attribution dimensions (config.ATTRIBUTION, keys.py): the rollups below add them to
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
