"""Unpriced is never silent, unknown is never 0: per session, per bucket of the cost
chart, per top-list row, under either cost source. Oracles: Anthropic's published list prices
(tests/test_cost_basis.py) and the captured fixtures' ledgers, not the code under test."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from genai_prices import Usage, calc_price
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from prometheus_client.parser import text_string_to_metric_families

from tests.harness_support import LLM_TOKEN, refresh_aggregates
from tests.ingest_support import assert_session_totals_match_the_rows, post, set_value
from tests.cost_support import CACHE, HAIKU_45, api_requests, ledger, list_price, post_all, query

UTC = timezone.utc
UNKNOWN = "claude-opus-9-remapped"  # no price table knows it
WIDE = (datetime(2020, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=2))


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def test_top_lists_have_no_request_count_for_metrics_only_usage(client, conn, app):
    """Metric points say nothing of how many requests they sum: a user or model seen only
    through them has requests null (unknown), not 0; once the events arrive, their count."""
    post_all(client, CACHE, ("metrics",))
    refresh_aggregates(conn)
    q = app.test_client()
    for metric in ("llm_top_users_by_cost", "llm_top_users_by_tokens", "llm_top_models_by_cost",
                   "llm_top_models_by_tokens"):
        [row] = query(q, metric, *WIDE)["rows"]
        assert row["requests"] is None and row["tokens"] > 0, (metric, row)


def test_top_lists_count_the_requests_of_events(client, conn, app):
    post_all(client, CACHE)
    refresh_aggregates(conn)
    q = app.test_client()
    for metric in ("llm_top_users_by_cost", "llm_top_models_by_tokens"):
        [row] = query(q, metric, *WIDE)["rows"]
        assert row["requests"] == len(ledger(CACHE)), (metric, row)


def test_a_cost_bucket_partly_unpriced_says_so(client, conn, app):
    """The cost chart's bucket with a priced and an unpriced request shows the priced cost and
    the tokens it could not price; a wholly priced bucket 0 unpriced tokens."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    events = [(hour + timedelta(minutes=5), "s1", "claude-haiku-4-5", 1000, 100),
              (hour + timedelta(minutes=6), "s1", UNKNOWN, 4000, 300),
              (hour + timedelta(hours=2, minutes=1), "s2", "claude-haiku-4-5", 50, 5)]
    assert post(client, "/v1/logs", api_requests(events)).status_code == 200
    refresh_aggregates(conn)
    rows = {r["time"]: r for r in query(app.test_client(), "llm_cost_over_time", hour - timedelta(hours=1),
                                         hour + timedelta(hours=4))["rows"]}
    first, third = rows[_ms(hour)], rows[_ms(hour + timedelta(hours=2))]
    assert Decimal(str(first["current"])) == list_price(HAIKU_45, 1000, 100, 0, 0, 0)
    assert first["unpriced_tokens"] == 4300
    assert Decimal(str(third["current"])) == list_price(HAIKU_45, 50, 5, 0, 0, 0)
    assert third["unpriced_tokens"] == 0
    assert rows[_ms(hour + timedelta(hours=1))]["unpriced_tokens"] == 0


def _sessions(q, start: datetime, end: datetime, **params) -> dict[str, dict]:
    return {r["session_id"]: r for r in query(q, "sessions_table", start, end, order_by="cost", **params)["rows"]}


