"""Budgets against their spend: each budget of the directory (ingest/budgets.py) with the cost
of its scope's LLM usage in its current UTC period (list price or reported cost, AA_COST_SOURCE,
request by request: the LLM Usage source, read from the aggregates), what of it could not be
priced, the previous period's spend to the same point, and the forecast (budget_forecast.py).

Evaluated as of the end of the query's time range (now, for a dashboard or an alert rule whose
range ends now), never later than now: a range ending last Tuesday shows the budgets as they
stood then.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any, Callable, Mapping

from psycopg import sql

from agent_analytics.datasource import budget_forecast as bf
from agent_analytics.datasource import catalog
from agent_analytics.datasource import timerange as tr
from agent_analytics.datasource.catalog import PERCENT, UNPRICED_COLUMNS, USD, Metric, col
from agent_analytics.datasource.query import Query
from agent_analytics.datasource.relations import ALL, LLM_USAGE, reads
from agent_analytics.datasource.result import Result, pct_change
from agent_analytics.datasource.sqltext import COST_SUM
from agent_analytics.datasource.timerange import Window
from agent_analytics.ingest.budgets import SCOPES

if TYPE_CHECKING:
    from agent_analytics.datasource.engine import Engine

# How a scope narrows the LLM usage: the data source's own filters (filters.py), so a group
# budget counts the group's members as they stand now, as the group filter does. A scope kind
# is one entry here and one in ingest/budgets.py SCOPES, which the directory accepts.
SCOPE_FILTERS: dict[str, Callable[[Mapping[str, Any]], dict[str, tuple[str, ...]]]] = {
    "organisation": lambda b: {},
    "user": lambda b: {"user": (b["target"],)},
    "group": lambda b: {"group": (b["target"],)},
    # An attribution dimension's own filter (filters.py declares one per dimension).
    "attribute": lambda b: {b["attribute"]: (b["target"],)},
}
if tuple(SCOPE_FILTERS) != SCOPES:
    raise ValueError("the directory must accept exactly the budget scopes measured here")

_BUDGETS = ("SELECT b.id, b.name, b.scope, b.attribute, b.target, b.period, b.amount_usd::float8 AS amount_usd,"
            " b.owner, CASE b.scope WHEN 'user' THEN coalesce(u.display_name, u.email, b.target)"
            " WHEN 'group' THEN coalesce(g.name, b.target) WHEN 'organisation' THEN 'Organisation'"
            " ELSE b.attribute || '=' || b.target END AS scope_name"
            " FROM budgets b LEFT JOIN users u ON b.scope = 'user' AND u.id = b.target"
            " LEFT JOIN groups g ON b.scope = 'group' AND g.id = b.target ORDER BY b.id")
_DAILY = (f"SELECT (date_trunc('day', time, 'UTC') AT TIME ZONE 'UTC')::date AS day, {COST_SUM}::float8 AS cost,"
          " coalesce(sum(unpriced_tokens), 0)::float8 AS unpriced_tokens FROM src GROUP BY 1")
_TOTAL = f"SELECT {COST_SUM}::float8 AS cost FROM src"
_FIRST = "SELECT (min(time) AT TIME ZONE 'UTC')::date AS day FROM src"
# Where the search for the first day with usage begins: before any agent sent telemetry.
_HISTORY = datetime(2000, 1, 3, tzinfo=bf.UTC)


def _cost(e: Engine, q: Query, metric_id: str, window: Window, filters: dict[str, tuple[str, ...]],
          body: str) -> list[dict[str, Any]]:
    """`body` over the LLM usage of `window` under `filters`, read as the metric `metric_id`
    reads it (which aggregates may answer: a day's sums by hour, a total by day too)."""
    if window.end <= window.start:
        window = Window(window.start, window.start)
    asked = replace(q, metric=catalog.BY_ID[metric_id], window=window, filters=filters)
    read = asked.metric.dataset_reads
    return e.with_src(e._src(read.dataset, window, asked, read.rows), body)


def first_day(e: Engine, q: Query, filters: dict[str, tuple[str, ...]], as_of: datetime) -> date | None:
    """The first UTC day before `as_of`'s with LLM usage under `filters` (priced or not), or None;
    read as Total cost reads it, whole days from the daily aggregate."""
    return _cost(e, q, "llm_total_cost", Window(_HISTORY, bf.rate_window(as_of, None)[1]), filters,
                 _FIRST)[0]["day"]


def measure(e: Engine, q: Query, budget: Mapping[str, Any], as_of: datetime,
            data_since: date | None) -> dict[str, Any]:
    """One budget's row: its spend to date, the previous period's to the same point, the forecast.
    `data_since`: the installation's first day with usage (None: none before `as_of`'s day); a
    previous period that began before it is unknown (None), not $0."""
    filters = SCOPE_FILTERS[budget["scope"]](budget)
    start, end = bf.period_bounds(budget["period"], as_of)
    prev_start, prev_point = bf.previous_point(budget["period"], start, as_of)
    first = first_day(e, q, filters, as_of)
    rate_start, _ = bf.rate_window(as_of, first)
    days = _cost(e, q, "llm_cost_over_time", Window(min(start, rate_start), as_of), filters, _DAILY)
    daily: dict[date, float | None] = {r["day"]: r["cost"] for r in days}
    unpriced = sum(r["unpriced_tokens"] for r in days if r["day"] >= start.date())
    previous = None
    if data_since is not None and data_since <= prev_start.date():
        previous = _cost(e, q, "llm_total_cost", Window(prev_start, prev_point), filters, _TOTAL)[0]["cost"]
    o = bf.outlook(budget["amount_usd"], budget["period"], as_of, daily, first)
    return {
        "budget": budget["id"], "name": budget["name"], "scope": budget["scope"], "scope_name": budget["scope_name"],
        "owner": budget["owner"], "period": budget["period"], "period_start": tr.to_ms(start),
        "period_end": tr.to_ms(end), "amount": budget["amount_usd"], "spend": o.spend, "spend_pct": o.spend_pct,
        "unpriced_tokens": unpriced, "unpriced": unpriced > 0, "previous_spend": previous,
        "change_pct": pct_change(o.spend, previous), "daily_rate": o.daily_rate, "forecast": o.forecast,
        "forecast_pct": o.forecast_pct,
        "reached_on": None if o.reached_on is None else tr.to_ms(datetime.combine(o.reached_on, time(), bf.UTC)),
        "forecast_date": None if o.forecast_date is None else tr.to_ms(o.forecast_date),
        "outlook": o.outlook, "method": bf.METHOD,
    }


def budgets(e: Engine, q: Query) -> Result:
    """Every budget, as of the end of the query's range (at the latest now)."""
    as_of = min(q.window.end, datetime.now(bf.UTC))
    e._note("budgets")
    rows = e.fetch(sql.SQL(_BUDGETS), [])
    data_since = first_day(e, q, {}, as_of)
    measured = [measure(e, q, b, as_of, data_since) for b in rows if b["scope"] in SCOPE_FILTERS]
    return Result(measured[q.offset:q.offset + q.limit], total=len(measured), meta={"as_of": tr.to_ms(as_of)})


METRIC = Metric(
    "llm_budgets", "llm", "table", "Budgets", USD,
    (col("budget", title="Budget id"), col("name", title="Budget"), col("scope", title="Scope"),
     col("scope_name", title="For"), col("owner", title="Owner"), col("period", title="Period"),
     col("period_start", "time", None, "Period start"), col("period_end", "time", None, "Period end"),
     col("amount", "number", USD, "Amount"), col("spend", "number", USD, "Spend to date"),
     col("spend_pct", "number", PERCENT, "Spent"), *UNPRICED_COLUMNS,
     col("previous_spend", "number", USD, "Previous period, same point"),
     col("change_pct", "number", PERCENT, "Change"), col("daily_rate", "number", USD, "Daily rate"),
     col("forecast", "number", USD, "Forecast at period end"), col("forecast_pct", "number", PERCENT, "Forecast"),
     col("reached_on", "time", None, "Reached on"), col("forecast_date", "time", None, "Forecast to reach"),
     col("outlook", title="Outlook"), col("method", title="Forecast method")), (),
    "Every budget (directory) with its scope's LLM cost in its current UTC period as of the end of the range "
    "(at the latest now): spend to date (null when none of it could be priced; unpriced_tokens: what it could "
    "not price), the previous period's spend to the same point (null when the installation's data begins "
    "after that period's start), the daily rate (mean of the last 7 complete UTC days, or of those since the "
    "scope's first day with usage; null before one), the forecast at the period's end (spend + rate x days "
    "left; null when spend or rate is) and the date the amount is forecast to be reached (null when the rate "
    "is 0 or unknown or it falls after the period). docs/budgets.md.",
    # Each budget is read as Cost over time reads it (by day) and as Total cost (the previous period).
    build=budgets, reads=reads(LLM_USAGE, ALL, ("user_id",), time=True))
