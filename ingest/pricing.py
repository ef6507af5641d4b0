"""List-price estimates with genai-prices (its price data ships inside the package: offline).

genai-prices' Usage.input_tokens INCLUDES cache reads and writes, while our input_tokens
excludes them, so they are added back here. A model genai-prices does not know keeps its
tokens and gets estimated_cost_usd NULL with cost_basis 'unpriced' (never 0).

A request is priced whole, as its provider bills it: a tier (e.g. Anthropic's long-context
prices above 200K input tokens) applies when that one request crosses it, and 1-hour cache
writes are priced at genai-prices' 1-hour rate. A metric point sums many requests, so it is
priced at the model's base tier (`price_point`): no aggregate crosses a tier. The basis of
each figure is in docs/ingest.md ("Cost").
"""
from __future__ import annotations

import re
from bisect import bisect_left
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
# A request whose cache-write split contradicts its total: its price is unknown, never guessed.
INCONSISTENT_SPLIT = "inconsistent_split"
# Our provider names (gen_ai.provider.name values) that genai-prices spells differently.
PROVIDER_IDS = {"gcp.gemini": "google", "gcp.vertex_ai": "google", "aws.bedrock": "aws",
                "azure.ai.openai": "azure", "x_ai": "x-ai"}
# A bracketed suffix names a context-window option, not another model: Claude Code's metrics
# say `claude-sonnet-4-5[1m]` where its events say `claude-sonnet-4-5`.
_OPTION_SUFFIX = re.compile(r"\[[^\[\]]*\]$")


def priced_model(model: str) -> str:
    """The name the price tables know a model under, and Claude Code's events name it by."""
    return _OPTION_SUFFIX.sub("", model) if model.endswith("]") else model


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
    # const, in, out, read, write (5-minute), write_1h (1-hour writes, part of `write`)
    bands: tuple[tuple[Decimal, Decimal, Decimal, Decimal, Decimal, Decimal], ...]

    def price(self, input_tokens: int, output_tokens: int, cache_read: int, cache_write: int,
              cache_write_1h: int = 0) -> Decimal:
        total_input = input_tokens + cache_read + cache_write
        band = bisect_left(self.thresholds, total_input)  # the thresholds below it (they are sorted)
        const, p_in, p_out, p_read, p_write, p_write_1h = self.bands[band]
        return (const + input_tokens * p_in + output_tokens * p_out + cache_read * p_read
                + (cache_write - cache_write_1h) * p_write + cache_write_1h * p_write_1h)


def _calc(pid: str | None, model: str, when: datetime | None, input_tokens: int = 0, output_tokens: int = 0,
          cache_read: int = 0, cache_write: int = 0, cache_write_1h: int = 0) -> Decimal:
    """genai-prices' price of one request; `cache_write` includes the 1-hour writes."""
    usage = Usage(input_tokens=input_tokens + cache_read + cache_write, cache_read_tokens=cache_read,
                  cache_write_tokens=cache_write, output_tokens=output_tokens)
    if cache_write_1h:
        usage.cache_write_1h_tokens = cache_write_1h
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
        p_write_1h = (_calc(pid, model, when, cache_write=n, cache_write_1h=n) - const) / n
        p_out = (_calc(pid, model, when, input_tokens=n, output_tokens=n) - const) / n - p_in
        bands.append((const, p_in, p_out, p_read, p_write, p_write_1h))
    linear = _LinearPrice(tuple(thresholds), tuple(bands))
    for probe in ((1234, 567, 8901, 234, 0), (199_000, 40_000, 150_000, 9_000, 5_000), (7, 0, 0, 0, 0),
                  (1500, 500, 210_000, 12_000, 8_000)):
        if abs(linear.price(*probe) - _calc(pid, model, when, *probe)) > Decimal("1e-15"):
            return None
    return linear


@lru_cache(maxsize=4096)
def _pricing_on(provider: str, model: str, day_number: int | None) -> tuple[str | None | Literal[False],
                                                                           _LinearPrice | None]:
    """For a provider, a model (as priced) and a UTC day (its number since the epoch): the id
    genai-prices knows the model under (False: none) and its linear price that day, where one
    serves (not for prices that change with the time of day). One lookup per request."""
    pid = _provider_for(provider, model)
    if pid is False or _time_of_day_priced(pid, model):
        return pid, None
    return pid, _linear_price(pid, model, None if day_number is None else _EPOCH + timedelta(days=day_number))


def estimate(provider: str, model: str, input_tokens: int, output_tokens: int, cache_read_tokens: int,
             cache_write_tokens: int, time_ns: int | None = None, cache_write_1h_tokens: int = 0) -> Decimal | None:
    """List price in USD of ONE request; None when the model is unknown. input_tokens excludes
    cache here; cache_write_tokens includes the 1-hour writes (cache_write_1h_tokens)."""
    model = priced_model(model)
    pid, linear = _pricing_on(provider, model, time_ns // NS_PER_DAY if time_ns else None)
    if pid is False:
        return None
    if linear is not None:
        return linear.price(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                            cache_write_1h_tokens)
    when = to_datetime(time_ns) if time_ns else None
    try:
        return _calc(pid, model, when, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                     cache_write_1h_tokens)
    except LookupError:
        return None


def base_rate(provider: str, model: str, token_type: str, time_ns: int | None = None) -> Decimal | None:
    """The price of one token of `token_type` (input, output, cache_read, cache_write: a 5-minute
    write) at the model's base tier, without any per-request charge; None when unknown."""
    one = {"input": (1, 0, 0, 0), "output": (0, 1, 0, 0), "cache_read": (0, 0, 1, 0), "cache_write": (0, 0, 0, 1)}
    nothing = estimate(provider, model, 0, 0, 0, 0, time_ns)
    single = estimate(provider, model, *one[token_type], time_ns=time_ns)
    return None if nothing is None or single is None else single - nothing


def price_request(r: LlmRequest) -> None:
    if r.split_inconsistent:
        r.estimated_cost_usd, r.cost_basis = None, INCONSISTENT_SPLIT
        return
    r.estimated_cost_usd = estimate(r.provider, r.model, r.input_tokens, r.output_tokens, r.cache_read_tokens,
                                    r.cache_write_tokens, r.time_ns, r.cache_write_1h_tokens)
    r.cost_basis = LIST_PRICE if r.estimated_cost_usd is not None else UNPRICED


def price_point(p: MetricPoint) -> None:
    """A token point sums many requests: priced at the base tier's rate for its type (no
    aggregate crosses a tier; 5-minute rate for cache writes, which points do not split; no
    per-request charge, the number of requests being unknown). Cost points carry no estimate."""
    if p.metric != "tokens":
        p.estimated_cost_usd, p.priced = None, True
        return
    rate = base_rate(p.provider, p.model, p.token_type, p.time_ns) if p.token_type else None
    p.estimated_cost_usd = None if rate is None else rate * int(round(p.value))
    p.priced = p.estimated_cost_usd is not None


def price(batch: Batch) -> None:
    """Estimate every request and delta point of a batch (cumulative points are priced by the
    store once it has turned them into deltas)."""
    for r in batch.llm_requests:
        price_request(r)
    for p in batch.metric_points:
        if not p.cumulative:
            price_point(p)
