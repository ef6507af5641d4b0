"""Cost figures are per-request list prices wherever the requests are known, aggregated metric
points never cross a price tier, 5-minute and 1-hour cache writes have their own prices, and
unpriced usage is never silent nor 0. The oracles price each request here, from Anthropic's
published list rates (USD per million tokens) or with genai-prices directly, never with the code
under test. Through the real receiver, database (both backends) and query API."""
from __future__ import annotations

import time
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from agent_analytics.ingest import pricing
from tests.harness_support import refresh_aggregates
from tests.cost_support import (CACHE, HAIKU_45, M, ONE_M, SONNET_45, UTC, api_requests,
                                event_times, ledger, list_price, post_all, query, sonnet)
from tests.ingest_support import (FIXTURES, assert_session_totals_match_the_rows, logs_fixture, metrics_fixture,
                                  post, set_value)


# ---- pricing one request --------------------------------------------------------------------

@pytest.mark.parametrize("model,rates", [("claude-sonnet-4-5", SONNET_45), ("claude-haiku-4-5", HAIKU_45)])
def test_one_hour_cache_writes_have_their_own_price(model, rates):
    for inp, out, read, w5, w1 in ((1500, 500, 100_000, 4000, 8000), (10, 0, 0, 0, 1_000), (700, 20, 0, 5000, 0)):
        got = pricing.estimate("anthropic", model, inp, out, read, w5 + w1, cache_write_1h_tokens=w1)
        assert got == list_price(rates, inp, out, read, w5, w1), (model, inp, out, read, w5, w1)
    # The same writes all 5-minute cost less: the split matters.
    assert pricing.estimate("anthropic", model, 0, 0, 0, 8000) < pricing.estimate(
        "anthropic", model, 0, 0, 0, 8000, cache_write_1h_tokens=8000)


def test_a_tier_applies_to_one_request_only():
    """A request past 200K input tokens is priced at the long-context rates, 1-hour writes too;
    its per-token price of the base tier is the base rate, whatever the count."""
    assert pricing.estimate("anthropic", "claude-sonnet-4-5", 1500, 500, 210_000, 12_000,
                            cache_write_1h_tokens=8000) == sonnet(1500, 500, 210_000, 4000, 8000)
    assert pricing.base_rate("anthropic", "claude-sonnet-4-5", "cache_read") == SONNET_45[2] / M
    assert pricing.base_rate("anthropic", "claude-sonnet-4-5[1m]", "input") == SONNET_45[0] / M
    assert pricing.base_rate("anthropic", "no-such-model-xyz", "input") is None


# ---- the captured fixtures through the receiver -----------------------------------------------

def test_fixture_requests_priced_one_by_one_with_their_cache_split(client, conn, app):
    """The 5m/1h fixture: each api_request costs its list price with 1-hour writes at their own
    rate (the oracle: genai-prices on the ledger's requests, and the published rates), and the
    total cost is their sum, not the metric points' (which would price 448K tokens as one)."""
    post_all(client, CACHE)
    requests = ledger(CACHE)
    oracle = []
    for r in requests:
        usage = Usage(input_tokens=r["input"] + r["cache_read"] + r["cache_write"], cache_read_tokens=r["cache_read"],
                      cache_write_tokens=r["cache_write"], cache_write_1h_tokens=r["cache_write_1h"],
                      output_tokens=r["output"])
        price = Decimal(calc_price(usage, r["model"], provider_id="anthropic").total_price)
        assert price == sonnet(r["input"], r["output"], r["cache_read"], r["cache_write_5m"], r["cache_write_1h"])
        oracle.append(price)
    stored = conn.execute("SELECT cache_write_tokens, estimated_cost_usd, cost_basis FROM llm_requests"
                          " ORDER BY time").fetchall()
    assert stored == [(r["cache_write"], p, "list_price") for r, p in zip(requests, oracle)]
    refresh_aggregates(conn)
    times = event_times(CACHE)
    start, end = min(times) - timedelta(hours=2), max(times) + timedelta(hours=2)
    [row] = query(app.test_client(), "llm_total_cost", start, end)["rows"]
    assert Decimal(str(row["value"])) == sum(oracle)
    assert (row["unpriced_tokens"], row["unpriced_models"]) == (0, "")
    (session_cost,) = conn.execute("SELECT estimated_cost_usd FROM sessions").fetchone()
    assert session_cost == sum(oracle)
    assert_session_totals_match_the_rows(conn)


