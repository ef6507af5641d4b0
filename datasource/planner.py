"""The planning stage: which relations a question reads, over which time ranges. Pure (no
database): given a window, the zone the buckets are drawn in and what the metric needs, it answers
the ranges to read, each from one relation.

Whole UTC hours inside the window are read from the hourly aggregate (or the smallest rollup that
holds what the metric needs: relations.choose_aggregate); whole UTC days among them from its daily
twin when the metric does not look at the time; the whole minutes of the partial hours at either
edge from its per-minute twin, and the partial minutes from the raw table (so a range like
now-24h is exact, and reads at most two minutes of raw rows however fast they arrive). Hours
(and days) that ended less than SETTLE before `now` are read by minute too: the refresh may not
have materialised them yet, and an aggregate groups the raw rows of what it has not (a whole
hour's, or day's, at every query). When buckets in the viewer's zone do not fall on UTC
hours (a half-hour zone such as Asia/Kolkata), or the question needs finer than hourly time (a
session's activity), everything comes from the raw table. Every relation projects the same
columns, so one query fits any plan.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import NamedTuple, Sequence
from zoneinfo import ZoneInfo

from agent_analytics.datasource import timerange as tr
from agent_analytics.datasource.relations import Condition, Dataset, Reads, choose_aggregate
from agent_analytics.datasource.timerange import Window
from agent_analytics.sql.rollups import MINUTELY

EPOCH_ORIGIN = datetime(2000, 1, 3, tzinfo=tr.UTC)  # time_bucket's default origin (a Monday)
SESSION_BUCKETS = (60, 300, 900, 3600, 6 * 3600, 86400)  # seconds; the finest with <= 60 buckets
SESSION_MAX_BUCKETS = 60
# How long after its end an hour is surely materialised: the refresh runs every minute
# (TimescaleDB's policies, the service's job on plain PostgreSQL) and takes seconds.
SETTLE = timedelta(minutes=5)


class Read(NamedTuple):
    """One time range read from one relation: an aggregate (by `bucket`) or the raw table (by `time`)."""
    relation: str
    column: str
    lo: datetime
    hi: datetime

    @property
    def raw(self) -> bool:
        return self.column == "time"


class Plan(NamedTuple):
    """The ranges to read, in order, and the dataset's column list as the aggregate read projects
    it (None when only raw rows are read)."""
    reads: tuple[Read, ...]
    agg_columns: str | None = None


def floor_minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def ceil_minute(t: datetime) -> datetime:
    f = floor_minute(t)
    return f if f == t else f + timedelta(minutes=1)


def ceil_hour(t: datetime) -> datetime:
    f = t.replace(minute=0, second=0, microsecond=0)
    return f if f == t else f + timedelta(hours=1)


def floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def floor_day(t: datetime) -> datetime:
    """UTC midnight at or before t (the daily rollups bucket by UTC day)."""
    return t.astimezone(tr.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def ceil_day(t: datetime) -> datetime:
    f = floor_day(t)
    return f if f == t else f + timedelta(days=1)


def hours_align(zone: ZoneInfo, window: Window) -> bool:
    """Whether hourly aggregates answer buckets drawn in `zone` exactly: local hours and days are
    unions of UTC hours only when the zone's offset is a whole number of hours throughout."""
    return tr.whole_hour_offsets(zone, window)


def _nonempty(reads: Sequence[Read]) -> list[Read]:
    # One branch per time range: TimescaleDB excludes chunks cheaply for a single range, where an
    # OR of ranges costs planning time for every chunk. Empty ranges are left out.
    return [r for r in reads if r.lo < r.hi]


def settled(end: datetime, now: datetime | None) -> datetime:
    """Where the hours and days read from their aggregates end: at `end`, or SETTLE before `now`
    when `end` is later (None: long ago)."""
    return end if now is None else min(end, now - SETTLE)


