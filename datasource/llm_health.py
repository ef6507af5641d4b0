"""LLM Usage: the agents' health and where the money goes. API errors against requests, request
durations and times to first token (exact percentiles, from rollups of whole milliseconds), the
cache hit ratio, and tokens and cost by main thread or subagent, by subagent, by effort and by
speed. Declared once each here; llm.py's METRICS lists them after its own (the drawer's
subagents, SESSION_SUBAGENTS, is the Sessions tab's: sessions.py lists it)."""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from psycopg import sql

from agent_analytics.config import ATTRIBUTION
from agent_analytics.datasource import kinds
from agent_analytics.datasource import timerange as tr
from agent_analytics.datasource.catalog import (COST_COLUMN, COUNT, LLM_FILTERS, MS, NO_ATTRIBUTION, NO_USER, PERCENT,
                                                REQUESTS_COLUMN, SESSION_FILTERS, TOKENS_COLUMN, UNPRICED_COLUMNS,
                                                USER_COLUMNS, Metric, col)
from agent_analytics.datasource.declare import series, stat, top
from agent_analytics.datasource.query import Query
from agent_analytics.datasource.relations import (ALL, BY_MODEL, IN_SESSION, LLM_ERRORS, LLM_LATENCY,
                                                  LLM_LATENCY_BANDS, LLM_ORIGIN, LLM_TTFT, LLM_TTFT_BANDS, LLM_USAGE,
                                                  SESSION_AGENTS, Dataset, reads)
from agent_analytics.datasource.result import Result, pct_change
from agent_analytics.datasource.sqltext import ALL_INPUT, CACHE_RATIO, COST_SUM, LLM_BUCKET_SUMS, LLM_TOTALS, TOKENS
from agent_analytics.datasource.sqltext import literal as _literal
from agent_analytics.sql.rollups import BAND_MS

if TYPE_CHECKING:
    from agent_analytics.datasource.engine import Engine

# ---- errors -------------------------------------------------------------------------------------

# Claude Code sends api_error for a request that failed for good (its retried failures that then
# succeed send nothing) and api_retries_exhausted when it gives up; Codex sends every failed
# attempt. So errors are failures the agents reported, not every failed HTTP attempt.
_ERROR_SUMS = ("coalesce(sum(errors) FILTER (WHERE kind = 'error'), 0) AS errors,"
               " coalesce(sum(errors) FILTER (WHERE kind = 'retries_exhausted'), 0) AS exhausted")
_ERROR_TOTALS = f"SELECT {_ERROR_SUMS} FROM src"
_ERRORS_NOTE = (" Retried failures that then succeed send no event (Claude Code); Codex reports each failed"
                " attempt.")

API_ERRORS = stat(
    "llm_api_errors", "llm", "API errors", COUNT, LLM_FILTERS,
    "Failed model API requests the agents reported (Claude Code api_error, Codex api_request with an error "
    "status)." + _ERRORS_NOTE, LLM_ERRORS, ALL, needs=("kind",), body=_ERROR_TOTALS, value=kinds.column("errors"))


def _rate(errors: float, requests: float) -> float | None:
    """Errors per 100 requests that ended (errors and successful requests); none ended: unknown."""
    return None if errors + requests == 0 else 100.0 * errors / (errors + requests)


def error_rate(e: Engine, q: Query) -> Result:
    """API errors against requests, for the range and the previous one (the requests from the
    LLM totals the other stats of a refresh read)."""
    prev = tr.previous_window(q.window, q.tz, q.ptd_unit, q.whole_unit)
    errors_q = replace(q, metric=API_ERRORS)
    out = []
    for window in (q.window, prev):
        errors = e.with_src(e._src(LLM_ERRORS, window, errors_q), _ERROR_TOTALS, shared=True)[0]["errors"]
        requests = e.with_src(e._src(LLM_USAGE, window, q), LLM_TOTALS, shared=True)[0]["requests"]
        out.append((_rate(errors, requests), errors, requests))
    (value, errors, requests), (previous, _, _) = out
    return Result([{"value": value, "previous": previous, "change_pct": pct_change(value, previous),
                    "errors": errors, "requests": requests}])