@pytest.mark.parametrize("order", [("logs", "metrics"), ("metrics", "logs")])
def test_the_1m_model_fixture_prices_as_the_same_usage(client, conn, app, order):
    """Events say claude-sonnet-4-5, metrics claude-sonnet-4-5[1m]: the same usage as the
    5m/1h fixture, so the same cost, whichever report arrives first."""
    for kind in order:
        post_all(client, ONE_M, (kind,))
        post_all(client, CACHE, (kind,))
    refresh_aggregates(conn)
    costs = dict(conn.execute("SELECT id, estimated_cost_usd FROM sessions").fetchall())
    assert len(costs) == 2 and len(set(costs.values())) == 1
    want = sum(sonnet(r["input"], r["output"], r["cache_read"], r["cache_write_5m"], r["cache_write_1h"])
               for r in ledger(ONE_M))
    assert set(costs.values()) == {want}
    times = event_times(ONE_M) + event_times(CACHE)
    start, end = min(times) - timedelta(hours=2), max(times) + timedelta(hours=2)
    [row] = query(app.test_client(), "llm_total_cost", start, end)["rows"]
    assert Decimal(str(row["value"])) == 2 * want and row["unpriced_tokens"] == 0
    assert_session_totals_match_the_rows(conn)


@pytest.mark.parametrize("order", [("logs", "metrics"), ("metrics", "logs")])
def test_the_1m_model_is_one_model_with_its_tokens_and_its_cost(client, conn, app, order):
    """The [1m] session's tokens (from its metric points) and cost (from its events) are the same
    model's: one row in the top models and the session's models, never a row of all its tokens at
    $0 beside a row of all its cost over 0 tokens. Oracle: the ledger's requests at the published
    rates, and its token counts."""
    for kind in order:
        post_all(client, ONE_M, (kind,))
    refresh_aggregates(conn)
    requests = ledger(ONE_M)
    want_cost = sum(sonnet(r["input"], r["output"], r["cache_read"], r["cache_write_5m"], r["cache_write_1h"])
                    for r in requests)
    want_tokens = sum(r["input"] + r["output"] + r["cache_read"] + r["cache_write"] for r in requests)
    times = event_times(ONE_M)
    start, end = min(times) - timedelta(hours=2), max(times) + timedelta(hours=2)
    q = app.test_client()
    for metric in ("llm_top_models_by_cost", "llm_top_models_by_tokens"):
        [row] = query(q, metric, start, end)["rows"]
        assert (row["model"], row["tokens"], row["requests"]) == ("claude-sonnet-4-5", want_tokens, len(requests))
        assert Decimal(str(row["cost"])) == want_cost and row["unpriced"] is False
    [row] = query(q, "llm_models_used", start, end)["rows"]
    assert row["value"] == 1
    (session,) = conn.execute("SELECT id FROM sessions").fetchone()
    [row] = query(q, "session_models", start, end, session=session)["rows"]
    assert (row["model"], row["tokens"], row["requests"]) == ("claude-sonnet-4-5", want_tokens, len(requests))
    assert Decimal(str(row["cost"])) == want_cost
    assert conn.execute("SELECT models FROM sessions").fetchall() == [(["claude-sonnet-4-5"],)]


def test_metric_points_alone_are_priced_at_the_base_tier(client, conn, app):
    """Sessions that sent only metrics: each point sums many requests (here 420K cache reads in
    one point), so it is priced at the base rates, never the long-context ones; cache writes at
    the 5-minute rate (points do not split them). The [1m] model is the same model."""
    post_all(client, ONE_M, ("metrics",))
    post_all(client, CACHE, ("metrics",))
    refresh_aggregates(conn)
    totals = {}
    for r in ledger(ONE_M):
        for k in ("input", "output", "cache_read", "cache_write"):
            totals[k] = totals.get(k, 0) + r[k]
    assert totals["cache_read"] > 200_000
    want = list_price(SONNET_45, totals["input"], totals["output"], totals["cache_read"], totals["cache_write"], 0)
    costs = conn.execute("SELECT estimated_cost_usd FROM sessions").fetchall()
    assert costs == [(want,), (want,)]
    models = {m for (m,) in conn.execute("SELECT DISTINCT model FROM metric_points")}
    assert models == {"claude-sonnet-4-5"}  # stored under the name the events give it
    start = datetime(2020, 1, 1, tzinfo=UTC)
    end = datetime.now(UTC) + timedelta(days=2)
    [row] = query(app.test_client(), "llm_total_cost", start, end)["rows"]
    assert Decimal(str(row["value"])) == 2 * want and row["unpriced_tokens"] == 0


