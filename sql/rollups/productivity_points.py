"""The rollups of productivity_points (migration 0015): what the spend bought (Value)."""
from __future__ import annotations

from agent_analytics.sql.rollup_shapes import DAY, HOUR, FilteredSum, Key, Raw, Rollup

from .keys import AGENT, ATTRIBUTION, MODEL, SOURCE, USER

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