_BY_STATUS = (f"SELECT provider, model, status_code, {_ERROR_SUMS}, count(*) OVER () AS total FROM src"
              " GROUP BY provider, model, status_code"
              " ORDER BY errors DESC, exhausted DESC, provider COLLATE \"C\", model COLLATE \"C\", status_code")

# ---- durations and time to first token ------------------------------------------------------------


def _percentiles(column: str, by: str = "") -> str:
    """P50 and P95 of `column` (requests per whole millisecond in `src`), as percentile_disc
    gives them over the requests themselves: the smallest duration with at least that share of
    the requests at or below it. Exact: every request's millisecond is in the rollups."""
    part = f"PARTITION BY {by}" if by else ""
    keys = f"{by}, " if by else ""
    return (f"SELECT {keys}sum(n)::float8 AS requests,"
            f" min({column}) FILTER (WHERE cum >= 0.5 * total)::float8 AS p50,"
            f" min({column}) FILTER (WHERE cum >= 0.95 * total)::float8 AS p95"
            f" FROM (SELECT {keys}{column}, n, sum(n) OVER ({part} ORDER BY {column}) AS cum,"
            f" sum(n) OVER ({part}) AS total"
            f" FROM (SELECT {keys}{column}, sum(requests) AS n FROM src GROUP BY {keys}{column}) g) c"
            + (f" GROUP BY {by}" if by else ""))


def _banded(column: str, by: str, bands: str, values: str, ps: tuple[float, ...] = (0.5, 0.95),
            models: bool = True) -> str:
    """_percentiles' answer (of the percentiles `ps` among P50 and P95), read in two steps: the
    band of BAND_MS milliseconds holding each percentile's rank and the requests below it, from
    the cumulative band counts of `bands` (requests per band and the keys of `by`, such as the
    window `w`, and per provider and model unless `models` is false: rollups over every model);
    then the milliseconds of that band alone, from `values` (requests per whole millisecond of
    `column` and the same keys), each probed per band and keys (a lateral subquery: its
    conditions reach every piece's index). Only the bands holding a rank asked for are probed."""
    by_keys = [k for k in by.split(", ") if k]
    keys = f"{by}, " if by else ""
    part = f"PARTITION BY {by}" if by else ""
    g_list = [*(k for k in by_keys if k not in ("provider", "model")), *(("provider", "model") if models else ())]
    g_keys = "".join(f"{k}, " for k in g_list)
    on = " AND ".join([*(f"t.{k} = m.{k}" for k in by_keys), "TRUE"])
    probe_on = " AND ".join([*(f"g.{k} = t.{k}" for k in by_keys), "g.band = t.band"])
    lateral_on = "".join(f"s.{k} = probe.{k} AND " for k in g_list)
    t_keys = "".join(f"t.{k}, " for k in by_keys)
    s_keys = "".join(f"s.{k}, " for k in g_list)
    values_list = ", ".join(f"({p})" for p in ps)
    return (f"WITH bs AS ({bands}),"
            f" g AS (SELECT {g_keys}band, sum(requests) AS n FROM bs GROUP BY {g_keys}band),"
            f" k AS (SELECT {keys}band, sum(n) AS n FROM g GROUP BY {keys}band),"
            f" c AS (SELECT {keys}band, n, sum(n) OVER ({part} ORDER BY band) AS cum, sum(n) OVER ({part}) AS total"
            " FROM k),"
            f" t AS (SELECT DISTINCT ON ({keys}p) {keys}p, total, band, cum - n AS below"
            f" FROM c CROSS JOIN (VALUES {values_list}) ps(p) WHERE cum >= p * total ORDER BY {keys}p, band),"
            f" probe AS (SELECT DISTINCT {''.join(f'g.{k}, ' for k in g_list)}g.band FROM g JOIN t ON {probe_on}),"
            " ms AS (SELECT v.* FROM probe CROSS JOIN LATERAL"
            f" (SELECT {s_keys}s.{column} AS ms, sum(s.requests) AS n FROM ({values}) s"
            f" WHERE {lateral_on}s.{column} >= probe.band * {BAND_MS}"
            f" AND s.{column} < (probe.band + 1) * {BAND_MS} GROUP BY {s_keys}s.{column}) v),"
            f" m AS (SELECT {keys}ms, sum(n) AS n FROM ms GROUP BY {keys}ms),"
            f" r AS (SELECT {t_keys}t.p, t.total, m.ms,"
            f" t.below + sum(m.n) OVER (PARTITION BY {t_keys}t.p ORDER BY m.ms) AS cum FROM t JOIN m ON {on}"
            f" AND m.ms >= t.band * {BAND_MS} AND m.ms < (t.band + 1) * {BAND_MS})"
            f" SELECT {keys}max(total)::float8 AS requests,"
            " min(ms) FILTER (WHERE p = 0.5 AND cum >= p * total)::float8 AS p50,"
            " min(ms) FILTER (WHERE p = 0.95 AND cum >= p * total)::float8 AS p95"
            " FROM r" + (f" GROUP BY {by}" if by else ""))


