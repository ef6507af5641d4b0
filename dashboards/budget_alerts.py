"""The budgets' alert rules (one group): 80 % and 100 % of a budget reached, its forecast above it,
and a cost surge against the previous period. Each reads the llm_budgets table through Infinity:
one row per budget, its string columns (the budget's id and name and its owner, never null)
becoming the alert instance's labels, so each budget fires on its own and every notification
names the budget, its owner and its spend (docs/budgets.md)."""
from __future__ import annotations

from typing import Any

from agent_analytics.datasource import catalog

from .alerts import INFINITY_TYPE, INFINITY_UID, _last, _query_url, infinity_model, rule

METRIC = "llm_budgets"
WARN_PCT = 80       # "80 % reached": from this share of the amount up to, not including, 100 %
FULL_PCT = 100      # "100 % reached"
# A surge: spend to date at least this many times the previous period's to the same point...
SURGE_RATIO = 1.5
# ...and at least this share of the budget (early in a period a few dollars are not a surge).
SURGE_MIN_PCT = 25
# The string columns read as labels, by the label each becomes.
LABELS = {"budget": "budget", "budget_name": "name", "owner": "owner"}


def _budget_query(ref_id: str, column: str) -> dict[str, Any]:
    """The budgets with one numeric column: server-side expressions read it as one number per
    budget, labelled by the string columns (label = the column's text)."""
    m = catalog.BY_ID[METRIC]
    model = infinity_model(m, ref_id, {"type": INFINITY_TYPE, "uid": INFINITY_UID}, _query_url(METRIC))
    model["columns"] = ([{"selector": col, "text": label, "type": "string"} for label, col in LABELS.items()]
                        + [{"selector": column, "text": column, "type": "number"}])
    return {"refId": ref_id, "relativeTimeRange": {"from": 3600, "to": 0},
            "datasourceUid": INFINITY_UID, "model": model}


def _rule(uid: str, title: str, figures: dict[str, str], condition: str, severity: str, summary: str,
          description: str, llm: dict[str, Any], pending: str) -> dict[str, Any]:
    """A rule over `figures` (refId of its last value -> column; each queried as refId + "_q"),
    firing where the math `condition` over them holds. No budget, or one whose spend is unknown
    (nothing priced): no instance, not an alert."""
    inputs = [_budget_query(f"{ref}_q", column) for ref, column in figures.items()]
    inputs += [_last(ref, f"{ref}_q") for ref in figures]
    return rule(uid, title, inputs, ("FIRES", condition), "ALERT", severity=severity, pending=pending,
                summary=summary, description=description, dashboard=llm, metric_id=METRIC,
                runbook="docs/budgets.md#alerts")


_WHO = ('Budget {{ $labels.budget_name }} ({{ $labels.budget }}), owner {{ $labels.owner }}: '
        'spend to date {{ printf "%.2f" $values.SPEND.Value }} USD')


def budget_rules(llm: dict[str, Any]) -> list[dict[str, Any]]:
    """The rules, linked to the Budgets panel of the generated Infinity LLM Usage dashboard `llm`."""
    return [
        _rule("aa-budget-80", f"Budget {WARN_PCT} % reached",
              {"PCT": "spend_pct", "SPEND": "spend"}, f"$PCT >= {WARN_PCT} && $PCT < {FULL_PCT}", "warning",
              f"{_WHO}, {{{{ printf \"%.0f\" $values.PCT.Value }}}} % of the budget.",
              "At least 80 % of the budget is spent this period. Open LLM Usage, Budgets, for the forecast.",
              llm, "0s"),
        _rule("aa-budget-100", f"Budget {FULL_PCT} % reached",
              {"PCT": "spend_pct", "SPEND": "spend"}, f"$PCT >= {FULL_PCT}", "critical",
              f"{_WHO}, {{{{ printf \"%.0f\" $values.PCT.Value }}}} % of the budget.",
              "The budget is spent for this period. Open LLM Usage, Budgets.", llm, "0s"),
        _rule("aa-budget-forecast", "Budget forecast above the budget",
              {"FORECAST": "forecast_pct", "PCT": "spend_pct", "SPEND": "spend"},
              f"$FORECAST > {FULL_PCT} && $PCT < {FULL_PCT}", "warning",
              f"{_WHO}; forecast at the period's end {{{{ printf \"%.0f\" $values.FORECAST.Value }}}} % "
              "of the budget.",
              "At the mean daily cost of the last 7 complete UTC days (fewer for a scope whose usage began "
              "less than 7 days ago) the budget will be exceeded before the period ends. Open LLM Usage, "
              "Budgets, for the date.", llm, "15m"),
        _rule("aa-budget-surge", "Budget cost surge",
              {"SPEND": "spend", "PREVIOUS": "previous_spend", "PCT": "spend_pct"},
              # A previous period with no spend is no baseline (a new budget, user or installation).
              f"$PREVIOUS > 0 && $SPEND >= {SURGE_RATIO} * $PREVIOUS && $PCT >= {SURGE_MIN_PCT}", "warning",
              f"{_WHO}, at least {SURGE_RATIO}x the previous period's "
              "{{ printf \"%.2f\" $values.PREVIOUS.Value }} USD at the same point.",
              f"Spend surged against the previous period (and is at least {SURGE_MIN_PCT} % of the budget). "
              "Open LLM Usage: top users and models by cost.", llm, "15m"),
    ]
