"""The "choose aggregate" stage: the logical datasets, the relations that can answer each (an
hourly aggregate with every column, smaller rollups, daily twins, the raw table), and the
choice of the smallest relation that holds every column a metric and its filters need.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence

from agent_analytics.datasource.filters import FILTERS, applying_to
from agent_analytics.config import ATTRIBUTION_COLUMNS
from agent_analytics.sql import rollups as r

# A question on executions counts a call the gateway reported from the gateway only: it reads the
# MCP server of the calls not reported by the gateway (sqltext.GATEWAY_FIRST).
GATEWAY_DEDUPE = "gateway_dedupe"


@dataclass(frozen=True)
class Condition:
    """The rows a metric counts, by name: its SQL over the dataset's columns and the key columns
    that SQL reads (a rollup answers the condition only when it holds them). `gateway_first`:
    a call the gateway reported counts from the gateway only (engine.Engine.source)."""
    name: str
    sql: str
    needs: frozenset[str]
    gateway_first: bool = False


ALL = Condition("all", "TRUE", frozenset())
EXECUTED = Condition("executed", "outcome IN ('ok', 'error')",  # blocked calls never ran
                     frozenset({"outcome", "source", GATEWAY_DEDUPE}), gateway_first=True)
BLOCKED = Condition("blocked", r.BLOCKED, frozenset({"outcome"}))
IN_SESSION = Condition("in_session", r.IN_SESSION, frozenset({"session_id"}))


@dataclass(frozen=True)
class Rollup:
    """An hourly aggregate read instead of the dataset's full one when it holds what a question
    needs (possibly the full aggregate itself, for the columns its daily twin holds too).
    `columns`: the keys it holds; `answers`: what it holds completely (a filter or a question on
    any other column needs a larger relation). Columns it lacks project as NULL."""
    name: str
    columns: frozenset[str]
    answers: frozenset[str]
    daily: str | None = None  # its twin by UTC day, for metrics that do not look at the time
    condition: str | None = None  # holds only the rows meeting this condition (e.g. blocked calls)


@dataclass(frozen=True)
class Dataset:
    """A logical relation: the hourly aggregate read, the raw table written, and the same column
    list projected from each ({cost} becomes the configured cost column); optionally smaller
    rollups of the aggregate, smallest first, tried before it."""
    aggregate: str
    raw: str
    agg_columns: str
    raw_columns: str
    filterable: tuple[str, ...]  # the filters its columns can answer
    rollups: tuple[Rollup, ...] = ()
    raw_condition: str = "TRUE"  # which raw rows the aggregate holds (read from raw only)
    keys: frozenset[str] = frozenset()  # the aggregate's keys: the columns a rollup may lack
    always: frozenset[str] = frozenset()  # columns every question on it reads

    @property
    def attributed(self) -> bool:
        """Its rows hold the attribution dimensions (a filter may read them: filters.Filter.attributed)."""
        return ATTRIBUTION <= self.keys


def _rollup(full: r.Rollup, hourly: r.Rollup, daily: r.Rollup | None = None) -> Rollup:
    """What `hourly`'s hourly aggregate holds, read with the daily aggregate of `daily` (by
    default its own twin, if any) for whole days: the keys both hold."""
    twin = (daily or hourly).daily
    keys = {k.name: k.whole for k in hourly.keys}
    if twin is not None:
        if twin.where != hourly.where:
            raise ValueError(f"{twin.name} holds other rows than {hourly.name}")
        keys = {k.name: keys[k.name] and k.whole for k in twin.keys if k.name in keys}
    answers = {name for name, whole in keys.items() if whole}
    if "mcp_server_id" in keys:  # whole, or for the calls not reported by the gateway
        answers.add(GATEWAY_DEDUPE)
    return Rollup(hourly.hourly.name, frozenset(keys), frozenset(answers), twin.name if twin else None,
                  hourly.where if hourly.where != full.where else None)


def _dataset(full: r.Rollup, agg_columns: str, raw_columns: str, filterable: tuple[str, ...],
             rollups: Sequence[r.Rollup | tuple[r.Rollup, r.Rollup]], always: frozenset[str] = frozenset()) -> Dataset:
    """The dataset whose full aggregate is `full`'s hourly one; `rollups`: those that may answer
    instead, smallest first, each alone (with its own daily twin) or as (hourly, daily)."""
    return Dataset(full.hourly.name, full.raw.table, agg_columns, raw_columns, filterable,
                   tuple(_rollup(full, *(x if isinstance(x, tuple) else (x,))) for x in rollups),
                   full.where or "TRUE", frozenset(k.name for k in full.keys), always)


POLICY_COLUMNS = frozenset(k.name for k in r.POLICY)
# The attribution dimensions (config.ATTRIBUTION): keys of the datasets that LLM Usage and MCP
# Usage read, held by their attributed rollups and rollups by attribution only (the others
# project them as NULL).
ATTRIBUTION = frozenset(ATTRIBUTION_COLUMNS)
_ATTRIBUTION = ", ".join(ATTRIBUTION_COLUMNS)
# Each dataset's full aggregate is its attributed rollup (with its daily twin, tried last). A
# question or filter on a dimension reads the rollup by attribution (the totals' keys with the
# dimensions) when it holds every column needed, the attributed rollup otherwise; every other
# question reads the rollups without the dimensions, the unattributed full aggregate after them.
TOOL_CALLS = _dataset(
    r.TOOL_CALLS_ATTRIBUTED,
    "bucket AS time, source, user_id, agent_id, agent_instance_id, mcp_server_id, tool_name, outcome,"
    f" policy_id, policy_name, policy_description, {_ATTRIBUTION}, calls",
    "time, source, user_id, agent_id, agent_instance_id, mcp_server_id, tool_name, outcome,"
    f" policy_id, policy_name, policy_description, {_ATTRIBUTION}, 1::bigint AS calls",
    applying_to("mcp"),
    (r.TOOL_CALLS_TOTALS, r.TOOL_CALLS_BY_ATTRIBUTION, r.TOOL_CALLS_BY_POLICY, r.TOOL_CALLS_BY_SERVER,
     r.TOOL_CALLS_BY_TOOL, r.TOOL_CALLS_BY_USER, r.TOOL_CALLS_BY_ACTOR,
     # Last: bigger than the others, but it alone answers policies and tool x actor questions.
     r.TOOL_CALLS_BLOCKED,
     # Users' tools: the full aggregate hour by hour, whole days from its daily twin by user and tool.
     (r.TOOL_CALLS_FULL, r.TOOL_CALLS_BY_USER_TOOL), r.TOOL_CALLS_FULL,
     r.TOOL_CALLS_ATTRIBUTED))

# The columns each filter reads (declared in filters.py).
FILTER_COLUMNS: dict[str, frozenset[str]] = {name: f.columns for name, f in FILTERS.items()}

_TOKEN_SUMS = "input_tokens, output_tokens, cache_read_tokens, cache_write_tokens"
# Row condition of the LLM request events whose tokens count (their session sent no metric
# points; decided at ingest). An event's cost always counts: a price is a request's.
COUNTED = "counted"


def _rows(raw: r.Raw, names: Iterable[str]) -> str:
    """Each of `raw`'s measures `names` as a raw row's share of it (sql/rollups/ declares both),
    named as the measure."""
    return ", ".join(f"{raw.measure(n).row} AS {n}" for n in names)


def _by_cost(raw: r.Raw, measure: str, alias: str) -> str:
    """A raw row's share of `raw`'s measure `{cost}_{measure}`, `{cost}` the configured cost
    (estimated or reported, formatted in by the engine), as `alias`."""
    estimated, reported = (raw.measure(f"{c}_{measure}").row for c in ("estimated", "reported"))
    return f"CASE WHEN '{{cost}}' = 'reported' THEN {reported} ELSE {estimated} END AS {alias}"


# The tokens of an event without the configured cost.
_EVENT_UNPRICED = _by_cost(r.LLM_REQUESTS, "unpriced_tokens", "unpriced_tokens")


def counted_tokens(tokens: str = r.TOKEN_TOTAL) -> str:
    """An event row's `tokens` as counted once: 0 when its session's metric points count them
    instead (ingest/sessions.py decides `counted`). Every reader of event tokens goes through it."""
    return f"CASE WHEN {COUNTED} THEN {tokens} ELSE 0 END"


BY_MODEL = frozenset({"provider", "model"})

LLM_USAGE = _dataset(
    r.LLM_USAGE_ATTRIBUTED,
    f"bucket AS time, user_id, agent_id, provider, model, counted, {_ATTRIBUTION}, requests, {_TOKEN_SUMS},"
    " {cost}_cost_usd AS cost, {cost}_unpriced_tokens AS unpriced_tokens",
    f"time, user_id, agent_id, provider, model, counted, {_ATTRIBUTION}, 1::bigint AS requests, {_TOKEN_SUMS},"
    f" {{cost}}_cost_usd AS cost, {_EVENT_UNPRICED}",
    applying_to("llm"),
    (r.LLM_USAGE_TOTALS, r.LLM_USAGE_BY_MODEL, r.LLM_USAGE_BY_AGENT, r.LLM_USAGE_PER_USER, r.LLM_USAGE_BY_AGENT_USER,
     r.LLM_USAGE_BY_ATTRIBUTION,
     # The full hourly aggregate, with a daily twin by user for whole days.
     (r.LLM_USAGE_FULL, r.LLM_USAGE_BY_USER), r.LLM_USAGE_FULL, r.LLM_USAGE_ATTRIBUTED),
    always=frozenset({"counted"}))

# Sessions' metric points without the session, token types and cost as columns: what counts
# for the sessions that sent them (their cost only where `cost_counted`: sessions without events).
_POINT_SUMS = "input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, other_tokens"
# The tokens of counted cost (`cost_counted`) without a price: the estimate's unknown models; for
# the reported cost, the token points of agents that report no cost metric (only Claude Code
# sends one, cost.usage, beside its token points). Cost and unpriced tokens are counted once:
# each raw row's share is that of the aggregates' measures (sql/rollups/).
COST_METRIC_SOURCE = r.COST_METRIC_SOURCE
_POINT_COUNTED = (f"{_by_cost(r.METRIC_POINTS, 'cost_usd', 'cost')},"
                  f" {_by_cost(r.METRIC_POINTS, 'unpriced_tokens', 'unpriced_tokens')}")
# A raw metric point's token types, cost and unpriced tokens.
_POINT_COLUMNS = f"{_rows(r.METRIC_POINTS, _POINT_SUMS.split(', '))}, {_POINT_COUNTED}"
LLM_METRIC_USAGE = _dataset(
    r.LLM_METRIC_USAGE_ATTRIBUTED,
    f"bucket AS time, user_id, agent_id, provider, model, {_ATTRIBUTION}, {_POINT_SUMS}, {{cost}}_cost_usd AS cost,"
    " {cost}_unpriced_tokens AS unpriced_tokens",
    f"time, user_id, agent_id, provider, model, {_ATTRIBUTION}, {_POINT_COLUMNS}",
    applying_to("llm"),
    (r.LLM_METRIC_USAGE_TOTALS, r.LLM_METRIC_USAGE_BY_MODEL, r.LLM_METRIC_USAGE_BY_AGENT, r.LLM_METRIC_USAGE_PER_USER,
     r.LLM_METRIC_USAGE_BY_AGENT_USER, r.LLM_METRIC_USAGE_BY_ATTRIBUTION,
     (r.LLM_METRIC_USAGE_FULL, r.LLM_METRIC_USAGE_BY_USER), r.LLM_METRIC_USAGE_FULL,
     r.LLM_METRIC_USAGE_ATTRIBUTED))

# What a session's totals group by.
SESSION_KEYS = frozenset({"session_id", "user_id", "agent_id", "provider", "model"})

LLM_SESSIONS = _dataset(
    r.LLM_SESSIONS,
    f"bucket AS time, session_id, user_id, agent_id, provider, model, counted, requests, {_TOKEN_SUMS},"
    " {cost}_cost_usd AS cost, {cost}_unpriced_tokens AS unpriced_tokens, latency_ms_sum, latency_count,"
    " first_time, last_time",
    f"time, session_id, user_id, agent_id, provider, model, counted, 1::bigint AS requests, {_TOKEN_SUMS},"
    f" {{cost}}_cost_usd AS cost, {_EVENT_UNPRICED},"
    " latency_ms AS latency_ms_sum, (latency_ms IS NOT NULL)::int::bigint AS latency_count,"
    " time AS first_time, time AS last_time",
    applying_to("session"), (r.LLM_SESSIONS,), always=frozenset({"counted"}))

SESSION_METRICS = _dataset(
    r.SESSION_METRICS,
    f"bucket AS time, session_id, user_id, agent_id, provider, model, tokens, {_TOKEN_SUMS},"
    " {cost}_cost_usd AS cost, {cost}_unpriced_tokens AS unpriced_tokens, first_time, last_time",
    "time, session_id, user_id, agent_id, provider, model,"
    f" {_rows(r.METRIC_POINTS, ('tokens', *_TOKEN_SUMS.split(', ')))}, {_POINT_COUNTED},"
    " coalesce(start_time, time) AS first_time, time AS last_time",
    applying_to("session"), (r.SESSION_METRICS,))

# The agents' own enforcement (migration 0012): each dataset answers the Security tab's filters
# whose columns it holds. Their facts name no MCP server where the agent did not (built-in
# tools): an MCP filter narrows decisions to the MCP tools' rows; permission modes name no server
# or tool, MCP connections no tool, so those filters do not apply to them.
def _enforcement(full: r.Rollup, rollups: Sequence[r.Rollup] = ()) -> Dataset:
    keys = ", ".join(k.name for k in full.keys)
    held = {k.name for k in full.keys}
    return _dataset(full, f"bucket AS time, {keys}, events", f"time, {keys}, 1::bigint AS events",
                    tuple(f for f in applying_to("mcp") if FILTER_COLUMNS[f] <= held), rollups)


AGENT_DECISIONS = _enforcement(r.AGENT_DECISIONS, (r.AGENT_DECISIONS_BY_SOURCE, r.AGENT_DECISIONS_BY_TOOL_USER))
# Listed as its own rollup too, so that whole days are read from its daily twin.
PERMISSION_MODES = _enforcement(r.AGENT_PERMISSION_MODES, (r.AGENT_PERMISSION_MODES,))
MCP_CONNECTIONS = _enforcement(r.MCP_CONNECTIONS)
# The rows each enforcement metric counts.
AGENT_BLOCKED = Condition("agent_blocked", "blocked", frozenset({"blocked"}))
HOOK_BLOCKED = Condition("hook_blocked", "blocked AND decision_source = 'hook'",
                         frozenset({"blocked", "decision_source"}))
BYPASS = Condition("bypass", "permission_mode = 'bypassPermissions'", frozenset({"permission_mode"}))
FAILED = Condition("failed", "outcome = 'failed'", frozenset({"outcome"}))

# What the spend bought (productivity points, migration 0015): a column per count; attributed
# (migration 0018), so the group filter's mapping rule counts here as it does for the spend.
_PRODUCTIVITY_KEYS = f"source, user_id, agent_id, model, language, tool_name, decided_by, {_ATTRIBUTION}"
PRODUCTIVITY = _dataset(
    r.PRODUCTIVITY_FULL, f"bucket AS time, {_PRODUCTIVITY_KEYS}, " + ", ".join(r.PRODUCTIVITY_METRICS),
    f"time, {_PRODUCTIVITY_KEYS}, {_rows(r.PRODUCTIVITY, r.PRODUCTIVITY_METRICS)}",
    applying_to("value"), (r.PRODUCTIVITY_TOTALS, r.PRODUCTIVITY_BY_ATTRIBUTION, r.PRODUCTIVITY_PER_USER))
# The agents that send productivity metrics (ingest/normalise_productivity.py): the spend the
# Value figures divide is theirs alone, never another agent's that reports no commits.
PRODUCTIVITY_AGENTS = ("claude-code",)
# ---- LLM health and where the money goes (rollups of migration 0013) ----------------------------

# Who made the requests (main thread or subagent, which subagent) and how (effort, speed): the
# events' side and the metric points' side, combined as LLM_USAGE's are (engine.Engine._llm_source).
ORIGIN_KEYS = ("query_source", "agent_name", "effort", "speed")
_ORIGIN = ", ".join(ORIGIN_KEYS)
LLM_ORIGIN = _dataset(
    r.LLM_USAGE_BY_ORIGIN,
    f"bucket AS time, user_id, provider, model, {_ORIGIN}, counted, {_ATTRIBUTION}, requests, {_TOKEN_SUMS},"
    " {cost}_cost_usd AS cost, {cost}_unpriced_tokens AS unpriced_tokens",
    f"time, user_id, provider, model, {_ORIGIN}, counted, {_ATTRIBUTION}, 1::bigint AS requests, {_TOKEN_SUMS},"
    f" {{cost}}_cost_usd AS cost, {_EVENT_UNPRICED}",
    applying_to("llm"), (r.LLM_USAGE_BY_ORIGIN_TOTALS, r.LLM_USAGE_BY_ORIGIN), always=frozenset({"counted"}))
# Metric points carry no speed: NULL, as for a request that did not say.
LLM_METRIC_ORIGIN = _dataset(
    r.LLM_METRIC_USAGE_BY_ORIGIN,
    f"bucket AS time, user_id, provider, model, query_source, agent_name, effort, NULL::text AS speed, {_ATTRIBUTION},"
    f" {_POINT_SUMS}, {{cost}}_cost_usd AS cost, {{cost}}_unpriced_tokens AS unpriced_tokens",
    f"time, user_id, provider, model, query_source, agent_name, effort, NULL::text AS speed, {_ATTRIBUTION},"
    f" {_POINT_COLUMNS}",
    applying_to("llm"), (r.LLM_METRIC_USAGE_BY_ORIGIN_TOTALS, r.LLM_METRIC_USAGE_BY_ORIGIN))
# A session's requests by main thread or subagent (the drawer's subagents).
SESSION_AGENTS = _dataset(
    r.LLM_SESSION_AGENTS,
    f"bucket AS time, session_id, user_id, provider, model, query_source, agent_name, counted, requests,"
    f" {_TOKEN_SUMS}, {{cost}}_cost_usd AS cost, {{cost}}_unpriced_tokens AS unpriced_tokens",
    f"time, session_id, user_id, provider, model, query_source, agent_name, counted, 1::bigint AS requests,"
    f" {_TOKEN_SUMS}, {{cost}}_cost_usd AS cost, {_EVENT_UNPRICED}",
    applying_to("session"), (r.LLM_SESSION_AGENTS,), always=frozenset({"counted"}))
SESSION_METRIC_AGENTS = _dataset(
    r.SESSION_METRIC_AGENTS,
    f"bucket AS time, session_id, user_id, provider, model, query_source, agent_name, {_POINT_SUMS},"
    " {cost}_cost_usd AS cost, {cost}_unpriced_tokens AS unpriced_tokens",
    f"time, session_id, user_id, provider, model, query_source, agent_name, {_POINT_COLUMNS}",
    applying_to("session"), (r.SESSION_METRIC_AGENTS,))

# Requests per whole millisecond of duration (time to first token): exact percentiles. The
# millisecond is a column of every relation, never a filter: no rollup `answers` it.
LLM_LATENCY = _dataset(
    r.LLM_LATENCY, f"bucket AS time, user_id, provider, model, {_ATTRIBUTION}, latency_ms, requests",
    f"time, user_id, provider, model, {_ATTRIBUTION}, round(latency_ms) AS latency_ms, 1::bigint AS requests",
    applying_to("llm"), (r.LLM_LATENCY_TOTALS, r.LLM_LATENCY_BY_MODEL, r.LLM_LATENCY))
LLM_TTFT = _dataset(
    r.LLM_TTFT, f"bucket AS time, user_id, provider, model, {_ATTRIBUTION}, ttft_ms, requests",
    f"time, user_id, provider, model, {_ATTRIBUTION}, round(ttft_ms) AS ttft_ms, 1::bigint AS requests",
    applying_to("llm"), (r.LLM_TTFT_BY_MODEL, r.LLM_TTFT))
# Requests per model and band of r.BAND_MS milliseconds (the durations' also over every model,
# for a question that needs no model): llm_health.py finds in them where an
# unfiltered percentile's rank falls (under a filter it reads the per-millisecond rollups alone).
# The filters their columns could answer: the provider and the model.
_BAND_FILTERS = tuple(f for f in applying_to("llm") if FILTER_COLUMNS[f] <= {"provider", "model"})
LLM_LATENCY_BANDS = _dataset(
    r.LLM_LATENCY_BANDS, "bucket AS time, provider, model, band, requests",
    f"time, provider, model, floor(round(latency_ms) / {r.BAND_MS}) AS band, 1::bigint AS requests",
    _BAND_FILTERS, (r.LLM_LATENCY_TOTALS_BANDS, r.LLM_LATENCY_BANDS))
LLM_TTFT_BANDS = _dataset(
    r.LLM_TTFT_BANDS, "bucket AS time, provider, model, band, requests",
    f"time, provider, model, floor(round(ttft_ms) / {r.BAND_MS}) AS band, 1::bigint AS requests",
    _BAND_FILTERS, (r.LLM_TTFT_BANDS,))

# API errors ('error') and retries given up ('retries_exhausted'), by model and HTTP status.
LLM_ERRORS = _dataset(
    r.LLM_ERRORS_FULL,
    f"bucket AS time, source, user_id, agent_id, provider, model, kind, status_code, {_ATTRIBUTION}, errors",
    f"time, source, user_id, agent_id, provider, model, kind, status_code, {_ATTRIBUTION}, 1::bigint AS errors",
    applying_to("llm"),
    (r.LLM_ERRORS_TOTALS, r.LLM_ERRORS_BY_MODEL, (r.LLM_ERRORS_FULL, r.LLM_ERRORS_BY_USER)))

# A metric's `needs` when it reads the full aggregate whatever the filters.
EVERY_COLUMN = None


class Reads(NamedTuple):
    """What a metric reads, for the "choose aggregate" stage: its dataset, the rows it counts, the
    key columns its body reads beyond the dataset's measures and time (EVERY_COLUMN: the full
    aggregate), and whether its answer depends on when within the window a row falls (if not,
    whole UTC days may come from a daily rollup). Every field is required: a metric that forgets
    its needs fails at import instead of silently reading the full aggregate."""
    dataset: Dataset
    rows: Condition
    needs: frozenset[str] | None
    time: bool


def reads(dataset: Dataset, rows: Condition, needs: Iterable[str] | None, *, time: bool) -> Reads:
    """A checked Reads: every column it names is one of the dataset's keys."""
    wanted = None if needs is None else frozenset(needs)
    unknown = ((wanted or frozenset()) | rows.needs) - dataset.keys - {GATEWAY_DEDUPE}
    if unknown:
        raise ValueError(f"{dataset.aggregate} has no key {sorted(unknown)}")
    return Reads(dataset, rows, wanted, time)


