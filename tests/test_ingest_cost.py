"""Estimates follow genai-prices where the price depends on the time of day, and an unknown
model's request is stored with its tokens, an unpriced (NULL) estimate, and counted."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from decimal import Decimal

from genai_prices import Usage, calc_price

from agent_analytics.ingest import pricing
from tests.ingest_support import add_attributes, post


def test_time_of_day_prices_follow_the_request_time():
    day = datetime(2026, 3, 2, tzinfo=timezone.utc)
    seen = set()
    for hour in (2, 12, 20):
        when = day.replace(hour=hour)
        got = pricing.estimate("deepseek", "deepseek-chat", 10_000, 1_000, 0, 0, int(when.timestamp() * 1e9))
        want = Decimal(calc_price(Usage(input_tokens=10_000, output_tokens=1_000), "deepseek-chat",
                                  provider_id="deepseek", genai_request_timestamp=when).total_price)
        assert got == want
        seen.add(got)
    assert len(seen) > 1, "off-peak and peak prices differ"


def test_unknown_model_counts_tokens_not_cost(client, conn, app):
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    a = rl.resource.attributes.add()
    a.key, a.value.string_value = "service.name", "claude-code"
    rec = rl.scope_logs.add().log_records.add()
    rec.time_unix_nano = time.time_ns()
    rec.body.string_value = "claude_code.api_request"
    add_attributes(rec.attributes, (("event.name", "api_request"), ("model", "claude-opus-5-5-remapped"),
                                    ("input_tokens", 40), ("output_tokens", 2), ("cache_read_tokens", 0),
                                    ("cache_creation_tokens", 0)))
    assert post(client, "/v1/logs", req.SerializeToString()).status_code == 200
    assert conn.execute("SELECT input_tokens, output_tokens, estimated_cost_usd, reported_cost_usd, cost_basis"
                        " FROM llm_requests").fetchall() == [(40, 2, None, None, "unpriced")]
    assert app.extensions["aa_registry"].get_sample_value(
        "aa_ingest_unpriced_total", {"kind": "request", "provider": "anthropic",
                                     "model": "claude-opus-5-5-remapped"}) == 1