def _windows(e: Engine, ds: Dataset, windows: tuple[tr.Window, ...], q: Query) -> tuple[str, list]:
    """The rows of `ds` in each of `windows`, tagged with the window's number `w` (0, 1, ...)."""
    texts, params = [], []
    for i, window in enumerate(windows):
        text, p = e.source(ds, window, q)
        texts.append(f"SELECT {i} AS w, x.* FROM ({text.as_string(e.conn)}) x")
        params += p
    return " UNION ALL ".join(texts), params


def _unfiltered(e: Engine, q: Query) -> bool:
    """Whether the percentiles go through the bands: aggregates read and no filter set."""
    return e.read_aggregates and not any(q.filters.get(f) for f in q.metric.filters)


def _percentile_rows(e: Engine, q: Query, window: tr.Window, values: Dataset, column: str,
                     by: str = "") -> list[dict]:
    """_percentiles of `column` over `values` in `window`, per `by`, from the milliseconds
    themselves (a filter narrows the rows read enough)."""
    return e.with_src(e._src(values, window, q), _percentiles(column, by), shared=True)


def latency_p95(e: Engine, q: Query) -> Result:
    """The P95 duration of the range and of the previous one. Without a filter, both windows in
    one statement through the bands over every model (_banded: a day of milliseconds is thousands
    of rollup rows, its bands a few hundred), the P95's band alone probed."""
    prev = tr.previous_window(q.window, q.tz, q.ptd_unit, q.whole_unit)
    if _unfiltered(e, q):
        b_text, b_params = _windows(e, LLM_LATENCY_BANDS, (q.window, prev), q)
        v_text, v_params = _windows(e, LLM_LATENCY, (q.window, prev), q)
        banded = _banded("latency_ms", "w", b_text, v_text, ps=(0.95,), models=False)
        rows = e.fetch(sql.SQL(banded), [*b_params, *v_params])
        by_window = {r["w"]: r["p95"] for r in rows}
        value, previous = by_window.get(0), by_window.get(1)
    else:
        value, previous = (next(iter(_percentile_rows(e, q, w, LLM_LATENCY, "latency_ms")), {}).get("p95")
                           for w in (q.window, prev))
    return Result([{"value": value, "previous": previous, "change_pct": pct_change(value, previous)}])


