"""The planner (datasource/planner.py), without a database: which relations a question reads over
which time ranges. The expected plans are written out from the rule (whole UTC days of a metric
that does not look at the time from a daily rollup, other whole UTC hours hourly, the whole
minutes of partial edge hours by minute, partial minutes raw, hours ended less than SETTLE before
now by minute; the smallest rollup holding what the metric and its filters need), and every plan
of many windows is checked to tile its window exactly, aggregates on their own boundaries, raw
reads under a minute each."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from agent_analytics.datasource import catalog, planner
from agent_analytics.datasource.relations import (ALL, BLOCKED, EXECUTED, IN_SESSION, LLM_SESSIONS, LLM_USAGE,
                                                  TOOL_CALLS, Condition, Dataset)
from agent_analytics.datasource.timerange import Window

UTC = timezone.utc
# The metrics that do not look at the time, from their declarations.
TIME_FREE = {m.id for m in catalog.METRICS if m.reads is not None and not m.reads.time}


def t(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def ts(day: int, hour: int, minute: int, second: int) -> datetime:
    return datetime(2026, 3, day, hour, minute, second, tzinfo=UTC)


# Monday 2 March 10:30:20 to Thursday 5 March 14:15:40 UTC: two whole days, whole hours around
# them, partial hours at both edges, partial minutes at their edges.
SPAN = Window(ts(2, 10, 30, 20), ts(5, 14, 15, 40))


def _days_hours_edges(daily: str, hourly: str, raw: str) -> list[tuple[str, datetime, datetime]]:
    minutely = hourly.removesuffix("_hourly") + "_minutely"
    return [(daily, t(3), t(5)), (hourly, t(2, 11), t(3)), (hourly, t(5), t(5, 14)),
            (minutely, t(2, 10, 31), t(2, 11)), (minutely, t(5, 14), t(5, 14, 15)),
            (raw, ts(2, 10, 30, 20), t(2, 10, 31)), (raw, t(5, 14, 15), ts(5, 14, 15, 40))]


PLANS = [
    # (case, dataset, metric, window, active filters, rows counted, aggregates allowed, expected reads)
    ("executions: totals rollup, days daily", TOOL_CALLS, "mcp_tool_executions", SPAN, [], EXECUTED, True,
     _days_hours_edges("tool_calls_totals_daily", "tool_calls_totals_hourly", "tool_calls")),
    ("a series looks at the time: no daily rollup", TOOL_CALLS, "mcp_executions_over_time", SPAN, [], EXECUTED, True,
     [("tool_calls_totals_hourly", t(2, 11), t(5, 14)), ("tool_calls_totals_minutely", t(2, 10, 31), t(2, 11)),
      ("tool_calls_totals_minutely", t(5, 14), t(5, 14, 15)), ("tool_calls", ts(2, 10, 30, 20), t(2, 10, 31)),
      ("tool_calls", t(5, 14, 15), ts(5, 14, 15, 40))]),
    ("top users: the per-user rollup", TOOL_CALLS, "mcp_top_users", SPAN, [], EXECUTED, True,
     _days_hours_edges("tool_calls_by_user_daily", "tool_calls_by_user_hourly", "tool_calls")),
    ("top users by resource tag: full aggregate, its users' tools daily", TOOL_CALLS, "mcp_top_users", SPAN,
     ["resource_tag"], EXECUTED, True,
     _days_hours_edges("tool_calls_by_user_tool_daily", "tool_calls_hourly", "tool_calls")),
    ("blocked calls by policy", TOOL_CALLS, "security_top_policies", SPAN, [], BLOCKED, True,
     _days_hours_edges("tool_calls_by_policy_daily", "tool_calls_by_policy_hourly", "tool_calls")),
    ("LLM totals", LLM_USAGE, "llm_total_tokens", SPAN, [], ALL, True,
     _days_hours_edges("llm_usage_totals_daily", "llm_usage_totals_hourly", "llm_requests")),
    ("LLM top users", LLM_USAGE, "llm_top_users_by_cost", SPAN, [], ALL, True,
     _days_hours_edges("llm_usage_per_user_daily", "llm_usage_per_user_hourly", "llm_requests")),
    ("LLM top models under a user filter", LLM_USAGE, "llm_top_models_by_cost", SPAN, ["user"], ALL, True,
     _days_hours_edges("llm_usage_by_user_daily", "llm_usage_hourly", "llm_requests")),
    ("session totals", LLM_SESSIONS, "session_models", SPAN, ["session"], IN_SESSION, True,
     _days_hours_edges("llm_sessions_daily", "llm_sessions_hourly", "llm_requests")),
    ("aggregates not allowed: all raw", TOOL_CALLS, "mcp_tool_executions", SPAN, [], EXECUTED, False,
     [("tool_calls", ts(2, 10, 30, 20), ts(5, 14, 15, 40))]),
    ("within one hour: by minute", TOOL_CALLS, "mcp_tool_executions", Window(t(2, 10, 10), t(2, 10, 50)), [],
     EXECUTED, True, [("tool_calls_totals_minutely", t(2, 10, 10), t(2, 10, 50))]),
    ("within one minute: raw only", TOOL_CALLS, "mcp_tool_executions", Window(ts(2, 10, 10, 5), ts(2, 10, 10, 55)),
     [], EXECUTED, True, [("tool_calls", ts(2, 10, 10, 5), ts(2, 10, 10, 55))]),
    ("across a minute's end, no whole minute: raw", TOOL_CALLS, "mcp_tool_executions",
     Window(ts(2, 10, 10, 5), ts(2, 10, 11, 55)), [], EXECUTED, True,
     [("tool_calls", ts(2, 10, 10, 5), ts(2, 10, 11, 55))]),
    ("whole hours: no raw edges", TOOL_CALLS, "mcp_tool_executions", Window(t(2, 10), t(2, 12)), [], EXECUTED, True,
     [("tool_calls_totals_hourly", t(2, 10), t(2, 12))]),
    ("whole days: daily only", TOOL_CALLS, "mcp_tool_executions", Window(t(2), t(4)), [], EXECUTED, True,
     [("tool_calls_totals_daily", t(2), t(4))]),
    ("empty window: one raw read, no rows, the same columns", TOOL_CALLS, "mcp_tool_executions",
     Window(t(2, 10), t(2, 10)), [], EXECUTED, True, [("tool_calls", t(2, 10), t(2, 10))]),
]


@pytest.mark.parametrize("case, ds, metric, window, active, condition, aggregates, expected", PLANS,
                         ids=[p[0] for p in PLANS])
def test_plan(case: str, ds: Dataset, metric: str, window: Window, active: list[str], condition: Condition,
              aggregates: bool, expected: list[tuple[str, datetime, datetime]]) -> None:
    plan = planner.plan(ds, catalog.BY_ID[metric].reads, window, active, condition, aggregates)
    assert [(r.relation, r.lo, r.hi) for r in plan.reads] == expected
    assert all(r.raw == (r.relation == ds.raw) for r in plan.reads)
    assert (plan.agg_columns is None) == all(r.raw for r in plan.reads)
    # Asked long after the window: the same plan.
    assert planner.plan(ds, catalog.BY_ID[metric].reads, window, active, condition, aggregates, now=t(20)) == plan


# (case, window, now, expected reads) of the LLM totals: hours and days ended less than SETTLE
# (5 minutes) before now are read by minute (the refresh may not have materialised them yet).
NOW = [
    ("now-24h at 14:15:40: hours up to the current one, its minutes", Window(ts(4, 14, 15, 40), ts(5, 14, 15, 40)),
     ts(5, 14, 15, 40),
     [("llm_usage_totals_hourly", t(4, 15), t(5, 14)), ("llm_usage_totals_minutely", t(4, 14, 16), t(4, 15)),
      ("llm_usage_totals_minutely", t(5, 14), t(5, 14, 15)), ("llm_requests", ts(4, 14, 15, 40), t(4, 14, 16)),
      ("llm_requests", t(5, 14, 15), ts(5, 14, 15, 40))]),
    ("at 14:03: the hour ended at 14:00 is read by minute too", Window(t(5, 10), ts(5, 14, 3, 30)),
     ts(5, 14, 3, 30),
     [("llm_usage_totals_hourly", t(5, 10), t(5, 13)), ("llm_usage_totals_minutely", t(5, 13), t(5, 14, 3)),
      ("llm_requests", t(5, 14, 3), ts(5, 14, 3, 30))]),
    ("at 00:02: yesterday's hours hourly, its last hour and the day since by minute",
     Window(t(3), ts(5, 0, 2, 10)), ts(5, 0, 2, 10),
     [("llm_usage_totals_daily", t(3), t(4)), ("llm_usage_totals_hourly", t(4), t(4, 23)),
      ("llm_usage_totals_minutely", t(4, 23), t(5, 0, 2)), ("llm_requests", t(5, 0, 2), ts(5, 0, 2, 10))]),
    ("a window ending in the hour before, asked at 14:03", Window(t(5, 10), t(5, 13, 30)), t(5, 14, 3),
     [("llm_usage_totals_hourly", t(5, 10), t(5, 13)), ("llm_usage_totals_minutely", t(5, 13), t(5, 13, 30))]),
    ("a window ended long before: hours as they come", Window(t(5, 10), t(5, 13)), t(6),
     [("llm_usage_totals_hourly", t(5, 10), t(5, 13))]),
]


@pytest.mark.parametrize("case, window, now, expected", NOW, ids=[n[0] for n in NOW])
def test_plan_near_now(case: str, window: Window, now: datetime, expected: list[tuple[str, datetime, datetime]]):
    plan = planner.plan(LLM_USAGE, catalog.BY_ID["llm_total_tokens"].reads, window, [], ALL, now=now)
    assert [(r.relation, r.lo, r.hi) for r in plan.reads] == expected


def test_every_plan_tiles_its_window() -> None:
    """Random windows (seconds apart, up to ten days), asked at random times from their start to
    a day after: the reads never overlap and cover the window exactly; aggregate reads lie on
    whole UTC hours (daily ones on whole UTC days, only for metrics that do not look at the
    time) ended SETTLE before the question, per-minute ones on whole minutes; raw reads only
    where no whole minute fits, under a minute each."""
    rng = random.Random(19)
    metrics = [(TOOL_CALLS, "mcp_tool_executions", EXECUTED), (TOOL_CALLS, "mcp_executions_over_time", EXECUTED),
               (TOOL_CALLS, "security_top_policies", BLOCKED), (LLM_USAGE, "llm_top_users_by_tokens", ALL),
               (LLM_USAGE, "llm_cost_over_time", ALL)]
    for _ in range(400):
        start = t(1) + timedelta(seconds=rng.randrange(0, 86400 * 20))
        window = Window(start, start + timedelta(seconds=rng.randrange(1, 86400 * 10)))
        now = window.start + timedelta(seconds=rng.randrange(0, 86400 + int((window.end - start).total_seconds())))
        ds, metric, condition = rng.choice(metrics)
        reads = sorted(planner.plan(ds, catalog.BY_ID[metric].reads, window, [], condition, now=now).reads,
                       key=lambda r: r.lo)
        assert reads[0].lo == window.start and reads[-1].hi == window.end, (metric, window)
        for a, b in zip(reads, reads[1:]):
            assert a.hi == b.lo, (metric, window, reads)
        for r in reads:
            assert r.lo < r.hi
            if r.raw:
                assert r.hi - r.lo < timedelta(minutes=1) or window.end - window.start < timedelta(minutes=2)
            elif r.relation.endswith("_minutely"):
                assert r.lo.second == r.hi.second == r.lo.microsecond == r.hi.microsecond == 0, (metric, window, r)
            else:
                assert r.lo.minute == r.hi.minute == r.lo.second == r.hi.second == 0, (metric, window, r)
                assert r.hi <= now - planner.SETTLE or r.hi <= window.start, (metric, window, now, r)
            if r.relation.endswith("_daily"):
                assert metric in TIME_FREE and r.lo.hour == r.hi.hour == 0, (metric, window, r)
        if window.end - window.start >= timedelta(minutes=2):
            assert any(not r.raw for r in reads), (metric, window)


@pytest.mark.parametrize("zone, aligned", [("UTC", True), ("Europe/Berlin", True), ("America/New_York", True),
                                           ("Asia/Kolkata", False), ("Asia/Kathmandu", False),
                                           ("Australia/Adelaide", False)])
def test_hours_align(zone: str, aligned: bool) -> None:
    """Buckets in a zone with whole-hour offsets are unions of UTC hours (aggregates answer them);
    a half- or quarter-hour zone's are not (raw rows answer them)."""
    assert planner.hours_align(ZoneInfo(zone), SPAN) is aligned