# ---- unknown is not zero ------------------------------------------------------------------------

def test_unpriced_usage_is_named_and_never_zero(client, conn, app):
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    events = [(hour + timedelta(minutes=5), "s1", "claude-haiku-4-5", 1000, 100),
              (hour + timedelta(minutes=6), "s1", "claude-opus-9-remapped", 4000, 300),
              (hour + timedelta(hours=2, minutes=1), "s2", "claude-opus-9-remapped", 50, 5)]
    assert post(client, "/v1/logs", api_requests(events)).status_code == 200
    refresh_aggregates(conn)
    q = app.test_client()
    start, end = hour - timedelta(hours=1), hour + timedelta(hours=4)
    priced = list_price(HAIKU_45, 1000, 100, 0, 0, 0)
    [row] = query(q, "llm_total_cost", start, end)["rows"]
    assert Decimal(str(row["value"])) == priced
    assert (row["unpriced_tokens"], row["unpriced_models"]) == (4300 + 55, "claude-opus-9-remapped")
    # Only unpriced usage: unknown (null), with its tokens; no usage at all: 0.
    [row] = query(q, "llm_total_cost", hour + timedelta(hours=2), end)["rows"]
    assert row["value"] is None and row["unpriced_tokens"] == 55
    [row] = query(q, "llm_total_cost", end, end + timedelta(hours=1))["rows"]
    assert (row["value"], row["unpriced_tokens"], row["unpriced_models"]) == (0, 0, "")
    top = {r["model"]: r for r in query(q, "llm_top_models_by_cost", start, end)["rows"]}
    assert top["claude-opus-9-remapped"]["cost"] is None and top["claude-opus-9-remapped"]["unpriced"] is True
    assert top["claude-opus-9-remapped"]["unpriced_tokens"] == 4355
    assert top["claude-haiku-4-5"]["unpriced"] is False
    assert Decimal(str(top["claude-haiku-4-5"]["cost"])) == priced
    series = {r["time"]: r["current"] for r in query(q, "llm_cost_over_time", start, end)["rows"]}
    ms = lambda t: int(t.timestamp() * 1000)  # noqa: E731
    assert Decimal(str(series[ms(hour)])) == priced
    assert series[ms(hour + timedelta(hours=1))] == 0       # no usage
    assert series[ms(hour + timedelta(hours=2))] is None    # usage, none of it priced


def _shifted_metrics(name: str, hours: int) -> bytes:
    req = metrics_fixture(name)
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                for p in getattr(m, kind).data_points:
                    p.time_unix_nano += hours * 3_600_000_000_000
                    if p.start_time_unix_nano:
                        p.start_time_unix_nano += hours * 3_600_000_000_000
    return req.SerializeToString()


def test_hours_of_events_counted_by_metric_points_have_their_cost(client, conn, app):
    """A session's events in one hour, its metric points (which count its tokens) two hours later:
    the cost is in the events' hour, and the points' hour costs 0, not null; tokens follow the
    points. Every hour is either a cost or 0, none a gap."""
    for path in sorted(FIXTURES.glob(f"{CACHE}-logs-*.pb")):
        assert post(client, "/v1/logs", path.read_bytes()).status_code == 200
    metrics = sorted(FIXTURES.glob(f"{CACHE}-metrics-*.pb"))
    assert metrics
    for path in metrics:
        assert post(client, "/v1/metrics", _shifted_metrics(path.name, 2)).status_code == 200
    refresh_aggregates(conn)
    times = event_times(CACHE)
    hour = min(times).replace(minute=0, second=0, microsecond=0)
    assert max(times) < hour + timedelta(hours=1)
    q = app.test_client()
    start, end = hour, hour + timedelta(hours=4)
    cost = {r["time"]: r["current"] for r in query(q, "llm_cost_over_time", start, end)["rows"]}
    tokens = {r["time"]: r["current"] for r in query(q, "llm_tokens_over_time", start, end)["rows"]}
    ms = lambda t: int(t.timestamp() * 1000)  # noqa: E731
    want = sum(sonnet(r["input"], r["output"], r["cache_read"], r["cache_write_5m"], r["cache_write_1h"])
               for r in ledger(CACHE))
    assert Decimal(str(cost[ms(hour)])) == want and tokens[ms(hour)] == 0
    assert cost[ms(hour + timedelta(hours=2))] == 0
    assert tokens[ms(hour + timedelta(hours=2))] == sum(
        r["input"] + r["output"] + r["cache_read"] + r["cache_write"] for r in ledger(CACHE))
    assert None not in cost.values()