def latency_by_model(e: Engine, q: Query) -> Result:
    """Per model: requests, P50 and P95 duration; requests with a time to first token, its P50 and
    P95. Without a filter, durations and times to first token in one statement, each through
    its bands (_banded)."""
    by = "provider, model"
    if _unfiltered(e, q):
        parts, params = [], []
        for kind, values, bands, column in (("d", LLM_LATENCY, LLM_LATENCY_BANDS, "latency_ms"),
                                            ("t", LLM_TTFT, LLM_TTFT_BANDS, "ttft_ms")):
            b_text, b_params = e.source(bands, q.window, q)
            v_text, v_params = e.source(values, q.window, q)
            banded = _banded(column, by, b_text.as_string(e.conn), v_text.as_string(e.conn))
            parts.append(f"SELECT '{kind}' AS kind, x.* FROM ({banded}) x")
            params += [*b_params, *v_params]
        both = e.fetch(sql.SQL(" UNION ALL ".join(parts)), params)
        durations = [r for r in both if r["kind"] == "d"]
        ttft = {(r["provider"], r["model"]): r for r in both if r["kind"] == "t"}
    else:
        durations = _percentile_rows(e, q, q.window, LLM_LATENCY, "latency_ms", by)
        ttft = {(r["provider"], r["model"]): r for r in _percentile_rows(e, q, q.window, LLM_TTFT, "ttft_ms", by)}
    rows = []
    for r in durations:
        t = ttft.pop((r["provider"], r["model"]), {})
        rows.append({"provider": r["provider"], "model": r["model"], "requests": r["requests"], "p50_ms": r["p50"],
                     "p95_ms": r["p95"], "ttft_requests": t.get("requests", 0), "ttft_p50_ms": t.get("p50"),
                     "ttft_p95_ms": t.get("p95")})
    for (provider, model), t in ttft.items():  # a time to first token without a duration
        rows.append({"provider": provider, "model": model, "requests": 0, "p50_ms": None, "p95_ms": None,
                     "ttft_requests": t["requests"], "ttft_p50_ms": t["p50"], "ttft_p95_ms": t["p95"]})
    rows.sort(key=lambda r: (-r["requests"], -r["ttft_requests"], r["provider"], r["model"]))
    return Result(rows, total=len(rows))


# ---- cache hit ratio -------------------------------------------------------------------------------



def cache_ratio_over_time(e: Engine, q: Query) -> Result:
    """The ratio per bucket; a bucket without input has no ratio (null, never 0), nor has a
    previous bucket without input. The sums per bucket are those of the tokens and cost series
    (shared)."""
    prev = tr.previous_window(q.window, q.tz, q.ptd_unit, q.whole_unit)
    unit = tr.bucket_unit(q.window)
    cur = kinds._buckets(e, LLM_USAGE, q.window, q, ALL, LLM_BUCKET_SUMS, "ratio", unit)
    old = kinds._buckets(e, LLM_USAGE, prev, q, ALL, LLM_BUCKET_SUMS, "ratio", unit)
    prev_starts = tr.bucket_starts(prev, unit, q.tz)
    rows = []
    for k, start in enumerate(tr.bucket_starts(q.window, unit, q.tz)):
        before = old.get(prev_starts[k]) if k < len(prev_starts) else None
        now = cur.get(start)
        rows.append({"time": tr.to_ms(start), "current": now["ratio"] if now else None,
                     "previous": before["ratio"] if before else None})
    return Result(rows, meta={"bucket": unit})


def llm_groups(key: str) -> str:
    """Every user's or model's tokens, cost and requests, unordered: the by-tokens and the
    by-cost panels share it, each ranking it by its own order; a user's also hold the cache
    hit ratio and its input (the cache hit ratio by user ranks them too). Usage without a user
    is the "(no user)" row; without an attribution dimension's value, the "(unattributed)" row."""
    where, cache, inner_cache = "", "", ""
    if key == "user":
        keys, inner_keys, join = (f"g.user_id, coalesce(u.display_name, u.email, g.user_id, {_literal(NO_USER)})"
                                  f" AS \"user\"", "user_id", "LEFT JOIN users u ON u.id = g.user_id")
        cache = ", g.ratio, g.input_tokens, g.cache_read_tokens"
        inner_cache = (f", {CACHE_RATIO} AS ratio, sum({ALL_INPUT})::float8 AS input_tokens,"
                       " sum(cache_read_tokens)::float8 AS cache_read_tokens")
    elif key in _DIMENSIONS:
        keys, inner_keys, join = (f"coalesce(g.{key}, {_literal(NO_ATTRIBUTION)}) AS {key},"
                                  f" g.{key} IS NOT NULL AS attributed", key, "")
    else:
        keys, inner_keys, join = "g.provider, g.model", "provider, model", ""
    return (f"SELECT {keys}, g.tokens, g.cost, g.requests, g.unpriced_tokens, g.unpriced_tokens > 0 AS unpriced{cache}"
            f" FROM (SELECT {inner_keys}, sum({TOKENS})::float8 AS tokens, ({COST_SUM})::float8 AS cost,"
            f" sum(requests) AS requests, coalesce(sum(unpriced_tokens), 0)::float8 AS unpriced_tokens{inner_cache}"
            f" FROM src {where} GROUP BY {inner_keys}) g {join}")


