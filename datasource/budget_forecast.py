"""A budget's period and its forecast, as pure arithmetic on the spend the engine measured
(datasource/budgets.py measures it). Periods are UTC: a day from 00:00 UTC, an ISO week from
Monday 00:00 UTC, a calendar month from the 1st 00:00 UTC. One time zone for every budget, because
the aggregates' daily buckets are UTC days and a budget shared by people in several time zones
has no local midnight of its own.

The forecast: the daily rate is the mean cost of the complete UTC days before the moment of
evaluation since the scope's first day with usage, at most the last RATE_DAYS (days without usage
among them count as 0, days before the period began count too; days before the scope's first usage
are no history, not $0). Before the scope has one complete day of usage the rate is unknown, and so
are the forecast and its date. The spend forecast at the period's end is the spend to date + rate x
the days (fractional) left in the period. The date the budget is forecast to be reached is when
spend to date + rate x elapsed days reaches the amount, if that is before the period ends; with a
rate of 0 there is no such date (null, never a made-up one).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Mapping

UTC = timezone.utc
DAY = timedelta(days=1)
RATE_DAYS = 7
METHOD = (f"rate = mean daily cost of the last {RATE_DAYS} complete UTC days, or of fewer: those since the "
          "scope's first day with usage (none complete yet: no rate, no forecast); forecast = spend to date + "
          "rate x days left in the period")
NO_RATE = "no complete UTC day of usage yet: no daily rate, no forecast"


def _midnight(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def period_bounds(period: str, t: datetime) -> tuple[datetime, datetime]:
    """The UTC period of kind `period` (day, week, month) holding the instant `t`: [start, end)."""
    day = _midnight(t)
    if period == "day":
        return day, day + DAY
    if period == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + 7 * DAY
    if period == "month":
        start = day.replace(day=1)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        return start, end
    raise ValueError(f"unknown period {period!r}")


def previous_point(period: str, start: datetime, as_of: datetime) -> tuple[datetime, datetime]:
    """The previous period's start and the point as far into it as `as_of` is into the current
    one (elapsed time, clamped to the previous period's end: a month may be shorter)."""
    prev_start, prev_end = period_bounds(period, start - timedelta(microseconds=1))
    return prev_start, min(prev_start + (as_of - start), prev_end)


def rate_window(as_of: datetime, first_day: date | None) -> tuple[datetime, datetime]:
    """The complete UTC days the daily rate is the mean of: [start, end), the last RATE_DAYS
    before `as_of`'s day, none before `first_day` (the scope's first day with usage; None: it has
    none). Empty (start == end) when no complete day of usage precedes `as_of`."""
    end = _midnight(as_of)
    start = end - RATE_DAYS * DAY
    if first_day is None:
        return end, end
    first = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC)
    return min(max(start, first), end), end


@dataclass(frozen=True)
class Outlook:
    spend: float | None           # cost in the period to date; None: usage, none of it priced
    spend_pct: float | None
    daily_rate: float | None      # USD per day; None: no complete day of usage yet
    forecast: float | None        # spend forecast at the period's end; None: spend or rate unknown
    forecast_pct: float | None
    reached_on: date | None       # the UTC day the spend to date crossed the amount
    forecast_date: datetime | None  # when the amount is forecast to be reached, within the period
    outlook: str                  # the same in words


def outlook(amount: float, period: str, as_of: datetime, daily: Mapping[date, float | None],
            first_day: date | None) -> Outlook:
    """The outlook of a budget of `amount` USD per `period` at `as_of`, from the cost of each UTC
    day (`daily`: the day's cost, None when it had usage but none priced; days absent had no usage),
    the day of `as_of` counted up to `as_of`, and the scope's first day with usage (`first_day`,
    None when it has none)."""
    start, end = period_bounds(period, as_of)
    in_period = [(d, c) for d, c in sorted(daily.items()) if start.date() <= d <= as_of.date()]
    priced = [c for _, c in in_period if c is not None]
    spend = sum(priced) if priced or all(c is not None for _, c in in_period) else None
    r0, r1 = rate_window(as_of, first_day)
    rate_days = (r1 - r0).days
    rate = (sum(c or 0.0 for d, c in daily.items() if r0.date() <= d < r1.date()) / rate_days
            if rate_days else None)
    left_days = (end - as_of) / DAY
    reached_on = None
    running = 0.0
    for d, c in in_period:
        running += c or 0.0
        if running >= amount:
            reached_on = d
            break
    if spend is None:
        return Outlook(None, None, rate, None, None, None, None,
                       "unknown: the period's usage has no known price")
    forecast = None if rate is None else spend + rate * left_days
    forecast_date = None
    if reached_on is not None:
        words = f"reached on {reached_on.isoformat()}"
    elif rate is None:
        words = NO_RATE
    elif rate <= 0:
        words = f"no cost in the last {rate_days} complete day{'s' if rate_days > 1 else ''}: no date forecast"
    else:
        at = as_of + (amount - spend) / rate * DAY
        if at < end:
            forecast_date = at
            words = f"forecast to be reached on {at.strftime('%Y-%m-%d %H:%M')} UTC"
        else:
            words = "not forecast to be reached this period"
    return Outlook(spend, spend / amount * 100.0, rate, forecast,
                   None if forecast is None else forecast / amount * 100.0, reached_on, forecast_date, words)