def plan(ds: Dataset, metric: Reads, window: Window, active: Sequence[str], condition: Condition,
         aggregates: bool = True, now: datetime | None = None) -> Plan:
    """The reads answering a metric (`metric`: what its declaration says it reads) on `ds` over
    `window` under the `active` filters, for rows meeting `condition` (one of relations' named
    conditions). `aggregates`: whether the question may read aggregates at all (not when the
    service reads raw rows only, nor for buckets the aggregates' hours do not make up); `now`:
    the time of the question (see SETTLE)."""
    ms, me = ceil_minute(window.start), floor_minute(window.end)
    hs, he = ceil_hour(window.start), floor_hour(settled(window.end, now))
    reads: list[Read] = []
    agg_columns = None
    if aggregates and ms < me:
        aggregate, agg_columns, rollup = choose_aggregate(ds, metric.needs, active, condition)
        minutely = MINUTELY[aggregate]
        if hs < he:
            ds0, ds1 = ceil_day(hs), floor_day(he)
            if rollup is not None and rollup.daily and not metric.time and ds0 < ds1:
                # Whole UTC days from the daily rollup, whole hours around them hourly.
                reads += [Read(rollup.daily, "bucket", ds0, ds1), Read(aggregate, "bucket", hs, ds0),
                          Read(aggregate, "bucket", ds1, he)]
            else:
                reads.append(Read(aggregate, "bucket", hs, he))
            reads += [Read(minutely, "bucket", ms, hs), Read(minutely, "bucket", he, me)]
        else:
            reads.append(Read(minutely, "bucket", ms, me))
        reads += [Read(ds.raw, "time", window.start, ms), Read(ds.raw, "time", me, window.end)]
    else:
        reads.append(Read(ds.raw, "time", window.start, window.end))
    kept = _nonempty(reads)
    if not kept:  # an empty window: no rows, the same columns
        kept = [Read(ds.raw, "time", window.start, window.end)]
    return Plan(tuple(kept), agg_columns)


def plan_gateway(window: Window, aggregates: bool = True, now: datetime | None = None) -> tuple[Read, ...]:
    """Where to find the MCP servers the gateway reported in the hours `window` touches: whole UTC
    days from the daily rollup, the other hours hourly, those ended less than SETTLE before `now`
    (or not yet) by minute; or every hour raw."""
    h0, h1 = floor_hour(window.start), ceil_hour(window.end)
    if not aggregates:
        return tuple(_nonempty([Read("tool_calls", "time", h0, h1)]))
    he = max(h0, h1 if now is None else min(h1, floor_hour(now - SETTLE)))
    d0, d1 = ceil_day(h0), floor_day(he)
    if d0 < d1:
        reads = [Read("tool_calls_by_server_daily", "bucket", d0, d1),
                 Read("tool_calls_by_server_hourly", "bucket", h0, d0),
                 Read("tool_calls_by_server_hourly", "bucket", d1, he)]
    else:
        reads = [Read("tool_calls_by_server_hourly", "bucket", h0, he)]
    reads.append(Read(MINUTELY["tool_calls_by_server_hourly"], "bucket", he, h1))
    return tuple(_nonempty(reads))


def session_bins(lo: datetime, hi: datetime) -> tuple[int, list[datetime]]:
    """A session's activity from its first row at `lo` to its last at `hi`: the finest bucket width
    (seconds) drawing it in under SESSION_MAX_BUCKETS buckets, and the buckets' starts (aligned on
    EPOCH_ORIGIN, as date_bin draws them). Widths of whole hours may be read from the hourly
    aggregates: hour-multiple buckets aligned on the origin are unions of their hours."""
    seconds = (hi - lo).total_seconds()
    width = next((w for w in SESSION_BUCKETS if seconds / w < SESSION_MAX_BUCKETS), SESSION_BUCKETS[-1])
    first = EPOCH_ORIGIN + timedelta(seconds=width * math.floor((lo - EPOCH_ORIGIN).total_seconds() / width))
    starts = []
    t = first
    while t <= hi:
        starts.append(t)
        t += timedelta(seconds=width)
    return width, starts
