"""List-price estimates with genai-prices (its price data ships inside the package: offline).

genai-prices' Usage.input_tokens INCLUDES cache reads and writes, while our input_tokens
excludes them, so they are added back here. A model genai-prices does not know keeps its
tokens and gets estimated_cost_usd NULL with cost_basis 'unpriced' (never 0).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Literal

from genai_prices import Usage, calc_price
from genai_prices.types import TieredPrices, TimeOfDateConstraint

from .rows import NS_PER_DAY, Batch, LlmRequest, MetricPoint, to_datetime

_EPOCH = date(1970, 1, 1)
LIST_PRICE = "list_price"
UNPRICED = "unpriced"
# Our provider names (gen_ai.provider.name values) that genai-prices spells differently.
PROVIDER_IDS = {"gcp.gemini": "google", "gcp.vertex_ai": "google", "aws.bedrock": "aws",
                "azure.ai.openai": "azure", "x_ai": "x-ai"}


@lru_cache(maxsize=1024)
def _provider_for(provider: str, model: str) -> str | None | Literal[False]:
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


@lru_cache(maxsize=1024)
def _time_of_day_priced(pid: str | None, model: str) -> bool:
    """Whether the model's price changes with the time of day (e.g. DeepSeek's off-peak hours):
    the per-day fast path would misprice those, so they go to genai-prices per request."""
    try:
        info = calc_price(Usage(input_tokens=1), model, provider_id=pid).model
    except LookupError:
        return False
    prices = info.prices if isinstance(info.prices, list) else [info.prices]
    constraints = [getattr(p, "constraint", None) for p in prices]
    constraints += [getattr(v, "constraint", None) for v in (getattr(info, "price_variants", None) or ())]
    return any(isinstance(c, TimeOfDateConstraint) for c in constraints)


@dataclass(frozen=True)
class _LinearPrice:
    """A model's list price for one day, as genai-prices computes it, reduced to what our usage
    needs: per tier band (total input tokens above each tier threshold) a constant per request
    and a price per token of each type. genai-prices is linear within a band ("cliff" tiers),
    so this gives its answers at a fraction of its per-call cost (about 1 ms, most of ingest)."""
    thresholds: tuple[int, ...]
    bands: tuple[tuple[Decimal, Decimal, Decimal, Decimal, Decimal], ...]  # const, in, out, read, write

    def price(self, input_tokens: int, output_tokens: int, cache_read: int, cache_write: int) -> Decimal:
        total_input = input_tokens + cache_read + cache_write
        band = sum(1 for t in self.thresholds if total_input > t)
        const, p_in, p_out, p_read, p_write = self.bands[band]
        return const + input_tokens * p_in + output_tokens * p_out + cache_read * p_read + cache_write * p_write


def _calc(pid: str | None, model: str, when: datetime | None, input_tokens: int = 0, output_tokens: int = 0,
          cache_read: int = 0, cache_write: int = 0) -> Decimal:
    usage = Usage(input_tokens=input_tokens + cache_read + cache_write, cache_read_tokens=cache_read,
                  cache_write_tokens=cache_write, output_tokens=output_tokens)
    return Decimal(calc_price(usage, model, provider_id=pid, genai_request_timestamp=when).total_price)


@lru_cache(maxsize=4096)
def _linear_price(pid: str | None, model: str, day: date | None) -> _LinearPrice | None:
    """Derive the linear form from genai-prices itself, then check it against a direct call;
    None (use genai-prices per request) when the model's price is not of that form."""
    when = datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc) if day else None
    try:
        model_price = calc_price(Usage(input_tokens=1), model, provider_id=pid,
                                 genai_request_timestamp=when).model_price
    except LookupError:
        return None
    thresholds = sorted({tier.start for v in vars(model_price).values() if isinstance(v, TieredPrices)
                         for tier in v.tiers})
    bands = []
    for lo in [0] + thresholds:
        n = lo + 1  # a total input that lands in this band
        const = _calc(pid, model, when)
        p_in = (_calc(pid, model, when, input_tokens=n) - const) / n
        p_read = (_calc(pid, model, when, cache_read=n) - const) / n
        p_write = (_calc(pid, model, when, cache_write=n) - const) / n
        p_out = (_calc(pid, model, when, input_tokens=n, output_tokens=n) - const) / n - p_in
        bands.append((const, p_in, p_out, p_read, p_write))
    linear = _LinearPrice(tuple(thresholds), tuple(bands))
    for probe in ((1234, 567, 8901, 234), (199_000, 40_000, 150_000, 9_000), (7, 0, 0, 0)):
        if abs(linear.price(*probe) - _calc(pid, model, when, *probe)) > Decimal("1e-15"):
            return None
    return linear


@lru_cache(maxsize=4096)
def _linear_price_on(pid: str | None, model: str, day_number: int | None) -> _LinearPrice | None:
    """`_linear_price` by the UTC day's number since the epoch (cheaper to work out per request)."""
    return _linear_price(pid, model, None if day_number is None else _EPOCH + timedelta(days=day_number))


def estimate(provider: str, model: str, input_tokens: int, output_tokens: int, cache_read_tokens: int,
             cache_write_tokens: int, time_ns: int | None = None) -> Decimal | None:
    """List price in USD; None when the model is unknown. input_tokens excludes cache here."""
    pid = _provider_for(provider, model)
    if pid is False:
        return None
    if not _time_of_day_priced(pid, model):
        linear = _linear_price_on(pid, model, time_ns // NS_PER_DAY if time_ns else None)
        if linear is not None:
            return linear.price(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
    when = to_datetime(time_ns) if time_ns else None
    try:
        return _calc(pid, model, when, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
    except LookupError:
        return None


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