def test_hours_align_across_a_dst_change() -> None:
    """Lord Howe is +11 in its summer and +10:30 from April: aligned in January, not across the
    change; London's change is a whole hour, aligned across it."""
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    assert planner.hours_align(lord_howe, Window(datetime(2026, 1, 10, tzinfo=UTC), datetime(2026, 1, 20, tzinfo=UTC)))
    assert not planner.hours_align(lord_howe, Window(datetime(2026, 3, 30, tzinfo=UTC),
                                                     datetime(2026, 4, 10, tzinfo=UTC)))
    assert planner.hours_align(ZoneInfo("Europe/London"),
                               Window(datetime(2026, 3, 25, tzinfo=UTC), datetime(2026, 4, 5, tzinfo=UTC)))


GATEWAY = [
    ("raw: every hour the window touches", SPAN, False, [("tool_calls", t(2, 10), t(5, 15))]),
    ("days daily, hours around them hourly", SPAN, True,
     [("tool_calls_by_server_daily", t(3), t(5)), ("tool_calls_by_server_hourly", t(2, 10), t(3)),
      ("tool_calls_by_server_hourly", t(5), t(5, 15))]),
    ("within a day: hourly", Window(t(2, 10, 30), t(2, 20, 5)), True,
     [("tool_calls_by_server_hourly", t(2, 10), t(2, 21))]),
    ("whole days", Window(t(2), t(4)), True, [("tool_calls_by_server_daily", t(2), t(4))]),
]


