"""The planner (datasource/planner.py), without a database: which relations a question reads over
which time ranges. The expected plans are written out from the rule (whole UTC days of a metric
that does not look at the time from a daily rollup, other whole UTC hours hourly, partial edge
hours raw; the smallest rollup holding what the metric and its filters need), and every plan of
many windows is checked to tile its window exactly, aggregates on their own boundaries."""
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


# Monday 2 March 10:30 to Thursday 5 March 14:15 UTC: two whole days, whole hours around them,
# partial hours at both edges.
SPAN = Window(t(2, 10, 30), t(5, 14, 15))


def _days_hours_edges(daily: str, hourly: str, raw: str) -> list[tuple[str, datetime, datetime]]:
    return [(daily, t(3), t(5)), (hourly, t(2, 11), t(3)), (hourly, t(5), t(5, 14)),
            (raw, t(2, 10, 30), t(2, 11)), (raw, t(5, 14), t(5, 14, 15))]


PLANS = [
    # (case, dataset, metric, window, active filters, rows counted, aggregates allowed, expected reads)
    ("executions: totals rollup, days daily", TOOL_CALLS, "mcp_tool_executions", SPAN, [], EXECUTED, True,
     _days_hours_edges("tool_calls_totals_daily", "tool_calls_totals_hourly", "tool_calls")),
    ("a series looks at the time: no daily rollup", TOOL_CALLS, "mcp_executions_over_time", SPAN, [], EXECUTED, True,
     [("tool_calls_totals_hourly", t(2, 11), t(5, 14)), ("tool_calls", t(2, 10, 30), t(2, 11)),
      ("tool_calls", t(5, 14), t(5, 14, 15))]),
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
     [("tool_calls", t(2, 10, 30), t(5, 14, 15))]),
    ("within one hour: raw only", TOOL_CALLS, "mcp_tool_executions", Window(t(2, 10, 10), t(2, 10, 50)), [],
     EXECUTED, True, [("tool_calls", t(2, 10, 10), t(2, 10, 50))]),
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


def test_every_plan_tiles_its_window() -> None:
    """Random windows (minutes apart, up to ten days): the reads never overlap and cover the window
    exactly; aggregate reads lie on whole UTC hours (daily ones on whole UTC days, only for
    metrics that do not look at the time); raw reads only where no whole hour fits."""
    rng = random.Random(19)
    metrics = [(TOOL_CALLS, "mcp_tool_executions", EXECUTED), (TOOL_CALLS, "mcp_executions_over_time", EXECUTED),
               (TOOL_CALLS, "security_top_policies", BLOCKED), (LLM_USAGE, "llm_top_users_by_tokens", ALL),
               (LLM_USAGE, "llm_cost_over_time", ALL)]
    for _ in range(400):
        start = t(1) + timedelta(minutes=rng.randrange(0, 60 * 24 * 20))
        window = Window(start, start + timedelta(minutes=rng.randrange(1, 60 * 24 * 10)))
        ds, metric, condition = rng.choice(metrics)
        reads = sorted(planner.plan(ds, catalog.BY_ID[metric].reads, window, [], condition).reads, key=lambda r: r.lo)
        assert reads[0].lo == window.start and reads[-1].hi == window.end, (metric, window)
        for a, b in zip(reads, reads[1:]):
            assert a.hi == b.lo, (metric, window, reads)
        for r in reads:
            assert r.lo < r.hi
            if r.raw:
                assert r.hi - r.lo < timedelta(hours=1) or window.end - window.start < timedelta(hours=2)
            else:
                assert r.lo.minute == r.hi.minute == 0, (metric, window, r)
            if r.relation.endswith("_daily"):
                assert metric in TIME_FREE and r.lo.hour == r.hi.hour == 0, (metric, window, r)
        if window.end - window.start >= timedelta(hours=2):
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
      ("tool_calls_by_server_hourly", t(5), t(5, 14, 15))]),
    ("within a day: hourly", Window(t(2, 10, 30), t(2, 20, 5)), True,
     [("tool_calls_by_server_hourly", t(2, 10), t(2, 20, 5))]),
    ("whole days", Window(t(2), t(4)), True, [("tool_calls_by_server_daily", t(2), t(4))]),
]


@pytest.mark.parametrize("case, window, aggregates, expected", GATEWAY, ids=[g[0] for g in GATEWAY])
def test_plan_gateway(case: str, window: Window, aggregates: bool,
                      expected: list[tuple[str, datetime, datetime]]) -> None:
    """The gateway's servers are looked up over every hour the window touches (from the start of
    its first hour): a call in that hour is deduplicated the same way whichever relation reads it."""
    assert [(r.relation, r.lo, r.hi) for r in planner.plan_gateway(window, aggregates)] == expected


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
