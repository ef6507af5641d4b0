"""The demo's 30 days, sent through the receiver into a real database: the total cost and the
top users by cost the query API answers equal the requests priced one by one at list price,
computed here from the demo's plan with genai-prices (not with the code under test)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

pytest.importorskip("opentelemetry.sdk")

from genai_prices import Usage, calc_price  # noqa: E402

from agent_analytics import demo  # noqa: E402
from tests.harness_support import INGEST_TOKEN, LLM_TOKEN, refresh_aggregates  # noqa: E402
from tests.ingest_support import Server  # noqa: E402


def _list_price(provider: str, r: demo.Request) -> Decimal:
    """One request at list price. The plan's input excludes cache reads and writes; genai-prices'
    includes them. Codex reports no cache writes."""
    usage = Usage(input_tokens=r.input_tokens + r.cache_read_tokens + r.cache_write_tokens,
                  cache_read_tokens=r.cache_read_tokens, cache_write_tokens=r.cache_write_tokens,
                  output_tokens=r.output_tokens)
    return Decimal(calc_price(usage, r.model, provider_id=provider).total_price)


def _query(client, metric: str, start: datetime, end: datetime, **params) -> dict:
    resp = client.get(f"/api/v1/query/{metric}", headers={"Authorization": f"Bearer {LLM_TOKEN}"},
                      query_string={"from": int(start.timestamp() * 1000), "to": int(end.timestamp() * 1000),
                                    **params})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def test_demo_total_cost_is_per_request_list_price(app, conn, capsys):
    p = demo.plan(days=30, users=12, seed=7, now=datetime.now(timezone.utc))
    per_user: dict[str, Decimal] = {}
    for s in p.sessions:
        for r in s.requests:
            per_user[s.user.id] = per_user.get(s.user.id, Decimal(0)) + _list_price(demo.PROVIDERS[s.agent], r)
    oracle = sum(per_user.values())
    # The demo's long sessions sum to metric points far above 200K tokens (the long-context tier).
    assert max(sum(r.cache_read_tokens for r in s.requests) for s in p.sessions) > 200_000

    with Server(app) as server:
        demo.send(p, server.url, INGEST_TOKEN, say=lambda s: None)
    refresh_aggregates(conn)
    client = app.test_client()
    start, end = p.now - timedelta(days=32), p.now + timedelta(hours=1)
    [row] = _query(client, "llm_total_cost", start, end)["rows"]
    with capsys.disabled():
        print(f"\ndemo total cost: {row['value']:.2f} USD; per-request list price: {float(oracle):.2f} USD")
    assert row["value"] == pytest.approx(float(oracle), rel=1e-12)
    assert row.get("unpriced_tokens", 0) == 0

    top = _query(client, "llm_top_users_by_cost", start, end, page_size=100)["rows"]
    want = sorted(per_user.items(), key=lambda kv: -kv[1])
    assert [r["user_id"] for r in top] == [u for u, _ in want]
    for r, (_, cost) in zip(top, want):
        assert r["cost"] == pytest.approx(float(cost), rel=1e-12)
