"""LLM Usage: tokens, cost and requests of the agents' model calls, each request counted once
(engine.Engine's LLM source). Each metric is declared once here, bound into HANDLERS by metric id."""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

from psycopg import sql

from agent_analytics.datasource import kinds
from agent_analytics.datasource.catalog import BY_ID, NO_USER
from agent_analytics.datasource.kinds import Handler, SeriesSpec, StatSpec, TopSpec
from agent_analytics.datasource.query import Query
from agent_analytics.datasource.relations import LLM_USAGE
from agent_analytics.datasource.result import Result
from agent_analytics.datasource.sqltext import COST_SUM as _COST_SUM
from agent_analytics.datasource.sqltext import TOKEN_TYPES
from agent_analytics.datasource.sqltext import TOKENS as _TOKENS
from agent_analytics.datasource.sqltext import literal as _literal

if TYPE_CHECKING:
    from agent_analytics.datasource.engine import Engine


def _llm_groups(key: str) -> str:
    """Every user's or model's tokens, cost and requests, unordered: the by-tokens and the
    by-cost panels share it and rank it with _LLM_TOP_ORDERS. Usage without a user is the
    "(no user)" row."""
    where = ""
    if key == "user":
        keys, inner_keys, join = (f"g.user_id, coalesce(u.display_name, u.email, g.user_id, {_literal(NO_USER)})"
                                  f" AS \"user\"", "user_id", "LEFT JOIN users u ON u.id = g.user_id")
    else:
        keys, inner_keys, join = "g.provider, g.model", "provider, model", ""
    return (f"SELECT {keys}, g.tokens, g.cost, g.requests, g.unpriced_tokens, g.unpriced_tokens > 0 AS unpriced"
            f" FROM (SELECT {inner_keys}, sum({_TOKENS})::float8 AS tokens, ({_COST_SUM})::float8 AS cost,"
            f" sum(requests) AS requests, coalesce(sum(unpriced_tokens), 0)::float8 AS unpriced_tokens"
            f" FROM src {where} GROUP BY {inner_keys}) g {join}")


def _by_cost(r: dict[str, Any]) -> tuple:
    """cost DESC NULLS LAST, then tokens DESC (names follow, in byte order: COLLATE "C")."""
    return (r["cost"] is None, -(r["cost"] or 0), -r["tokens"])


_LLM_TOP_ORDERS: dict[str, Callable[[dict[str, Any]], tuple]] = {
    # The row without a user after the others it ties with (NULLS LAST).
    "llm_top_users_by_tokens": lambda r: (-r["tokens"], r["user_id"] is None, r["user_id"] or ""),
    "llm_top_users_by_cost": lambda r: (*_by_cost(r), r["user_id"] is None, r["user_id"] or ""),
    "llm_top_models_by_tokens": lambda r: (-r["tokens"], r["provider"], r["model"]),
    "llm_top_models_by_cost": lambda r: (*_by_cost(r), r["provider"], r["model"]),
}


# Stats and series: the body run over `src` for the range and the previous one, and how the
# value is read from its rows. Every query is shared by the panels of a refresh asking it
# (Engine.fetch): LLM totals, token mix and both LLM series each run one body, for several panels.
_LLM_TOTALS = ("SELECT " + ", ".join(f"coalesce(sum({t}_tokens), 0) AS {t}" for t in TOKEN_TYPES)
               + f", coalesce(sum({_TOKENS}), 0) AS tokens, {_COST_SUM} AS cost,"
               " coalesce(sum(unpriced_tokens), 0) AS unpriced_tokens FROM src")
_LLM_BUCKET_SUMS = (f"sum({_TOKENS}) AS tokens, {_COST_SUM} AS cost,"
                    " coalesce(sum(unpriced_tokens), 0)::float8 AS unpriced_tokens")


STATS: dict[str, StatSpec] = {
    "llm_total_tokens": (LLM_USAGE, "TRUE", _LLM_TOTALS, kinds.column("tokens")),
    "llm_total_cost": (LLM_USAGE, "TRUE", _LLM_TOTALS, kinds.column("cost")),
    # Counted from the groups the top-model lists read.
    "llm_models_used": (LLM_USAGE, "TRUE", _llm_groups("model"), lambda groups: len({g["model"] for g in groups})),
}

# Columns of the range's row a stat answers besides its value (what a cost could not price).
STAT_EXTRAS = {"llm_total_cost": ("unpriced_tokens",)}

SERIES: dict[str, SeriesSpec] = {
    "llm_tokens_over_time": (LLM_USAGE, "TRUE", _LLM_BUCKET_SUMS, "tokens"),
    "llm_cost_over_time": (LLM_USAGE, "TRUE", _LLM_BUCKET_SUMS, "cost"),
}

# Columns of each bucket a series answers besides its value: a cost bucket's tokens it could
# not price (a bucket partly priced says so, as the headline does).
SERIES_EXTRAS = {"llm_cost_over_time": ("unpriced_tokens",)}

TOPS: dict[str, TopSpec] = {
    "llm_top_users_by_tokens": (LLM_USAGE, "TRUE", _llm_groups("user")),
    "llm_top_users_by_cost": (LLM_USAGE, "TRUE", _llm_groups("user")),
    "llm_top_models_by_tokens": (LLM_USAGE, "TRUE", _llm_groups("model")),
    "llm_top_models_by_cost": (LLM_USAGE, "TRUE", _llm_groups("model")),
}


def total_cost(e: Engine, q: Query) -> Result:
    """The total cost (shared with the other totals), the tokens it could not price and, when
    there are any, their models (from the groups the top-model lists read)."""
    result = kinds.stat(e, q, STATS["llm_total_cost"], STAT_EXTRAS["llm_total_cost"])
    row = result.rows[0]
    row["unpriced_models"] = ""
    if row["unpriced_tokens"]:
        by_model = replace(q, metric=BY_ID["llm_top_models_by_cost"])
        groups = e.with_src(e._src(LLM_USAGE, q.window, by_model), _llm_groups("model"), shared=True)
        row["unpriced_models"] = ", ".join(sorted({g["model"] for g in groups if g["unpriced"]}))
    return result


def tokens_by_type(e: Engine, q: Query) -> Result:
    rows = e.with_src(e._src(LLM_USAGE, q.window, q), _LLM_TOTALS, shared=True)
    r = rows[0]
    return Result([{"type": t, "tokens": r[t]} for t in TOKEN_TYPES])


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


HANDLERS: dict[str, Handler] = {
    **kinds.stats(STATS, STAT_EXTRAS), **kinds.series_of(SERIES, SERIES_EXTRAS), **kinds.tops(TOPS, _LLM_TOP_ORDERS),
    "llm_total_cost": total_cost,
    "llm_tokens_by_type": tokens_by_type,
    "llm_status": status,
}
