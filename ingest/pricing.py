"""List-price estimates with genai-prices (its price data ships inside the package: offline).

genai-prices' Usage.input_tokens INCLUDES cache reads and writes, while our input_tokens
excludes them, so they are added back here. A model genai-prices does not know keeps its
tokens and gets estimated_cost_usd NULL with cost_basis 'unpriced' (never 0).
"""
from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from genai_prices import Usage, calc_price

from .rows import Batch, LlmRequest, MetricPoint, to_datetime

LIST_PRICE = "list_price"
UNPRICED = "unpriced"
# Our provider names (gen_ai.provider.name values) that genai-prices spells differently.
PROVIDER_IDS = {"gcp.gemini": "google", "gcp.vertex_ai": "google", "aws.bedrock": "aws",
                "azure.ai.openai": "azure", "x_ai": "x-ai"}


@lru_cache(maxsize=1024)
def _provider_for(provider: str, model: str) -> str | None | bool:
    """The provider id genai-prices knows this model under; False when it knows it under none."""
    probe = Usage(input_tokens=1)
    pid = PROVIDER_IDS.get(provider, provider)
    for candidate in ((pid,) if pid and pid != "unknown" else ()) + (None,):
        try:
            calc_price(probe, model, provider_id=candidate)
            return candidate
        except LookupError:
            continue
    return False


def estimate(provider: str, model: str, input_tokens: int, output_tokens: int, cache_read_tokens: int,
             cache_write_tokens: int, time_ns: int | None = None) -> Decimal | None:
    """List price in USD; None when the model is unknown. input_tokens excludes cache here."""
    pid = _provider_for(provider, model)
    if pid is False:
        return None
    usage = Usage(input_tokens=input_tokens + cache_read_tokens + cache_write_tokens,
                  cache_read_tokens=cache_read_tokens, cache_write_tokens=cache_write_tokens,
                  output_tokens=output_tokens)
    try:
        result = calc_price(usage, model, provider_id=pid,
                            genai_request_timestamp=to_datetime(time_ns) if time_ns else None)
    except LookupError:
        return None
    return Decimal(result.total_price)


def price_request(r: LlmRequest) -> None:
    r.estimated_cost_usd = estimate(r.provider, r.model, r.input_tokens, r.output_tokens, r.cache_read_tokens,
                                    r.cache_write_tokens, r.time_ns)
    r.cost_basis = LIST_PRICE if r.estimated_cost_usd is not None else UNPRICED


def price_point(p: MetricPoint) -> None:
    """A token point priced as that many tokens of its type; cost points carry no estimate."""
    if p.metric != "tokens":
        p.estimated_cost_usd, p.priced = None, True
        return
    n = int(round(p.value))
    by_type = {"input": (n, 0, 0, 0), "output": (0, n, 0, 0), "cache_read": (0, 0, n, 0),
               "cache_write": (0, 0, 0, n)}
    p.estimated_cost_usd = estimate(p.provider, p.model, *by_type[p.token_type], time_ns=p.time_ns)
    p.priced = p.estimated_cost_usd is not None


def price(batch: Batch) -> None:
    """Estimate every request and delta point of a batch (cumulative points are priced by the
    store once it has turned them into deltas)."""
    for r in batch.llm_requests:
        price_request(r)
    for p in batch.metric_points:
        if not p.cumulative:
            price_point(p)