def test_a_session_partly_unpriced_says_so(client, conn, app):
    """A session using Haiku and a model no price table knows: its cost is Haiku's, and the table
    and the drawer say how many of its tokens went unpriced (kept at ingest, and grouped from
    the rows for a window cutting through it or under a model filter)."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    events = [(hour + timedelta(minutes=5), "s1", "claude-haiku-4-5", 1000, 100),
              (hour + timedelta(minutes=6), "s1", UNKNOWN, 4000, 300),
              (hour + timedelta(minutes=7), "s2", "claude-haiku-4-5", 50, 5)]
    assert post(client, "/v1/logs", api_requests(events)).status_code == 200
    refresh_aggregates(conn)
    assert_session_totals_match_the_rows(conn)
    q = app.test_client()
    start, end = hour - timedelta(hours=1), hour + timedelta(hours=4)
    rows = _sessions(q, start, end)
    haiku = list_price(HAIKU_45, 1000, 100, 0, 0, 0)
    assert Decimal(str(rows["s1"]["cost"])) == haiku
    assert (rows["s1"]["unpriced_tokens"], rows["s1"]["unpriced"]) == (4300, True)
    assert (rows["s2"]["unpriced_tokens"], rows["s2"]["unpriced"]) == (0, False)
    [drawer] = query(q, "session_totals", start, end, session="s1")["rows"]
    assert Decimal(str(drawer["cost"])) == haiku and drawer["unpriced_tokens"] == 4300
    # A window holding only the unknown model's request: nothing priced (null), 4300 unpriced.
    rows = _sessions(q, hour + timedelta(minutes=5, seconds=30), end)
    assert rows["s1"]["cost"] is None and rows["s1"]["unpriced_tokens"] == 4300
    # A model filter groups the rows; the unknown model's part of s1 alone.
    [row] = _sessions(q, start, end, model=UNKNOWN).values()
    assert (row["session_id"], row["cost"], row["unpriced_tokens"]) == ("s1", None, 4300)
    # Claude Code's events here carry no cost_usd: under the reported cost nothing is priced.
    app.config["AA"] = app.config["AA"].replace(cost_source="reported")
    rows = _sessions(q, start, end)
    assert (rows["s1"]["cost"], rows["s1"]["unpriced_tokens"]) == (None, 5400)
    assert (rows["s2"]["cost"], rows["s2"]["unpriced_tokens"]) == (None, 55)


def _genai_token_points(t: datetime, conversation: str, model: str, tokens: dict[str, int]) -> bytes:
    """OpenTelemetry GenAI semantic conventions' gen_ai.client.token.usage (a histogram per token
    type), with a conversation id: a session seen through metric points only, with no cost metric."""
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    set_value(_kv(rm.resource.attributes, "service.name"), "support-bot")
    m = rm.scope_metrics.add().metrics.add()
    m.name, m.unit = "gen_ai.client.token.usage", "{token}"
    m.histogram.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    for token_type, n in tokens.items():
        dp = m.histogram.data_points.add()
        dp.time_unix_nano = int(t.timestamp() * 1e9)
        dp.start_time_unix_nano = dp.time_unix_nano - 60 * 10**9
        dp.sum, dp.count = n, 1
        for k, v in (("gen_ai.operation.name", "chat"), ("gen_ai.provider.name", "openai"),
                     ("gen_ai.request.model", model), ("gen_ai.token.type", token_type),
                     ("gen_ai.conversation.id", conversation)):
            set_value(_kv(dp.attributes, k), v)
    return req.SerializeToString()


def _kv(attributes, key: str):
    kv = attributes.add()
    kv.key = key
    return kv.value


def test_metrics_without_a_cost_metric_are_unpriced_under_the_reported_cost(client, conn, app):
    """AA_COST_SOURCE=reported: a GenAI conversation seen only through token points reports no
    cost, so its cost is unknown (null) and its tokens unpriced, in the headline, the top lists
    and the sessions table; a Claude Code session's points come with its cost.usage points."""
    t = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3, minutes=-20)
    assert post(client, "/v1/metrics", _genai_token_points(t, "conv-1", "gpt-4o",
                                                           {"input": 500, "output": 50})).status_code == 200
    post_all(client, CACHE, ("metrics",))
    refresh_aggregates(conn)
    assert_session_totals_match_the_rows(conn)
    q = app.test_client()
    # The estimate prices them at gpt-4o's list price.
    gpt = Decimal(str(calc_price(Usage(input_tokens=500, output_tokens=50), "gpt-4o",
                                 provider_id="openai").total_price))
    assert Decimal(str(_sessions(q, *WIDE)["conv-1"]["cost"])) == gpt
    app.config["AA"] = app.config["AA"].replace(cost_source="reported")
    [row] = query(q, "llm_total_cost", *WIDE)["rows"]
    assert (row["unpriced_tokens"], row["unpriced_models"]) == (550, "gpt-4o")
    top = {r["model"]: r for r in query(q, "llm_top_models_by_cost", *WIDE)["rows"]}
    assert (top["gpt-4o"]["cost"], top["gpt-4o"]["unpriced_tokens"], top["gpt-4o"]["unpriced"]) == (None, 550, True)
    assert top["claude-sonnet-4-5"]["unpriced"] is False and top["claude-sonnet-4-5"]["cost"] > 0
    rows = _sessions(q, *WIDE)
    assert (rows["conv-1"]["cost"], rows["conv-1"]["unpriced_tokens"]) == (None, 550)
    [cc] = [r for sid, r in rows.items() if sid != "conv-1"]
    assert cc["cost"] > 0 and cc["unpriced_tokens"] == 0
    # Grouped from the rows (a model filter): the same.
    [row] = _sessions(q, *WIDE, model="gpt-4o").values()
    assert (row["cost"], row["unpriced_tokens"]) == (None, 550)