@pytest.mark.parametrize("case, window, aggregates, expected", GATEWAY, ids=[g[0] for g in GATEWAY])
def test_plan_gateway(case: str, window: Window, aggregates: bool,
                      expected: list[tuple[str, datetime, datetime]]) -> None:
    """The gateway's servers are looked up over every hour the window touches (from the start of
    its first hour to the end of its last): a call in that hour is deduplicated the same way
    whichever relation reads it."""
    assert [(r.relation, r.lo, r.hi) for r in planner.plan_gateway(window, aggregates)] == expected
    assert planner.plan_gateway(window, aggregates, now=t(20)) == planner.plan_gateway(window, aggregates)


def test_plan_gateway_near_now() -> None:
    """The hours not SETTLE past their end by minute, whole: the current one to its end."""
    assert [(r.relation, r.lo, r.hi) for r in planner.plan_gateway(SPAN, now=ts(5, 14, 3, 30))] == [
        ("tool_calls_by_server_daily", t(3), t(5)), ("tool_calls_by_server_hourly", t(2, 10), t(3)),
        ("tool_calls_by_server_hourly", t(5), t(5, 13)), ("tool_calls_by_server_minutely", t(5, 13), t(5, 15))]
    assert [(r.relation, r.lo, r.hi) for r in planner.plan_gateway(Window(t(5, 14), t(5, 14, 2)), now=t(5, 14, 2))] \
        == [("tool_calls_by_server_minutely", t(5, 14), t(5, 15))]


