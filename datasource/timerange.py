"""Time: resolving range expressions, bucket size, bucket starts, and the previous-period window.

- Bucket size: hourly for spans up to two days, daily beyond; daily buckets start at local midnight
  in the viewer's zone, hourly ones at the local top of the hour.
- Previous period: for a period-to-date range (Grafana's raw `now/d`, `now/w`, `now/M`, `now/Q`,
  `now/y` up to `now`) the same elapsed part of the previous calendar period; otherwise (rolling,
  custom) the window of the same length just before. It never overlaps the current window.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

UTC = timezone.utc
TWO_DAYS = timedelta(days=2)
PERIOD_UNITS = ("d", "w", "M", "Q", "y")

_RELATIVE = re.compile(r"^now(?P<shifts>(?:[+-]\d+[smhdwMQy])*)(?:/(?P<round>[smhdwMQy]))?$")
_SHIFT = re.compile(r"([+-])(\d+)([smhdwMQy])")
_PTD = re.compile(r"^now/([dwMQy])$")


class TimeRangeError(ValueError):
    pass


@dataclass(frozen=True)
class Window:
    start: datetime  # inclusive, UTC
    end: datetime    # exclusive, UTC

    @property
    def length(self) -> timedelta:
        return self.end - self.start


def _add_months(local: datetime, months: int) -> datetime:
    y, m = divmod(local.month - 1 + months, 12)
    year, month = local.year + y, m + 1
    # Clamp the day (31 Jan - 1 month = 28/29 Feb).
    for day in range(local.day, 27, -1):
        try:
            return local.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    return local.replace(year=year, month=month, day=min(local.day, 28))


def _shift_local(local: datetime, n: int, unit: str) -> datetime:
    """Calendar arithmetic on local wall time (naive), as Grafana does it."""
    if unit == "s":
        return local + timedelta(seconds=n)
    if unit == "m":
        return local + timedelta(minutes=n)
    if unit == "h":
        return local + timedelta(hours=n)
    if unit == "d":
        return local + timedelta(days=n)
    if unit == "w":
        return local + timedelta(weeks=n)
    if unit == "M":
        return _add_months(local, n)
    if unit == "Q":
        return _add_months(local, 3 * n)
    return _add_months(local, 12 * n)


def _round_local(local: datetime, unit: str) -> datetime:
    """Start of the calendar unit containing `local` (weeks start on Monday)."""
    if unit == "s":
        return local.replace(microsecond=0)
    if unit == "m":
        return local.replace(second=0, microsecond=0)
    if unit == "h":
        return local.replace(minute=0, second=0, microsecond=0)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "d":
        return day
    if unit == "w":
        return day - timedelta(days=day.weekday())
    if unit == "M":
        return day.replace(day=1)
    if unit == "Q":
        return day.replace(day=1, month=3 * ((day.month - 1) // 3) + 1)
    return day.replace(day=1, month=1)


def _localize(naive: datetime, tz: ZoneInfo) -> datetime:
    return naive.replace(tzinfo=tz).astimezone(UTC)


def resolve(expr: str | int | float, now: datetime, tz: ZoneInfo, round_up: bool = False) -> datetime:
    """An instant from epoch milliseconds, an ISO 8601 string, or a Grafana relative expression
    such as `now`, `now-7d`, `now/M`, `now-1d/d` (rounded in `tz`; with round_up, as Grafana does
    for the end of a range, to the end of the unit: now/M as `to` is the start of next month)."""
    if isinstance(expr, (int, float)) and not isinstance(expr, bool):
        return datetime.fromtimestamp(expr / 1000, UTC)
    text = str(expr).strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return datetime.fromtimestamp(float(text) / 1000, UTC)
    m = _RELATIVE.match(text)
    if m:
        cur = now.astimezone(UTC)
        for sign, n, unit in _SHIFT.findall(m.group("shifts") or ""):
            k = int(n) * (1 if sign == "+" else -1)
            if unit in "smh":  # absolute durations
                cur += timedelta(seconds=k * {"s": 1, "m": 60, "h": 3600}[unit])
            else:  # calendar units: local wall time
                cur = _localize(_shift_local(cur.astimezone(tz).replace(tzinfo=None), k, unit), tz)
        if m.group("round"):
            unit = m.group("round")
            local = _round_local(cur.astimezone(tz).replace(tzinfo=None), unit)
            if round_up:
                local = _round_local(_shift_local(local, 1, unit), unit) if unit in "dwMQy" else (
                    local + timedelta(seconds={"s": 1, "m": 60, "h": 3600}[unit]))
            cur = _localize(local, tz)
        return cur
    # An unencoded "+01:00" offset in a URL arrives as " 01:00".
    text = re.sub(r"(T[\d:.]+) (\d{2}:?\d{2})$", r"\1+\2", text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise TimeRangeError(f"not epoch milliseconds, ISO 8601 or a relative time like now-7d: {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


def period_to_date_unit(raw_from: str | None, raw_to: str | None) -> str | None:
    """`M` for a range like now/M .. now (This month so far), else None."""
    if not raw_from or not isinstance(raw_from, str):
        return None
    m = _PTD.match(raw_from.strip())
    if m and (raw_to is None or str(raw_to).strip() == "now"):
        return m.group(1)
    return None


_WHOLE = re.compile(r"^now(-\d+[dwMQy])?/([dwMQy])$")


def whole_period_unit(raw_from: str | None, raw_to: str | None) -> str | None:
    """`M` for a whole calendar period such as now/M .. now/M (this month) or now-1M/M .. now-1M/M
    (last month): its previous period is the whole calendar period before it."""
    if not isinstance(raw_from, str) or not isinstance(raw_to, str):
        return None
    m = _WHOLE.match(raw_from.strip())
    if m and raw_to.strip() == raw_from.strip():
        return m.group(2)
    return None


def calendar_range_fits(window: Window, tz: ZoneInfo, unit: str, whole: bool) -> bool:
    """Whether `window` is what a period-to-date range of `unit` (whole=False: from a period's
    start, within it) or a whole calendar period (whole=True) resolves to in `tz`: a raw range is
    only trusted for the previous period when it describes the window it came with."""
    local = window.start.astimezone(tz).replace(tzinfo=None)
    if _round_local(local, unit) != local:
        return False
    period_end = _localize(_shift_local(local, 1, unit), tz)
    if whole:
        # Grafana ends a rounded-up period at its last millisecond; the service at the next start.
        return period_end - timedelta(seconds=1) <= window.end <= period_end
    return window.end <= period_end


def previous_window(current: Window, tz: ZoneInfo, ptd_unit: str | None = None,
                    whole_unit: str | None = None) -> Window:
    if whole_unit:
        local_start = current.start.astimezone(tz).replace(tzinfo=None)
        return Window(_localize(_shift_local(local_start, -1, whole_unit), tz), current.start)
    if ptd_unit:
        local_start = current.start.astimezone(tz).replace(tzinfo=None)
        prev_start = _localize(_shift_local(local_start, -1, ptd_unit), tz)
        # The same elapsed part of the previous period, never reaching into the current one.
        prev_end = min(prev_start + current.length, current.start)
        return Window(prev_start, prev_end)
    return Window(current.start - current.length, current.start)


def bucket_unit(window: Window) -> str:
    """'hour' for spans up to two days, else 'day'."""
    return "hour" if window.length <= TWO_DAYS else "day"


def bucket_starts(window: Window, unit: str, tz: ZoneInfo) -> list[datetime]:
    """Every bucket that overlaps the window, in order (the first may start before it)."""
    out: list[datetime] = []
    if window.end <= window.start:
        return out
    if unit == "hour":
        local = window.start.astimezone(tz)
        t = window.start - timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)
        while t < window.end:
            out.append(t)
            t += timedelta(hours=1)
        return out
    d: date = window.start.astimezone(tz).date()
    while True:
        t = datetime.combine(d, time(0), tzinfo=tz).astimezone(UTC)
        if t >= window.end:
            return out
        out.append(t)
        d += timedelta(days=1)


# Points in one series (each also carries the previous period's value): daily buckets over about
# five and a half years. Hourly buckets (ranges up to two days) never come near it.
MAX_SERIES_POINTS = 2_000


def series_points(window: Window, unit: str, tz: ZoneInfo) -> int:
    """How many buckets of `unit` a series over `window` has; past MAX_SERIES_POINTS + 2, a
    figure above the bound without listing them (a range may span 100 years)."""
    step = timedelta(hours=1) if unit == "hour" else timedelta(days=1)
    if window.length > step * (MAX_SERIES_POINTS + 2):
        return int(window.length / step)
    return len(bucket_starts(window, unit, tz))


def whole_hour_offsets(tz: ZoneInfo, window: Window) -> bool:
    """True when the zone's UTC offset is a whole number of hours throughout the window, so that
    local hours and days are unions of UTC hours (and hourly aggregates can answer exactly)."""
    t = window.start - timedelta(days=1)
    while True:
        off = t.astimezone(tz).utcoffset() or timedelta(0)
        if off.total_seconds() % 3600:
            return False
        if t >= window.end:
            return True
        t = min(t + timedelta(hours=12), window.end)


def to_ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)