def test_cache_write_split_read_from_the_event():
    """cache_creation_tokens holds both lifetimes; without it the two parts add up to it; more
    1-hour writes than writes keeps the request, its total as reported, and leaves it unpriced
    (its figures contradict each other: no price is guessed)."""
    from agent_analytics.ingest import normalise
    from agent_analytics.ingest.rows import Context

    now = time.time_ns()
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    kv = rl.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "claude-code"
    sl = rl.scope_logs.add()
    sl.scope.name = "com.anthropic.claude_code.events"
    base = {"event.name": "api_request", "model": "claude-sonnet-4-5", "input_tokens": 10, "output_tokens": 1}
    for attrs in ({**base, "cache_creation_tokens": 12000, "cache_creation_5m_tokens": 4000,
                   "cache_creation_1h_tokens": 8000},
                  {**base, "cache_creation_5m_tokens": 300, "cache_creation_1h_tokens": 700},
                  {**base, "cache_creation_tokens": 10},
                  {**base, "cache_creation_tokens": 100, "cache_creation_1h_tokens": 101}):
        rec = sl.log_records.add()
        rec.time_unix_nano = now
        for k, v in attrs.items():
            a = rec.attributes.add()
            a.key = k
            set_value(a.value, v)
    b = normalise.logs(req, Context(now_ns=now))
    assert [(r.cache_write_tokens, r.cache_write_1h_tokens) for r in b.llm_requests] == [
        (12000, 8000), (1000, 700), (10, 0), (100, 0)]
    assert not b.rejections
    pricing.price(b)
    assert [r.estimated_cost_usd for r in b.llm_requests] == [
        list_price(SONNET_45, 10, 1, 0, 4000, 8000), list_price(SONNET_45, 10, 1, 0, 300, 700),
        list_price(SONNET_45, 10, 1, 0, 10, 0), None]
    assert [r.cost_basis for r in b.llm_requests] == ["list_price"] * 3 + ["inconsistent_split"]


def test_every_captured_request_costs_what_claude_code_says_below_the_long_context_tier():
    """Claude Code's own cost_usd per api_request is an independent oracle: every captured request
    (most with 1-hour cache writes) is priced to the same figure, except those whose own input
    passes 200K tokens, where Claude Code 2.1.332 applies no long-context price and the list
    price is the long-context rates'."""
    from agent_analytics.ingest import normalise
    from agent_analytics.ingest.rows import Context

    ctx = Context(now_ns=time.time_ns() + 10 * 365 * 86_400 * 10**9)
    compared = with_1h = long = 0
    for path in sorted(FIXTURES.glob("claude-code-*-logs-*.pb")):
        batch = normalise.logs(logs_fixture(path.name), ctx)
        pricing.price(batch)
        for r in batch.llm_requests:
            if r.reported_cost_usd is None:
                continue
            total_input = r.input_tokens + r.cache_read_tokens + r.cache_write_tokens
            if total_input > 200_000:
                long += 1
                assert r.estimated_cost_usd == sonnet(r.input_tokens, r.output_tokens, r.cache_read_tokens,
                                                       r.cache_write_tokens - r.cache_write_1h_tokens,
                                                       r.cache_write_1h_tokens), path.name
                continue
            assert abs(r.estimated_cost_usd - r.reported_cost_usd) < Decimal("1e-12"), (path.name, r)
            compared += 1
            with_1h += r.cache_write_1h_tokens > 0
    assert compared >= 50 and with_1h >= 50 and long == 4, (compared, with_1h, long)
