"""Unpriced is never silent, unknown is never 0 (issue 17): per session, per bucket of the cost
chart, per top-list row, under either cost source. Oracles: Anthropic's published list prices
(tests/test_cost_basis.py) and the captured fixtures' ledgers, not the code under test."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from agent_analytics.sql.migrate import refresh_aggregates
from tests.ingest_support import post
from tests.test_cost_basis import CACHE, HAIKU_45, _api_requests, _ledger, _list_price, _post_all, _query

UTC = timezone.utc
UNKNOWN = "claude-opus-9-remapped"  # no price table knows it
WIDE = (datetime(2020, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=2))


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def test_top_lists_have_no_request_count_for_metrics_only_usage(client, conn, app):
    """Metric points say nothing of how many requests they sum: a user or model seen only
    through them has requests null (unknown), not 0; once the events arrive, their count."""
    _post_all(client, CACHE, ("metrics",))
    refresh_aggregates(conn)
    q = app.test_client()
    for metric in ("llm_top_users_by_cost", "llm_top_users_by_tokens", "llm_top_models_by_cost",
                   "llm_top_models_by_tokens"):
        [row] = _query(q, metric, *WIDE)["rows"]
        assert row["requests"] is None and row["tokens"] > 0, (metric, row)


def test_top_lists_count_the_requests_of_events(client, conn, app):
    _post_all(client, CACHE)
    refresh_aggregates(conn)
    q = app.test_client()
    for metric in ("llm_top_users_by_cost", "llm_top_models_by_tokens"):
        [row] = _query(q, metric, *WIDE)["rows"]
        assert row["requests"] == len(_ledger(CACHE)), (metric, row)


def test_a_cost_bucket_partly_unpriced_says_so(client, conn, app):
    """The cost chart's bucket with a priced and an unpriced request shows the priced cost and
    the tokens it could not price; a wholly priced bucket 0 unpriced tokens."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    events = [(hour + timedelta(minutes=5), "s1", "claude-haiku-4-5", 1000, 100),
              (hour + timedelta(minutes=6), "s1", UNKNOWN, 4000, 300),
              (hour + timedelta(hours=2, minutes=1), "s2", "claude-haiku-4-5", 50, 5)]
    assert post(client, "/v1/logs", _api_requests(events)).status_code == 200
    refresh_aggregates(conn)
    rows = {r["time"]: r for r in _query(app.test_client(), "llm_cost_over_time", hour - timedelta(hours=1),
                                         hour + timedelta(hours=4))["rows"]}
    first, third = rows[_ms(hour)], rows[_ms(hour + timedelta(hours=2))]
    assert Decimal(str(first["current"])) == _list_price(HAIKU_45, 1000, 100, 0, 0, 0)
    assert first["unpriced_tokens"] == 4300
    assert Decimal(str(third["current"])) == _list_price(HAIKU_45, 50, 5, 0, 0, 0)
    assert third["unpriced_tokens"] == 0
    assert rows[_ms(hour + timedelta(hours=1))]["unpriced_tokens"] == 0