BINS = [
    # (first row, last row, width in seconds, bucket starts)
    (t(2, 10, 7), t(2, 10, 7), 60, [t(2, 10, 7)]),
    (t(2, 10, 7), t(2, 10, 59), 60, [t(2, 10, m) for m in range(7, 60)]),
    (t(2, 10, 7), t(2, 11, 7), 300, [t(2, 10, 5) + timedelta(minutes=5 * k) for k in range(13)]),
    (t(2, 10, 7), t(2, 20, 0), 900, [t(2, 10, 0) + timedelta(minutes=15 * k) for k in range(41)]),
    (t(2, 10, 7), t(3, 20, 0), 3600, [t(2, 10) + timedelta(hours=k) for k in range(35)]),
    # 6-hour buckets start at 00, 06, 12, 18 UTC (the origin is a Monday midnight UTC).
    (t(2, 10, 7), t(10, 20, 0), 6 * 3600, [t(2, 6) + timedelta(hours=6 * k) for k in range(35)]),
    (t(2, 10, 7), t(30, 20, 0), 86400, [t(d) for d in range(2, 31)]),
    # Beyond 60 days: still daily (the widest width).
    (t(1), t(1) + timedelta(days=70), 86400, [t(1) + timedelta(days=k) for k in range(71)]),
]


@pytest.mark.parametrize("lo, hi, width, starts", BINS)
def test_session_bins(lo: datetime, hi: datetime, width: int, starts: list[datetime]) -> None:
    assert planner.session_bins(lo, hi) == (width, starts)
