"""The demo's budgets, sized against the demo's own spending (each request at its list price, as
the receiver prices it: ingest/pricing.py) as of the plan's hour, so that the Budgets panel shows
each state whatever the day: the organisation's month forecast above its budget with a date to
reach it, the group that spent most this week past its budget, the others with room, a team's
month (an attribute budget), and one person's day. At the very start of a period nothing is spent yet, and nothing can be reached."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

from agent_analytics.datasource.budget_forecast import DAY, UTC, period_bounds, rate_window
from agent_analytics.ingest import pricing

DOMAIN = "example.com"
PROVIDERS = {"claude-code": "anthropic", "codex": "openai"}
# The team of the demo's attribute budget (demo_plan: every fifth user's machines say team.id=sre).
ATTRIBUTED_TEAM = "sre"


def _costs(sessions: Iterable[Any]) -> list[tuple[datetime, Any, float]]:
    """(time, user, list price) of every request the plan sends; unpriced ones count as 0."""
    out = []
    for s in sessions:
        for r in s.requests:
            price = pricing.estimate(PROVIDERS[s.agent], r.model, r.input_tokens, r.output_tokens,
                                     r.cache_read_tokens, r.cache_write_tokens, int(r.time.timestamp() * 1e9))
            out.append((r.time, s.user, float(price or 0)))
    return out


def _figures(costs: list[tuple[datetime, Any, float]], who: Callable[[Any], bool], period: str,
             now: datetime) -> tuple[float, float, float]:
    """Spend to date, daily rate and days left, as the service computes them (budget_forecast)."""
    start, end = period_bounds(period, now)
    first = min((t.astimezone(UTC).date() for t, u, c in costs if who(u)), default=None)
    r0, r1 = rate_window(now, first)
    spend = sum(c for t, u, c in costs if who(u) and start <= t < now)
    # No complete day of usage: the service shows no rate; the amounts are then sized on spend alone.
    rate = sum(c for t, u, c in costs if who(u) and r0 <= t < r1) / (r1 - r0).days if r1 > r0 else 0.0
    return spend, rate, (end - now) / DAY


def _cents(usd: float) -> float:
    return max(0.01, round(usd, 2))


def budgets(people: list[Any], groups: dict[str, str], sessions: list[Any], now: datetime) -> list[dict[str, Any]]:
    costs = _costs(sessions)
    spend, rate, left = _figures(costs, lambda u: True, "month", now)
    out = [{"id": "org-monthly", "name": "Organisation, monthly", "scope": "organisation", "period": "month",
            # Three quarters of what the month is on course to add: forecast above, reached before the end.
            "amount_usd": _cents(spend + 0.75 * rate * left), "owner": f"finance@{DOMAIN}"}]
    def member(g: str) -> Callable[[Any], bool]:
        return lambda u: bool(u.group == g)

    weekly = {g: _figures(costs, member(g), "week", now) for g in groups}
    top = max(weekly, key=lambda g: weekly[g][0])
    for g, name in groups.items():
        spend, rate, left = weekly[g]
        period = "week"
        if g == top and spend == 0:  # Monday's first hour: the month has spend, the week none yet
            period, (spend, rate, left) = "month", _figures(costs, member(g), "month", now)
        # The top spender's budget is 80 % of its spend so far (reached); the others twice the forecast.
        amount = 0.8 * spend if g == top and spend > 0 else 2 * (spend + rate * left) + 1
        out.append({"id": f"{g}-{period}ly", "name": f"{name}, {period}ly", "scope": "group", "target": g,
                    "period": period, "amount_usd": _cents(amount), "owner": f"{g}-lead@{DOMAIN}"})
    # A team's month, by the team.id its machines send (an attribute budget), with room.
    spend, rate, left = _figures(costs, lambda u: u.resource.get("team.id") == ATTRIBUTED_TEAM, "month", now)
    out.append({"id": f"team-{ATTRIBUTED_TEAM}-monthly", "name": f"Team {ATTRIBUTED_TEAM}, monthly",
                "scope": "attribute", "attribute": "team", "target": ATTRIBUTED_TEAM, "period": "month",
                "amount_usd": _cents(2 * (spend + rate * left) + 1), "owner": f"{ATTRIBUTED_TEAM}-lead@{DOMAIN}"})
    first = people[0]
    spend, rate, left = _figures(costs, lambda u: u.id == first.id, "day", now)
    out.append({"id": f"{first.id.split('@')[0]}-daily", "name": f"{first.name}, daily", "scope": "user",
                "target": first.id, "period": "day", "amount_usd": _cents(max(2.0, 1.5 * rate)), "owner": first.id})
    return out
