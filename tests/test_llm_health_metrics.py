"""LLM Usage's health and where-the-money-goes metrics, asked of the JSON API after the real
captures went through the receiver, on both backends, read from the aggregates and from the raw
rows: every number against an oracle computed here from the payloads and the stand-in API's
ledgers (tests/llm_health_support.py)."""
from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from tests.datasource_support import api
from tests.llm_health_support import CLAUDE, SCENARIOS, expected, ledger, percentile, post_scenarios

from tests.harness_support import refresh_aggregates

UTC = timezone.utc


@pytest.fixture
def reported(config):
    """Apps reading the agents' own cost (Claude Code's cost_usd, the oracle's), from the
    aggregates and from the raw rows."""
    from agent_analytics.app import create_app

    apps = []
    for read_aggregates in (True, False):
        a = create_app(dataclasses.replace(config, cost_source="reported", read_aggregates=read_aggregates),
                       role="all")
        a.testing = True
        apps.append(a)
    yield [a.test_client() for a in apps]
    for a in apps:
        a.extensions["aa_db"].close()


def _window() -> tuple[datetime, datetime]:
    """The captures' day and the day before (whole days from daily rollups, hours, raw edges)."""
    now = datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1), now


def _ledger_tokens() -> tuple[int, int]:
    """(cache reads, all input) of every answered request, as the stand-in API counted them."""
    reads = everything = 0
    for scenario in SCENARIOS:
        for r in ledger(scenario):
            if r["status"] != 200:
                continue
            if r["api"] == "anthropic":  # input excludes the cache
                reads += r["cache_read"]
                everything += r["input"] + r["cache_read"] + r["cache_write"]
            else:  # OpenAI: input includes the cached tokens
                reads += r["cached"]
                everything += r["input"]
    return reads, everything


