"""The fast list-price path gives genai-prices' own answers: checked against calc_price directly
for tiered and flat models, across tier thresholds, and for unknown models."""
from __future__ import annotations

import random
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price

from agent_analytics.ingest import pricing

MODELS = [("anthropic", "claude-sonnet-4-5"), ("anthropic", "claude-haiku-4-5"), ("anthropic", "claude-opus-4-1"),
          ("openai", "gpt-5"), ("openai", "gpt-5-mini"), ("google", "gemini-2.5-pro")]


@pytest.mark.parametrize("provider,model", MODELS)
def test_fast_path_equals_genai_prices(provider, model):
    rng = random.Random(model)
    when = datetime(2026, 11, 1, tzinfo=timezone.utc)
    for _ in range(200):
        inp, out = rng.randrange(0, 300_000), rng.randrange(0, 50_000)
        cr, cw = rng.randrange(0, 250_000), rng.randrange(0, 30_000)
        if rng.random() < 0.2:  # right at a 200k threshold
            inp, cr, cw = 200_000 - cr - cw if cr + cw < 200_000 else 0, cr, cw
        got = pricing.estimate(provider, model, inp, out, cr, cw, int(when.timestamp() * 1e9))
        want = Decimal(calc_price(Usage(input_tokens=inp + cr + cw, cache_read_tokens=cr, cache_write_tokens=cw,
                                        output_tokens=out), model, provider_id=provider,
                                  genai_request_timestamp=when).total_price)
        assert abs(got - want) < Decimal("1e-15"), (inp, out, cr, cw, got, want)
    assert pricing._linear_price(provider, model, when.date()) is not None, "fast path not taken"


def test_unknown_model_is_unpriced_not_zero():
    assert pricing.estimate("anthropic", "no-such-model-xyz", 100, 100, 0, 0) is None
