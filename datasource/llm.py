"""LLM Usage: tokens, cost and requests of the agents' model calls, each request counted once
(engine.Engine's LLM source). Each metric is declared once here (METRICS, collected by
catalog.py) with what it reads and its builder."""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

from psycopg import sql

from agent_analytics.config import ATTRIBUTION
from agent_analytics.datasource import kinds, llm_health
from agent_analytics.datasource.budgets import METRIC as BUDGETS
from agent_analytics.datasource.catalog import (COST_COLUMN, Column, COUNT, LLM_FILTERS,
                                                REQUESTS_COLUMN, TOKENS_COLUMN, UNPRICED_COLUMNS, USD, USER_COLUMNS,
                                                Metric, attribution_columns, col)
from agent_analytics.datasource.declare import series, stat, top
from agent_analytics.datasource.llm_health import llm_groups
from agent_analytics.datasource.query import Query
from agent_analytics.datasource.relations import ALL, BY_MODEL, LLM_USAGE, reads
from agent_analytics.datasource.result import Result
from agent_analytics.datasource.sqltext import LLM_BUCKET_SUMS, LLM_TOTALS, TOKEN_TYPES

if TYPE_CHECKING:
    from agent_analytics.datasource.engine import Engine


def _by_cost_then(dimension: str) -> Callable[[dict[str, Any]], tuple]:
    """By cost, then the attributed rows before the unattributed one, then by value."""
    return lambda r: (*_by_cost(r), not r["attributed"], r[dimension])


def _by_cost(r: dict[str, Any]) -> tuple:
    """cost DESC NULLS LAST, then tokens DESC (names follow, in byte order: COLLATE "C")."""
    return (r["cost"] is None, -(r["cost"] or 0), -r["tokens"])


def total_cost(e: Engine, q: Query) -> Result:
    """The total cost (shared with the other totals), the tokens it could not price and, when
    there are any, their models (from the groups the top-model lists read)."""
    r = q.metric.dataset_reads
    result = kinds.stat(e, q, (r.dataset, r.rows, LLM_TOTALS, kinds.column("cost")), ("unpriced_tokens",))
    row = result.rows[0]
    row["unpriced_models"] = ""
    if row["unpriced_tokens"]:
        by_model, groups_read = replace(q, metric=TOP_MODELS_BY_COST), TOP_MODELS_BY_COST.dataset_reads
        groups = e.with_src(e._src(groups_read.dataset, q.window, by_model, groups_read.rows), llm_groups("model"),
                            shared=True)
        row["unpriced_models"] = ", ".join(sorted({g["model"] for g in groups if g["unpriced"]}))
    return result


def tokens_by_type(e: Engine, q: Query) -> Result:
    read = q.metric.dataset_reads
    totals = e.with_src(e._src(read.dataset, q.window, q, read.rows), LLM_TOTALS, shared=True)[0]
    return Result([{"type": t, "tokens": totals[t]} for t in TOKEN_TYPES])


def status(e: Engine, q: Query) -> Result:
    # Existence checks read one row. Sessions first: a small table, where the raw tables'
    # every chunk costs planning time; LLM rows without a session only when it has none.
    e._note("sessions")
    has = e.fetch(sql.SQL("SELECT EXISTS (SELECT 1 FROM sessions WHERE requests > 0 OR points > 0)"
                          " AS has_data"), [])[0]["has_data"]
    if not has:
        e._note("llm_requests")
        e._note("metric_points")
        has = e.fetch(sql.SQL("SELECT (EXISTS (SELECT 1 FROM llm_requests)"
                              " OR EXISTS (SELECT 1 FROM metric_points)) AS has_data"), [])[0]["has_data"]
    has = bool(has)
    message = ("" if has else "No LLM telemetry yet: configure your agents (Claude Code, Codex) to send "
               "OpenTelemetry data to the gateway; the Telemetry page shows what is arriving.")
    return Result([{"has_data": has, "message": message, "setup_url": e.setup_url}])


_MEASURES = (TOKENS_COLUMN, COST_COLUMN, REQUESTS_COLUMN)
_MODEL = (col("provider", title="Provider"), col("model", title="Model"))


def _others(measure: Column) -> tuple[Column, ...]:
    """A top list's columns after its measure: the other measures, then what it could not price."""
    return tuple(c for c in _MEASURES if c != measure) + UNPRICED_COLUMNS


TOP_MODELS_BY_COST = top(
    "llm_top_models_by_cost", "llm", "Top models by cost", _MODEL, COST_COLUMN, LLM_FILTERS,
    "Models ranked by cost (unpriced last: cost null, unpriced true, never $0).", LLM_USAGE, ALL,
    needs=BY_MODEL, body=llm_groups("model"), more=_others(COST_COLUMN),
    order=lambda r: (*_by_cost(r), r["provider"], r["model"]))