def test_health_metrics_match_the_payloads_and_ledgers(client, conn, reported):
    post_scenarios(client)
    refresh_aggregates(conn)
    want = expected()
    start, end = _window()
    for c in reported:
        q = lambda metric, **kw: api(c, metric, start, end, **kw)  # noqa: E731
        errors = sum(n for (_, _, kind, _), n in want.errors.items() if kind == "error")
        exhausted = sum(n for (_, _, kind, _), n in want.errors.items() if kind == "retries_exhausted")
        requests = sum(want.requests.values())
        assert errors and exhausted and requests
        assert q("llm_api_errors")["rows"][0]["value"] == errors
        assert q("llm_api_errors")["rows"][0]["previous"] == 0
        assert q("llm_retries_exhausted")["rows"][0]["value"] == exhausted
        rate = q("llm_error_rate")["rows"][0]
        assert (rate["errors"], rate["requests"]) == (errors, requests)
        assert rate["value"] == pytest.approx(100 * errors / (errors + requests), rel=1e-12)
        assert rate["previous"] is None  # nothing ended the day before: unknown, not 0
        series = q("llm_errors_over_time")["rows"]
        assert sum(r["current"] for r in series) == errors

        by_status = {(r["model"], r["status_code"]): (r["errors"], r["exhausted"])
                     for r in q("llm_errors_by_status", page_size=100)["rows"]}
        oracle: dict = defaultdict(lambda: [0, 0])
        for (_, model, kind, status), n in want.errors.items():
            oracle[model, status][kind == "retries_exhausted"] += n
        assert by_status == {k: tuple(v) for k, v in oracle.items()}

        latency = {r["model"]: r for r in q("llm_latency_by_model")["rows"]}
        assert set(latency) == set(want.durations)
        for model, values in want.durations.items():
            r = latency[model]
            assert (r["requests"], r["p50_ms"], r["p95_ms"]) == (
                len(values), percentile(values, 0.5), percentile(values, 0.95)), model
            ttfts = want.ttfts[model]
            assert (r["ttft_requests"], r["ttft_p50_ms"], r["ttft_p95_ms"]) == (
                len(ttfts), percentile(ttfts, 0.5), percentile(ttfts, 0.95)), model
        every = [v for vs in want.durations.values() for v in vs]
        assert q("llm_latency_p95")["rows"][0]["value"] == percentile(every, 0.95)

        # Cache hit ratio: each token once (metric points where the session sent them, else
        # events), as the stand-in API counted them.
        reads, everything = _ledger_tokens()
        assert q("llm_cache_hit_ratio")["rows"][0]["value"] == pytest.approx(100 * reads / everything, rel=1e-12)
        over_time = [r for r in q("llm_cache_hit_ratio_over_time")["rows"] if r["current"] is not None]
        assert over_time and all(0 < r["current"] < 100 for r in over_time)
        users = q("llm_cache_hit_ratio_by_user", page_size=100)["rows"]
        assert sum(r["input_tokens"] for r in users) == everything
        assert sum(r["cache_read_tokens"] for r in users) == reads

        # Where the money goes: the subagents session's metric points count its tokens; its
        # events its cost (Claude Code's cost_usd, as it reported it).
        subagents = {(r["thread"], r["subagent"]): r for r in q("llm_cost_by_subagent", page_size=100)["rows"]}
        points = Counter()
        for (source, name, _), (tokens, _) in want.points_by_origin.items():
            points[source, name or "(main thread)"] += tokens
        for key, tokens in points.items():
            assert subagents[key]["tokens"] == tokens, key
        cost = defaultdict(float)
        for (source, name, _, _), (_, c_) in want.by_origin.items():
            cost[source, name or "(main thread)"] += float(c_)
        for key, c_ in cost.items():
            assert subagents[key]["cost"] == pytest.approx(c_, rel=1e-9), key
        by_effort = {r["effort"]: r for r in q("llm_cost_by_effort", page_size=100)["rows"]}
        assert by_effort["medium"]["tokens"] == sum(t for (_, _, e), (t, _) in want.points_by_origin.items()
                                                    if e == "medium")
        by_speed = {r["speed"]: r for r in q("llm_cost_by_speed", page_size=100)["rows"]}
        assert by_speed["normal"]["cost"] == pytest.approx(
            sum(float(c_) for (_, _, _, s), (_, c_) in want.by_origin.items() if s == "normal"), rel=1e-9)
        # The ledger saw the subagents' requests apart from the main thread's.
        sub_ledger = sum(r["input"] + r["cache_read"] + r["cache_write"] + r["output"]
                         for r in ledger(CLAUDE + "subagents") if r["ctx"] != "main")
        assert sum(r["tokens"] for k, r in subagents.items() if k[0] == "subagent") == sub_ledger

        # The drawer: the subagents session's threads.
        session = want.sessions[CLAUDE + "subagents"]
        drawer = {(r["thread"], r["subagent"]): r["tokens"]
                  for r in q("session_subagents", session=session)["rows"]}
        own = Counter()
        for (source, name, _), (tokens, _) in expected((CLAUDE + "subagents",)).points_by_origin.items():
            own[source, name or "(main thread)"] += tokens
        assert drawer == own and len(own) == 4
        assert q("session_subagents")["rows"] == []  # nothing until a session is chosen


def test_the_attribution_filters_narrow_the_health_metrics(client, conn):
    """One model's requests and errors attributed to a team (as if its process said so): under the
    team filter, the health figures are that model's alone; under another team, none."""
    post_scenarios(client)
    want = expected()
    model = max(want.durations, key=lambda m: len(want.durations[m]))
    for table in ("llm_requests", "llm_errors"):
        conn.execute(f"UPDATE {table} SET team = 'payments' WHERE model = %s", (model,))
    refresh_aggregates(conn)
    start, end = _window()
    q = lambda metric, **kw: api(client, metric, start, end, team="payments", **kw)  # noqa: E731
    [latency] = q("llm_latency_by_model")["rows"]
    values, ttfts = want.durations[model], want.ttfts[model]
    assert (latency["model"], latency["requests"], latency["p50_ms"], latency["ttft_p95_ms"]) == (
        model, len(values), percentile(values, 0.5), percentile(ttfts, 0.95) if ttfts else None)
    errors = sum(n for (_, m, kind, _), n in want.errors.items() if m == model and kind == "error")
    assert q("llm_api_errors")["rows"][0]["value"] == errors
    rate = q("llm_error_rate")["rows"][0]
    assert (rate["errors"], rate["requests"]) == (errors, sum(n for (_, m), n in want.requests.items() if m == model))
    assert {r["model"] for r in q("llm_errors_by_status", page_size=100)["rows"]} <= {model}
    for metric in ("llm_cost_by_subagent", "llm_cost_by_effort", "llm_cost_by_speed"):
        assert q(metric, page_size=100)["meta"]["relations"], metric  # answered, from a relation
    other = lambda metric: api(client, metric, start, end, team="search")["rows"]  # noqa: E731
    assert other("llm_latency_by_model") == [] and other("llm_errors_by_status") == []