def _claude_requests(events: list[tuple[datetime, str, dict]]) -> bytes:
    """Claude Code api_request events: (time, session, attributes beside the event's name)."""
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    set_value(_kv(rl.resource.attributes, "service.name"), "claude-code")
    sl = rl.scope_logs.add()
    sl.scope.name = "com.anthropic.claude_code.events"
    for i, (t, session, attrs) in enumerate(events):
        rec = sl.log_records.add()
        rec.time_unix_nano = int(t.timestamp() * 1e9)
        rec.body.string_value = "claude_code.api_request"
        for k, v in {"event.name": "api_request", "session.id": session, "user.email": "ann@example.com",
                     "event.sequence": i, **attrs}.items():
            set_value(_kv(rec.attributes, k), v)
    return req.SerializeToString()


def test_a_request_whose_cache_split_contradicts_its_total_is_kept_unpriced(client, conn, app):
    """More 1-hour cache writes than writes: the request is stored (its tokens as reported, its
    own cost_usd), its list price unknown: the session's cost is its other request's, and the
    headline, the session and the cost bucket count its tokens as unpriced."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    base = {"model": "claude-haiku-4-5", "input_tokens": 1000, "output_tokens": 100, "cache_read_tokens": 0}
    events = [(hour + timedelta(minutes=1), "s1", {**base, "cache_creation_tokens": 2000,
                                                   "cache_creation_5m_tokens": 500, "cache_creation_1h_tokens": 1500,
                                                   "cost_usd": 0.5}),
              (hour + timedelta(minutes=2), "s1", {**base, "cache_creation_tokens": 2000,
                                                   "cache_creation_5m_tokens": 0, "cache_creation_1h_tokens": 3000,
                                                   "cost_usd": 0.25})]
    resp = post(client, "/v1/logs", _claude_requests(events))
    assert resp.status_code == 200 and "partial_success" not in (resp.get_json() or {}), resp.get_json()
    refresh_aggregates(conn)
    assert_session_totals_match_the_rows(conn)
    assert conn.execute("SELECT count(*), count(estimated_cost_usd) FROM llm_requests").fetchone() == (2, 1)
    scraped = client.get("/metrics", headers={"Authorization": f"Bearer {LLM_TOKEN}"})
    assert scraped.status_code == 200
    assert [(s.labels, s.value) for f in text_string_to_metric_families(scraped.get_data(as_text=True))
            for s in f.samples if s.name == "aa_ingest_unpriced_total"] == [
        ({"kind": "inconsistent_request", "provider": "anthropic", "model": "claude-haiku-4-5"}, 1.0)]
    q = app.test_client()
    priced = list_price(HAIKU_45, 1000, 100, 0, 500, 1500)
    start, end = hour - timedelta(hours=1), hour + timedelta(hours=2)
    [row] = query(q, "llm_total_cost", start, end)["rows"]
    assert Decimal(str(row["value"])) == priced
    assert (row["unpriced_tokens"], row["unpriced_models"]) == (3100, "claude-haiku-4-5")
    [s1] = _sessions(q, start, end).values()
    assert Decimal(str(s1["cost"])) == priced and (s1["unpriced_tokens"], s1["requests"]) == (3100, 2)
    assert s1["tokens"] == 2 * 3100
    bucket = {r["time"]: r for r in query(q, "llm_cost_over_time", start, end)["rows"]}[_ms(hour)]
    assert Decimal(str(bucket["current"])) == priced and bucket["unpriced_tokens"] == 3100
    # The agent's own figure stays: the reported cost knows both requests.
    app.config["AA"] = app.config["AA"].replace(cost_source="reported")
    [row] = query(q, "llm_total_cost", start, end)["rows"]
    assert Decimal(str(row["value"])) == Decimal("0.75") and row["unpriced_tokens"] == 0