# Per session its metric points when it sent any, else its request events (never both).
METRICS: tuple[Metric, ...] = (
    stat("llm_total_tokens", "llm", "Total tokens", COUNT, LLM_FILTERS, "Input + output + cache read + cache write.",
         LLM_USAGE, ALL, needs=(), body=LLM_TOTALS, value=kinds.column("tokens")),
    stat("llm_total_cost", "llm", "Total cost", USD, LLM_FILTERS,
         "Cost in USD (AA_COST_SOURCE), request by request where the requests are known; "
         "null when there is usage but none of it priced, 0 when there is none. unpriced_tokens and "
         "unpriced_models: what it could not price (docs/ingest.md, Cost).", LLM_USAGE, ALL, needs=(),
         body=LLM_TOTALS, more=(col("unpriced_tokens", "number", COUNT, "Unpriced tokens"),
                                 col("unpriced_models", title="Unpriced models")), build=total_cost),
    # Counted from the groups the top-model lists read.
    stat("llm_models_used", "llm", "Models used", COUNT, LLM_FILTERS, "Distinct models with at least one request.",
         LLM_USAGE, ALL, needs=("model",), body=llm_groups("model"),
         value=lambda groups: len({g["model"] for g in groups})),
    Metric("llm_tokens_by_type", "llm", "bars", "Tokens by type", COUNT,
           (col("type", title="Token type"), TOKENS_COLUMN), LLM_FILTERS,
           "Four rows: input, output, cache_read, cache_write.",
           build=tokens_by_type, reads=reads(LLM_USAGE, ALL, (), time=False)),
    series("llm_tokens_over_time", "llm", "Tokens", COUNT, LLM_FILTERS, "Tokens per bucket.", LLM_USAGE, ALL,
           needs=(), sums=LLM_BUCKET_SUMS, column="tokens"),
    # A cost bucket's tokens it could not price (a bucket partly priced says so, as the headline does).
    series("llm_cost_over_time", "llm", "Cost", USD, LLM_FILTERS,
           "Cost (USD) per bucket, null when the bucket has usage but none of it priced; "
           "unpriced_tokens: the bucket's tokens it could not price (docs/ingest.md, Cost).", LLM_USAGE, ALL,
           needs=(), sums=LLM_BUCKET_SUMS, column="cost",
           more=(col("unpriced_tokens", "number", COUNT, "Unpriced tokens"),)),
    # The row without a user after the others it ties with (NULLS LAST).
    top("llm_top_users_by_tokens", "llm", "Top users by tokens", USER_COLUMNS, TOKENS_COLUMN, LLM_FILTERS,
        "Users ranked by tokens; requests counts request events.", LLM_USAGE, ALL, needs=("user_id",),
        body=llm_groups("user"), more=_others(TOKENS_COLUMN),
        order=lambda r: (-r["tokens"], r["user_id"] is None, r["user_id"] or "")),
    top("llm_top_users_by_cost", "llm", "Top users by cost", USER_COLUMNS, COST_COLUMN, LLM_FILTERS,
        "Users ranked by cost (unpriced last).", LLM_USAGE, ALL, needs=("user_id",),
        body=llm_groups("user"), more=_others(COST_COLUMN),
        order=lambda r: (*_by_cost(r), r["user_id"] is None, r["user_id"] or "")),
    top("llm_top_models_by_tokens", "llm", "Top models by tokens", _MODEL, TOKENS_COLUMN, LLM_FILTERS,
        "Models ranked by tokens.", LLM_USAGE, ALL, needs=BY_MODEL, body=llm_groups("model"),
        more=_others(TOKENS_COLUMN), order=lambda r: (-r["tokens"], r["provider"], r["model"])),
    TOP_MODELS_BY_COST,
    # One per attribution dimension (config.ATTRIBUTION); the unattributed row after those it ties with.
    *(top(f"llm_cost_by_{d.name}", "llm", f"Cost by {d.title.lower()}", attribution_columns(d.name, d.title),
          COST_COLUMN, LLM_FILTERS,
          f"Cost and tokens by {d.title.lower()} (resource attribute {d.attribute} by default), ranked by cost "
          "(unpriced last); the usage of processes that set none is the (unattributed) row.", LLM_USAGE, ALL,
          needs=(d.name,), body=llm_groups(d.name), more=_others(COST_COLUMN),
          order=_by_cost_then(d.name))
      for d in ATTRIBUTION),
    Metric("llm_status", "llm", "status", "LLM telemetry status", None,
           (col("has_data", "boolean"), col("message"), col("setup_url")), (),
           "Empty state: has_data is false until any LLM telemetry (events or metrics) has arrived.",
           build=status, reads=None),
    # Health and where the money goes.
    *llm_health.METRICS,
)
# Budgets against their spend: declared in budgets.py, shown on LLM Usage.
METRICS += (BUDGETS,)