_DIMENSIONS = {d.name for d in ATTRIBUTION}


# ---- where the money goes ------------------------------------------------------------------------

NOT_SENT = "(not sent)"
MAIN_THREAD = "(main thread)"


def _money_by(label_sql: str, keys: str) -> str:
    """Tokens, cost and requests per group of `label_sql`, whose columns are `keys`."""
    names = ", ".join(f'g.{k} COLLATE "C"' for k in keys.split(", "))
    return (f"SELECT g.*, g.unpriced_tokens > 0 AS unpriced, count(*) OVER () AS total"
            f" FROM (SELECT {label_sql}, sum({TOKENS})::float8 AS tokens, ({COST_SUM})::float8 AS cost,"
            f" sum(requests) AS requests, coalesce(sum(unpriced_tokens), 0)::float8 AS unpriced_tokens"
            f" FROM src GROUP BY {keys}) g ORDER BY g.cost DESC NULLS LAST, g.tokens DESC, {names}")


_THREAD = (f"coalesce(query_source, {_literal(NOT_SENT)}) AS thread,"
           f" coalesce(agent_name, CASE WHEN query_source = 'main' THEN {_literal(MAIN_THREAD)}"
           f" ELSE {_literal(NOT_SENT)} END) AS subagent")
_MONEY = (TOKENS_COLUMN, COST_COLUMN, REQUESTS_COLUMN, *UNPRICED_COLUMNS)


def _money_top(id_: str, title: str, keys: tuple, description: str, label_sql: str, order: str,
               needs: tuple[str, ...]) -> Metric:
    return top(id_, "llm", title, keys, COST_COLUMN, LLM_FILTERS, description, LLM_ORIGIN, ALL, needs=needs,
               body=_money_by(label_sql, order), more=tuple(c for c in _MONEY if c != COST_COLUMN))


def session_subagents(e: Engine, q: Query) -> Result:
    """The chosen session's requests, tokens and cost by main thread and subagent."""
    if not q.filters.get("session"):
        return Result([])  # the drawer shows nothing until a session is chosen
    rows = e.with_src(e._src(SESSION_AGENTS, q.window, q, IN_SESSION), _money_by(_THREAD, "thread, subagent"))
    for r in rows:
        r.pop("total", None)
    return Result(rows, total=len(rows))


SESSION_SUBAGENTS = Metric(
    "session_subagents", "sessions", "table", "Subagents", COUNT,
    (col("thread", title="Thread"), col("subagent", title="Subagent"), *_MONEY), SESSION_FILTERS,
    "The session's requests, tokens and cost by main thread or subagent (Claude Code's query_source and "
    "agent.name, from its events and metric points, each token counted once).",
    build=session_subagents,
    reads=reads(SESSION_AGENTS, IN_SESSION, ("session_id", "query_source", "agent_name"), time=False))

_MODEL = (col("provider", title="Provider"), col("model", title="Model"))