def choose_aggregate(ds: Dataset, needs: frozenset[str] | None, filters: Sequence[str],
                     condition: Condition) -> tuple[str, str, Rollup | None]:
    """The smallest relation that answers a body reading `needs` (a metric's Reads.needs) over
    the rows meeting `condition` under these filters, the dataset's column list projected from
    it (NULL for the columns it does not hold), and the rollup if one."""
    if needs is None or not ds.rollups:
        return ds.aggregate, ds.agg_columns, None
    # A column the dataset lacks is one it projects as a constant (the metric points' speed, read
    # with the events' by the same metric): every relation answers it alike.
    wanted = (needs & (ds.keys | {GATEWAY_DEDUPE})) | condition.needs | ds.always
    for f in filters:
        wanted |= FILTERS[f].columns_for(ds.attributed)
    for rollup in ds.rollups:
        if rollup.condition is not None and rollup.condition != condition.sql:
            continue
        if wanted <= rollup.answers:
            return rollup.name, projection(ds, rollup), rollup
    return ds.aggregate, ds.agg_columns, None


# Each key's SQL type, as its declaration says (the branches of one source are a UNION).
_KEY_TYPES = {k.name: k.type for rollup in r.ROLLUPS for k in rollup.keys}


def projection(ds: Dataset, rollup: Rollup) -> str:
    """The dataset's column list as read from `rollup`: NULL for the keys it does not hold."""
    items = []
    for item in ds.agg_columns.split(","):
        expr, _, alias = item.strip().partition(" AS ")
        name = alias or expr
        keep = expr == "bucket" or name not in ds.keys or name in rollup.columns
        items.append(item.strip() if keep else f"NULL::{_KEY_TYPES.get(name, 'text')} AS {name}")
    return ", ".join(items)