@pytest.mark.parametrize("metric_id,filters,want", [
    ("llm_api_errors", [], "llm_errors_totals_hourly"),
    ("llm_errors_over_time", [], "llm_errors_totals_hourly"),
    ("llm_retries_exhausted", [], "llm_errors_totals_hourly"),
    ("llm_api_errors", ["model"], "llm_errors_by_model_hourly"),
    ("llm_api_errors", ["group"], "llm_errors_hourly"),
    ("llm_errors_by_status", [], "llm_errors_by_model_hourly"),
    ("llm_latency_p95", [], "llm_latency_totals_hourly"),
    ("llm_latency_p95", ["model"], "llm_latency_by_model_hourly"),
    ("llm_latency_by_model", ["provider"], "llm_latency_by_model_hourly"),
    ("llm_latency_by_model", ["user"], "llm_latency_hourly"),
    ("llm_cost_by_subagent", ["user", "model"], "llm_usage_by_origin_hourly"),
    ("llm_cost_by_subagent", [], "llm_usage_by_origin_totals_hourly"),
    ("llm_cost_by_effort", ["model"], "llm_usage_by_origin_totals_hourly"),
    ("llm_cost_by_speed", ["provider"], "llm_usage_by_origin_totals_hourly"),
    ("llm_cost_by_effort", ["team"], "llm_usage_by_origin_hourly"),
    ("session_subagents", ["session"], "llm_session_agents_hourly"),
])
def test_each_health_metric_reads_the_smallest_rollup_and_its_daily_twin(metric_id, filters, want):
    from agent_analytics.datasource import catalog, planner
    from agent_analytics.datasource.relations import choose_aggregate
    from agent_analytics.datasource.timerange import Window

    m = catalog.BY_ID[metric_id]
    name, _, rollup = choose_aggregate(m.reads.dataset, m.reads.needs, filters, m.reads.rows)
    assert name == want
    # Over whole days, a metric that does not look at the time reads them from the daily twin.
    start = datetime(2026, 11, 1, 10, 30, tzinfo=UTC)
    p = planner.plan(m.reads.dataset, m.reads, Window(start, start + timedelta(days=3)), filters, m.reads.rows)
    relations = [r.relation for r in p.reads]
    assert relations[0] == (rollup.daily if not m.reads.time else want)
    # The partial hours at the edges, by whole minutes, from the per-minute twin.
    assert relations[-1] == want.replace("_hourly", "_minutely")


@pytest.mark.parametrize("metric_id", ["llm_cost_by_subagent", "llm_cost_by_effort", "llm_cost_by_speed"])
@pytest.mark.parametrize("filters,want", [
    ([], "llm_metric_usage_by_origin_totals_hourly"),
    (["model"], "llm_metric_usage_by_origin_totals_hourly"),
    (["group"], "llm_metric_usage_by_origin_hourly"),
    (["cost_center"], "llm_metric_usage_by_origin_hourly"),
])
def test_cost_by_origin_reads_the_metric_points_smallest_rollup(metric_id, filters, want):
    """The metric points' side of the money by origin (read with the events') chooses its own rollup."""
    from agent_analytics.datasource import catalog, planner
    from agent_analytics.datasource.relations import LLM_METRIC_ORIGIN
    from agent_analytics.datasource.timerange import Window

    m = catalog.BY_ID[metric_id]
    start = datetime(2026, 11, 1, 10, 30, tzinfo=UTC)
    # As the engine plans it (Engine._llm_source): the points' dataset with the metric's reads.
    p = planner.plan(LLM_METRIC_ORIGIN, m.reads, Window(start, start + timedelta(days=3)), filters, m.reads.rows)
    assert {r.relation for r in p.reads} == {want.replace("_hourly", w) for w in ("_daily", "_hourly", "_minutely")}