METRICS: tuple[Metric, ...] = (
    API_ERRORS,
    Metric("llm_error_rate", "llm", "stat", "API error rate", PERCENT,
           (col("value", "number", PERCENT, "API error rate"), col("previous", "number", PERCENT, "Previous period"),
            col("change_pct", "number", PERCENT, "Change"), col("errors", "number", COUNT, "API errors"),
            col("requests", "number", COUNT, "Requests")), LLM_FILTERS,
           "API errors per 100 requests that ended (errors + successful request events); null without either."
           + _ERRORS_NOTE, build=error_rate, reads=reads(LLM_USAGE, ALL, (), time=False)),
    stat("llm_retries_exhausted", "llm", "Retries given up", COUNT, LLM_FILTERS,
         "Claude Code's api_retries_exhausted: requests it stopped retrying (each after its last attempt's "
         "api_error). Codex sends no such event.", LLM_ERRORS, ALL, needs=("kind",), body=_ERROR_TOTALS,
         value=kinds.column("exhausted")),
    stat("llm_latency_p95", "llm", "Request duration P95", MS, LLM_FILTERS,
         "95th percentile of request durations (api_request duration_ms), exact to the millisecond.",
         LLM_LATENCY, ALL, needs=(), body=_percentiles("latency_ms"), build=latency_p95),
    series("llm_errors_over_time", "llm", "API errors", COUNT, LLM_FILTERS, "API errors per bucket." + _ERRORS_NOTE,
           LLM_ERRORS, ALL, needs=("kind",), sums=_ERROR_SUMS, column="errors"),
    top("llm_errors_by_status", "llm", "API errors by status and model", (*_MODEL, col("status_code", "number",
        None, "HTTP status")), col("errors", "number", COUNT, "Errors"), LLM_FILTERS,
        "API errors and retries given up per model and HTTP status (status null: the request got no answer).",
        LLM_ERRORS, ALL, needs=("provider", "model", "kind", "status_code"), body=_BY_STATUS,
        more=(col("exhausted", "number", COUNT, "Retries given up"),)),
    Metric("llm_latency_by_model", "llm", "table", "Request duration by model", MS,
           (*_MODEL, REQUESTS_COLUMN, col("p50_ms", "number", MS, "P50"), col("p95_ms", "number", MS, "P95"),
            col("ttft_requests", "number", COUNT, "With time to first token"),
            col("ttft_p50_ms", "number", MS, "TTFT P50"), col("ttft_p95_ms", "number", MS, "TTFT P95")),
           LLM_FILTERS, "Per model: P50 and P95 of request durations, and of the time to first token where the agent "
           "sends it (Claude Code's ttft_ms); exact to the millisecond.", build=latency_by_model,
           reads=reads(LLM_LATENCY, ALL, BY_MODEL, time=False)),
    stat("llm_cache_hit_ratio", "llm", "Cache hit ratio", PERCENT, LLM_FILTERS,
         "Cache reads against all input (input + cache reads + cache writes), each token counted once; null "
         "without input.", LLM_USAGE, ALL, needs=(), body=LLM_TOTALS, value=kinds.column("cache_hit_ratio")),
    Metric("llm_cache_hit_ratio_over_time", "llm", "timeseries", "Cache hit ratio", PERCENT,
           (col("time", "time"), col("current", "number", PERCENT, "Cache hit ratio"),
            col("previous", "number", PERCENT, "Previous period")), LLM_FILTERS,
           "Cache reads against all input per bucket; null where a bucket has no input.",
           build=cache_ratio_over_time, reads=reads(LLM_USAGE, ALL, (), time=True)),
    top("llm_cache_hit_ratio_by_user", "llm", "Cache hit ratio by user", USER_COLUMNS,
        col("ratio", "number", PERCENT, "Cache hit ratio"), LLM_FILTERS,
        "Users ranked by all input tokens, with their cache hit ratio.", LLM_USAGE, ALL, needs=("user_id",),
        body=llm_groups("user"), more=(col("input_tokens", "number", COUNT, "All input tokens"),
                                       col("cache_read_tokens", "number", COUNT, "Cache reads")),
        order=lambda r: (-r["input_tokens"], r["user_id"] is None, r["user_id"] or "")),
    _money_top("llm_cost_by_subagent", "Cost by main thread and subagent",
               (col("thread", title="Thread"), col("subagent", title="Subagent")),
               "Tokens and cost by who made the requests: the main thread or a subagent (Claude Code's query_source "
               "and agent.name, from events and metric points, each token counted once).", _THREAD,
               "thread, subagent", ("query_source", "agent_name")),
    _money_top("llm_cost_by_effort", "Cost by effort", (col("effort", title="Effort"),),
               "Tokens and cost by the effort the agent asked for, where it says (Claude Code's effort).",
               f"coalesce(effort, {_literal(NOT_SENT)}) AS effort", "effort", ("effort",)),
    _money_top("llm_cost_by_speed", "Cost by speed", (col("speed", title="Speed"),),
               "Tokens and cost by the speed the request ran at, where the agent says (Claude Code's api_request "
               "speed; its metric points carry none).", f"coalesce(speed, {_literal(NOT_SENT)}) AS speed", "speed",
               ("speed",)),
)

