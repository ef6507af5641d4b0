"""Value: what the spend bought. The spend of the agents that send productivity metrics
(relations.PRODUCTIVITY_AGENTS: Claude Code) beside what they report it bought: lines changed,
commits, pull requests, edit decisions and active time (productivity points, migration 0015),
and the figures dividing one by the other, each with the previous period. Per user, per
directory group, per model and per attribution dimension (team, department, cost centre:
config.ATTRIBUTION); docs/dashboards.md says what each figure can and cannot mean.

Unknown is never 0: a figure whose count is 0 (no pull requests: cost per pull request) or whose
spend none of it could be priced is null; `unpriced_tokens` says how much of the spend had no
price (a figure with some is a lower bound). Commits, pull requests and edit decisions name no
model in the telemetry: per model only lines of code (and cost per 1,000 lines) are answered.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Iterable

from psycopg import sql

from agent_analytics.config import ATTRIBUTION
from agent_analytics.datasource import timerange as tr
from agent_analytics.datasource.catalog import (COUNT, NO_ATTRIBUTION, NO_USER, PERCENT, SECONDS, USD, VALUE_FILTERS,
                                                Column, Metric, attribution_columns, col)
from agent_analytics.datasource.declare import series, stat
from agent_analytics.datasource.query import Query
from agent_analytics.datasource.relations import ALL, LLM_USAGE, PRODUCTIVITY, PRODUCTIVITY_AGENTS, reads
from agent_analytics.datasource.result import Result, pct_change
from agent_analytics.datasource.sqltext import COST_SUM
from agent_analytics.datasource.timerange import Window
from agent_analytics.sql.rollups import PRODUCTIVITY_METRICS

if TYPE_CHECKING:
    from agent_analytics.datasource.engine import Engine

NO_GROUP = "(no group)"
Row = dict[str, Any]

# The figures: a name, how it is computed from a group's spend and counts, and its unit.
FIGURES: dict[str, tuple[Callable[[Row], float | None], str]] = {
    "cost_per_pull_request": (lambda g: _per(g["cost"], g["pull_requests"]), USD),
    "cost_per_commit": (lambda g: _per(g["cost"], g["commits"]), USD),
    "cost_per_kloc": (lambda g: _per(g["cost"], (g["lines_added"] + g["lines_removed"]) / 1000), USD),
    "acceptance_pct": (lambda g: _per(100 * g["edits_accepted"], g["edits_accepted"] + g["edits_rejected"]),
                       PERCENT),
}


def _per(amount: float | None, count: float) -> float | None:
    """`amount` per one of `count`: unknown (None) when there is none to divide by, or when the
    amount itself is unknown (spend none of which could be priced)."""
    return None if amount is None or not count else float(amount) / count


def _reading(q: Query, dataset: Any, needs: Iterable[str]) -> Query:
    """`q` as a question on `dataset` needing the key columns `needs` (the "choose aggregate"
    stage picks from them): a Value figure reads two datasets."""
    return replace(q, metric=replace(q.metric, reads=reads(dataset, ALL, needs, time=False)))


_COUNTS = ", ".join(f"coalesce(sum({m}), 0)::float8 AS {m}" for m in PRODUCTIVITY_METRICS)
# Keys the figures group by: the SQL of the key and what the datasets need for it. Both
# datasets hold the attribution dimensions (the spend's events and metric points, the
# productivity points: migrations 0017, 0018), each from the same process's attributes.
_KEYS = {"total": ("", ()), "user": ("user_id", ("user_id",)), "model": ("model", ("model",)),
         **{d.name: (d.name, (d.name,)) for d in ATTRIBUTION}}


def _empty() -> Row:
    """A key without spend rows (its spend unknown, not $0) and without counts (0 of each)."""
    return {"cost": None, "unpriced_tokens": 0.0, **{m: 0.0 for m in PRODUCTIVITY_METRICS}}


def _groups(e: Engine, q: Query, window: Window, by: str) -> dict[Any, Row]:
    """The window's spend (of the productivity agents) and counts per key of `by` (total, user,
    model or an attribution dimension): every key with either. A key the agents spent nothing on
    has spend None."""
    key, needs = _KEYS[by]
    select, group = (f"{key} AS k, ", " GROUP BY 1") if key else ("NULL::text AS k, ", "")
    spend = e.with_src(
        e._src(LLM_USAGE, window, _reading(q, LLM_USAGE, {"agent_id", *needs})),
        f"SELECT {select}({COST_SUM})::float8 AS cost, coalesce(sum(unpriced_tokens), 0)::float8 AS unpriced_tokens,"
        f" count(*) AS n FROM src WHERE agent_id = ANY(%s){group}", [list(PRODUCTIVITY_AGENTS)], shared=True)
    counts = e.with_src(e._src(PRODUCTIVITY, window, _reading(q, PRODUCTIVITY, needs)),
                        f"SELECT {select}{_COUNTS}, count(*) AS n FROM src{group}", shared=True)
    out: dict[Any, Row] = {}
    for r in spend:
        if r["n"]:
            out[r["k"]] = {**_empty(), "cost": r["cost"], "unpriced_tokens": r["unpriced_tokens"]}
    for r in counts:
        if r["n"]:
            out.setdefault(r["k"], _empty()).update({m: r[m] for m in PRODUCTIVITY_METRICS})
    return out


def _figures(g: Row) -> Row:
    return {name: f(g) for name, (f, _) in FIGURES.items()}


# What each figure divides by, as its stat answers it beside the value.
_DIVISORS: dict[str, tuple[str, Callable[[Row], float]]] = {
    "cost_per_pull_request": ("pull_requests", lambda g: g["pull_requests"]),
    "cost_per_commit": ("commits", lambda g: g["commits"]),
    "cost_per_kloc": ("lines", lambda g: g["lines_added"] + g["lines_removed"]),
    "acceptance_pct": ("edits", lambda g: g["edits_accepted"] + g["edits_rejected"]),
}


def _total(e: Engine, q: Query, window: Window) -> Row:
    return _groups(e, q, window, "total").get(None) or _empty()


def _figure_stat(name: str) -> Callable[[Engine, Query], Result]:
    figure = FIGURES[name][0]
    column, divisor = _DIVISORS[name]

    def build(e: Engine, q: Query) -> Result:
        prev = tr.previous_window(q.window, q.tz, q.ptd_unit, q.whole_unit)
        now, before = _total(e, q, q.window), _total(e, q, prev)
        value, previous = figure(now), figure(before)
        return Result([{"value": value, "previous": previous, "change_pct": pct_change(value, previous),
                        "cost": now["cost"], column: divisor(now), "unpriced_tokens": now["unpriced_tokens"]}])
    return build


def spend(e: Engine, q: Query) -> Result:
    prev = tr.previous_window(q.window, q.tz, q.ptd_unit, q.whole_unit)
    now, before = _total(e, q, q.window), _total(e, q, prev)
    # No spend rows at all is $0 spent here (the stat counts spend, it divides nothing).
    value, previous = (g["cost"] if g["cost"] is not None or g["unpriced_tokens"] else 0.0 for g in (now, before))
    return Result([{"value": value, "previous": previous, "change_pct": pct_change(value, previous),
                    "unpriced_tokens": now["unpriced_tokens"]}])


def _with_previous(now: dict[Any, Row], before: dict[Any, Row], names: Iterable[str]) -> list[Row]:
    rows = []
    for k, g in now.items():
        row = {"key": k, **g, **_figures(g)}
        old = before.get(k)
        for name in names:
            row["previous_" + name] = FIGURES[name][0](old) if old else None
        rows.append(row)
    return rows


def _ranked(rows: list[Row], q: Query, label: Callable[[Row], tuple]) -> Result:
    """By spend (unknown last), then by name; a page of them."""
    rows.sort(key=lambda r: (r["cost"] is None, -(r["cost"] or 0), *label(r)))
    return Result(rows[q.offset:q.offset + q.limit], total=len(rows))


def by_user(e: Engine, q: Query) -> Result:
    prev = tr.previous_window(q.window, q.tz, q.ptd_unit, q.whole_unit)
    rows = _with_previous(_groups(e, q, q.window, "user"), _groups(e, q, prev, "user"), FIGURES)
    names = _directory_names(e, [r["key"] for r in rows if r["key"] is not None])
    for r in rows:
        r["user_id"] = r.pop("key")
        r["user"] = names.get(r["user_id"], r["user_id"]) if r["user_id"] is not None else NO_USER
    return _ranked(rows, q, lambda r: (r["user_id"] is None, r["user_id"] or ""))


def _directory_names(e: Engine, ids: list[str]) -> dict[str, str]:
    e._note("users")
    rows = e.fetch(sql.SQL("SELECT id, coalesce(display_name, email, id) AS name FROM users WHERE id = ANY(%s)"),
                   [ids], shared=True)
    return {r["id"]: r["name"] for r in rows}


def _memberships(e: Engine, groups: tuple[str, ...] | None) -> list[Row]:
    e._note("group_members")
    return e.fetch(sql.SQL("SELECT g.id AS group_id, g.name, gm.user_id FROM groups g"
                           " JOIN group_members gm ON gm.group_id = g.id"
                           " WHERE %s::text[] IS NULL OR g.id = ANY(%s)"),
                   [list(groups) if groups else None] * 2, shared=True)


def _sum_groups(per_user: dict[Any, Row], members: list[Row]) -> dict[Any, Row]:
    """Users' spend and counts added up per directory group (a user in two groups counts in
    both); users in none under (no group). A group's spend is unknown only when no member's is
    known, as COST_SUM would say of their rows together."""
    users: dict[Any, list[Any]] = {}
    grouped: set[Any] = set()
    for m in members:
        if m["user_id"] in per_user:
            grouped.add(m["user_id"])
            users.setdefault((m["group_id"], m["name"]), []).append(m["user_id"])
    rest = [u for u in per_user if u not in grouped]
    if rest:
        users[(None, NO_GROUP)] = rest
    out: dict[Any, Row] = {}
    for key, ids in users.items():
        rows = [per_user[u] for u in ids]
        known = [g["cost"] for g in rows if g["cost"] is not None]
        out[key] = {"cost": sum(known) if known else None,
                    **{m: sum(g[m] for g in rows) for m in ("unpriced_tokens", *PRODUCTIVITY_METRICS)}}
    return out


def by_group(e: Engine, q: Query) -> Result:
    prev = tr.previous_window(q.window, q.tz, q.ptd_unit, q.whole_unit)
    members = _memberships(e, q.filters.get("group"))
    now = _sum_groups(_groups(e, q, q.window, "user"), members)
    before = _sum_groups(_groups(e, q, prev, "user"), members)
    if q.filters.get("group"):  # the groups asked for, not the other groups of their members
        now = {k: v for k, v in now.items() if k[0] is not None}
    rows = _with_previous(now, before, FIGURES)
    for r in rows:
        r["group_id"], r["group"] = r.pop("key")
    return _ranked(rows, q, lambda r: (r["group_id"] is None, r["group"]))


def by_model(e: Engine, q: Query) -> Result:
    prev = tr.previous_window(q.window, q.tz, q.ptd_unit, q.whole_unit)
    now, before = _groups(e, q, q.window, "model"), _groups(e, q, prev, "model")
    rows = []
    for r in _with_previous(now, before, ("cost_per_kloc",)):
        if r["cost"] is None and not r["lines_added"] + r["lines_removed"]:
            continue  # what names no model (commits, pull requests, edit decisions) and no spend
        rows.append({"model": r["key"], "cost": r["cost"], "unpriced_tokens": r["unpriced_tokens"],
                     "lines_added": r["lines_added"], "lines_removed": r["lines_removed"],
                     "cost_per_kloc": r["cost_per_kloc"], "previous_cost_per_kloc": r["previous_cost_per_kloc"]})
    return _ranked(rows, q, lambda r: (r["model"],))


def by_dimension(dimension: str) -> Callable[[Engine, Query], Result]:
    """Per value of an attribution dimension; what processes that set none spent and bought is
    the (unattributed) row, ranked after the attributed ones it ties with."""
    def build(e: Engine, q: Query) -> Result:
        prev = tr.previous_window(q.window, q.tz, q.ptd_unit, q.whole_unit)
        rows = _with_previous(_groups(e, q, q.window, dimension), _groups(e, q, prev, dimension), FIGURES)
        for r in rows:
            value = r.pop("key")
            r[dimension], r["attributed"] = (value, True) if value is not None else (NO_ATTRIBUTION, False)
        return _ranked(rows, q, lambda r: (not r["attributed"], r[dimension]))
    return build


_EDITS = ("SELECT language, tool_name, coalesce(sum(edits_accepted), 0)::float8 AS accepted,"
          " coalesce(sum(edits_rejected), 0)::float8 AS rejected FROM src"
          " WHERE edits_accepted IS NOT NULL OR edits_rejected IS NOT NULL GROUP BY 1, 2")


def edits_by_language(e: Engine, q: Query) -> Result:
    prev = tr.previous_window(q.window, q.tz, q.ptd_unit, q.whole_unit)
    now, before = ({(r["language"], r["tool_name"]): r for r in e.with_src(e._src(PRODUCTIVITY, w, q), _EDITS)}
                   for w in (q.window, prev))
    rows = []
    for (language, tool), r in now.items():
        old = before.get((language, tool))
        rows.append({"language": language, "tool_name": tool, "edits_accepted": r["accepted"],
                     "edits_rejected": r["rejected"], "acceptance_pct": _per(100 * r["accepted"], r["accepted"] + r["rejected"]),
                     "previous_acceptance_pct": _per(100 * old["accepted"], old["accepted"] + old["rejected"])
                     if old else None})
    rows.sort(key=lambda r: (-(r["edits_accepted"] + r["edits_rejected"]), r["language"], r["tool_name"]))
    return Result(rows[q.offset:q.offset + q.limit], total=len(rows))


_UNPRICED = col("unpriced_tokens", "number", COUNT, "Unpriced tokens")
_COUNT_COLUMNS = (col("pull_requests", "number", COUNT, "Pull requests"), col("commits", "number", COUNT, "Commits"),
                  col("lines_added", "number", COUNT, "Lines added"), col("lines_removed", "number", COUNT, "Lines removed"),
                  col("edits_accepted", "number", COUNT, "Edits accepted"),
                  col("edits_rejected", "number", COUNT, "Edits rejected"),
                  col("active_seconds", "number", SECONDS, "Active time"))
_TITLES = {"cost_per_pull_request": "Cost per pull request", "cost_per_commit": "Cost per commit",
           "cost_per_kloc": "Cost per 1,000 lines changed", "acceptance_pct": "Edit acceptance rate"}
_FIGURE_COLUMNS = tuple(c for name, (_, unit) in FIGURES.items()
                        for c in (col(name, "number", unit, _TITLES[name]),
                                  col("previous_" + name, "number", unit, f"{_TITLES[name]}, previous period")))
_SPEND = (col("cost", "number", USD, "Spend (USD)"), _UNPRICED)


def _table(id_: str, title: str, keys: tuple[Column, ...], columns: tuple[Column, ...], description: str,
           build: Callable[[Engine, Query], Result], needs: Iterable[str]) -> Metric:
    """A paged table. Its builder reads the productivity points needing `needs` (and the spend
    beside them, needing the agent too: _groups)."""
    return Metric(id_, "value", "table", title, USD, keys + columns, VALUE_FILTERS, description, paged=True,
                  build=build, reads=reads(PRODUCTIVITY, ALL, needs, time=False))


def _figure(name: str, count: Column, description: str) -> Metric:
    unit = FIGURES[name][1]
    title = _TITLES[name]
    return Metric(f"value_{name}", "value", "stat", title, unit,
                  (col("value", "number", unit, title), col("previous", "number", unit, "Previous period"),
                   col("change_pct", "number", PERCENT, "Change"), col("cost", "number", USD, "Spend (USD)"),
                   count, _UNPRICED), VALUE_FILTERS, description,
                  build=_figure_stat(name), reads=reads(PRODUCTIVITY, ALL, (), time=False))


def _count(m: str, title: str, unit: str, description: str) -> Metric:
    return stat(f"value_{m}", "value", title, unit, VALUE_FILTERS, description, PRODUCTIVITY, ALL, needs=(),
                body=f"SELECT coalesce(sum({m}), 0)::float8 AS v FROM src")


_SPEND_TITLE = "Spend of agents reporting productivity"
_ALL_SPEND = ("All of the agents' spend in the window (of the users the filters select) counts, whatever it "
              "bought: it is attributed to the {what}. ")
METRICS: tuple[Metric, ...] = (
    _figure("cost_per_pull_request", col("pull_requests", "number", COUNT, "Pull requests"),
            _ALL_SPEND.format(what="pull requests") + "Null when there were none (unknown, not $0)."),
    _figure("cost_per_commit", col("commits", "number", COUNT, "Commits"),
            _ALL_SPEND.format(what="commits") + "Null when there were none."),
    _figure("cost_per_kloc", col("lines", "number", COUNT, "Lines changed"),
            _ALL_SPEND.format(what="lines added and removed") + "Null when none changed."),
    _figure("acceptance_pct", col("edits", "number", COUNT, "Edit decisions"),
            "Accepted edit decisions (Edit, Write, NotebookEdit) of all decided, in percent; null when none."),
    Metric("value_spend", "value", "stat", _SPEND_TITLE, USD,
           (col("value", "number", USD, _SPEND_TITLE), col("previous", "number", USD, "Previous period"),
            col("change_pct", "number", PERCENT, "Change"), _UNPRICED), VALUE_FILTERS,
           "The cost (AA_COST_SOURCE) of the agents that send productivity metrics (Claude Code); null when "
           "none of it could be priced.", build=spend, reads=reads(LLM_USAGE, ALL, ("agent_id",), time=False)),
    _count("pull_requests", "Pull requests", COUNT, "Pull requests the agents created (gh pr create)."),
    _count("commits", "Commits", COUNT, "Commits the agents made."),
    _count("lines_added", "Lines added", COUNT, "Lines of code the agents' edits added."),
    _count("lines_removed", "Lines removed", COUNT, "Lines of code the agents' edits removed."),
    _count("active_seconds", "Active time", SECONDS, "Time the user and the agent were active, in seconds."),
    series("value_lines_over_time", "value", "Lines changed", COUNT, VALUE_FILTERS,
           "Lines added and removed per bucket.", PRODUCTIVITY, ALL, needs=(),
           sums="coalesce(sum(lines_added), 0) + coalesce(sum(lines_removed), 0) AS lines", column="lines"),
    _table("value_by_user", "Value by user", (col("user_id", title="User id"), col("user", title="User")),
           _SPEND + _COUNT_COLUMNS + _FIGURE_COLUMNS,
           "Per user: spend, what it bought and the figures, with the previous period's.", by_user,
           needs=("user_id",)),
    _table("value_by_group", "Value by group", (col("group_id", title="Group id"), col("group", title="Group")),
           _SPEND + _COUNT_COLUMNS + _FIGURE_COLUMNS,
           "Per directory group (its members as of now; a user in two groups counts in both; users in none "
           "under (no group)).", by_group, needs=("user_id",)),
    _table("value_by_model", "Value by model", (col("model", title="Model"),),
           _SPEND + _COUNT_COLUMNS[2:4] + _FIGURE_COLUMNS[4:6],
           "Per model: spend, lines changed and cost per 1,000 lines. Commits, pull requests and edit decisions "
           "name no model in the telemetry: no per-model figure for them.", by_model, needs=("model",)),
    _table("value_edits_by_language", "Edit decisions by language",
           (col("language", title="Language"), col("tool_name", title="Tool")),
           _COUNT_COLUMNS[4:6] + _FIGURE_COLUMNS[6:8],
           "Edit decisions per file language and tool, accepted of all decided, with the previous period's.",
           edits_by_language, needs=("language", "tool_name")),
    *(_table(f"value_by_{d.name}", f"Value by {d.title.lower()}", attribution_columns(d.name, d.title),
             _SPEND + _COUNT_COLUMNS + _FIGURE_COLUMNS,
             f"Per {d.title.lower()} (resource attribute {d.attribute} by default, as the agent's process sent it "
             "with its requests and its productivity metrics): spend, what it bought and the figures, with the "
             "previous period's. What processes that set none spent and bought is the (unattributed) row; "
             "productivity points stored before migration 0018 are unattributed.", by_dimension(d.name),
             needs=(d.name,))
      for d in ATTRIBUTION),
)
