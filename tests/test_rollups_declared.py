"""The aggregates are declared once (sql/rollups/) and rendered to the SELECT each database
recorded the checksum of: byte for byte the definitions of the release with migration 0008
(tests/legacy/aggregates_0008), so upgrading rebuilds none of them but those deliberately
redefined since (REDEFINED). The "choose aggregate" stage reads the same declarations. No
database needed."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from agent_analytics.datasource import relations
from agent_analytics.datasource.relations import (LLM_METRIC_USAGE, LLM_SESSIONS, LLM_USAGE, SESSION_METRICS,
                                                  TOOL_CALLS, projection)
from agent_analytics.ingest import normalise_claude_code
from agent_analytics.sql import rollups
from agent_analytics.sql.migrate import AGGREGATES, aggregate_definitions
from tests.rollups_support import REDEFINED, RELEASE


def test_the_release_files_are_all_there():
    assert len(list(RELEASE.glob("*.sql"))) == 35
    assert REDEFINED < {p.stem for p in RELEASE.glob("*.sql")} and len(REDEFINED) == 12


@pytest.mark.parametrize("name", sorted(p.stem for p in RELEASE.glob("*.sql")))
def test_each_aggregate_renders_as_the_release_defined_it(name):
    released = (RELEASE / f"{name}.sql").read_bytes()
    rendered = rollups.AGGREGATES[name].select.encode()
    if name in REDEFINED:
        # Redefined by adding measures: every line the release had is kept, in order (the last
        # measure's gaining a comma); the lines added name only the unpriced-token sums.
        old, new = ([line.rstrip(b",") for line in text.splitlines()] for text in (released, rendered))
        added, kept = [], 0
        for line in new:
            if kept < len(old) and line == old[kept]:
                kept += 1
            else:
                added.append(line)
        assert kept == len(old), old[kept:]
        names = {m[1] for line in added if (m := re.search(rb" AS (\w+)$", line))}
        assert names and names <= {b"estimated_unpriced_tokens", b"reported_unpriced_tokens"}, added
        return
    assert rendered == released
    # What aggregates.py records and compares.
    assert hashlib.sha256(rendered).hexdigest() == hashlib.sha256(released).hexdigest()


def test_every_raw_table_of_a_rollup_is_a_hypertable():
    """timescaledb/10_hypertables.sql declares the raw tables' storage on TimescaleDB (time column,
    chunk width); the policies (30_policies.sql) apply to the hypertables it made. A raw table
    declared in rollups/ but not there would be neither chunked, compressed nor dropped."""
    text = (Path(__file__).parents[1] / "sql" / "timescaledb" / "10_hypertables.sql").read_text()
    hypertables = set(re.findall(r"\('(\w+)',\s*'\w+',\s*INTERVAL", text))
    assert {r.raw.table for r in rollups.ROLLUPS} <= hypertables


def test_the_agent_with_a_cost_metric_is_one_source():
    """The aggregates, the raw-row projections and the session totals at ingest leave out the same
    agent's token points from the reported cost's unpriced tokens."""
    assert rollups.COST_METRIC_SOURCE == relations.COST_METRIC_SOURCE == normalise_claude_code.SOURCE


def test_every_aggregate_is_declared_once():
    assert aggregate_definitions() == {name: a.select for name, a in rollups.AGGREGATES.items()}
    assert set(AGGREGATES) == set(rollups.AGGREGATES) >= {p.stem for p in RELEASE.glob("*.sql")} - REDEFINED
    names = [a.name for r in rollups.ROLLUPS
             for a in (r.hourly if rollups.HOUR in r.docs else None, r.daily, r.minutely) if a]
    assert len(names) == len(set(names)) == len(AGGREGATES)


def test_every_module_of_the_rollups_package_is_collected():
    """A module left out of `_MODULES` would declare rollups no database gets."""
    modules = {p.stem for p in Path(rollups.__file__).parent.glob("*.py")} - {"__init__", "keys"}
    assert {m.__name__.rpartition(".")[2] for m in rollups._MODULES} == modules


def test_a_minutely_twin_groups_as_its_hourly_rollup_by_minute():
    """Every hourly aggregate has its twin by minute (the planner reads the partial hours from it),
    grouping the same rows by the same keys."""
    minutely = [r for r in rollups.ROLLUPS if r.minutely is not None]
    assert {r.hourly.name for r in minutely} == {r.hourly.name for r in rollups.ROLLUPS if rollups.HOUR in r.docs}
    assert rollups.MINUTELY == {r.hourly.name: r.name + "_minutely" for r in minutely}
    for r in minutely:
        body = lambda text: [line for line in text.splitlines() if not line.startswith("--")]  # noqa: E731
        assert body(r.minutely.select) == [line.replace("INTERVAL '1 hour'", "INTERVAL '1 minute'")
                                           for line in body(r.hourly.select)]


def test_a_daily_twin_groups_as_its_hourly_rollup_by_day():
    for r in rollups.ROLLUPS:
        if r.daily is not None and rollups.HOUR in r.docs:
            hourly, daily = r.hourly.select, r.daily.select
            body = lambda text: [line for line in text.splitlines() if not line.startswith("--")]  # noqa: E731
            assert body(daily) == [line.replace("INTERVAL '1 hour'", "INTERVAL '1 day'") for line in body(hourly)]


def _read(item: str) -> set[str]:
    """The columns an item of a projection reads (our own SQL: lower-case names, upper-case words)."""
    expr = item.strip().partition(" AS ")[0]
    return set(re.findall(r"\b[a-z_]+\b", re.sub(r"'[^']*'", "", expr)))


@pytest.mark.parametrize("ds", [TOOL_CALLS, LLM_USAGE, LLM_METRIC_USAGE, LLM_SESSIONS, SESSION_METRICS],
                         ids=lambda ds: ds.aggregate)
@pytest.mark.parametrize("cost", ["estimated", "reported"])
def test_every_relation_a_dataset_reads_holds_the_columns_it_projects(ds, cost):
    """The choice reads the declarations: each relation it may pick (the full aggregate, each
    rollup and its daily twin) holds every column of the dataset's projection it keeps."""
    def columns(name: str) -> set[str]:
        a = rollups.AGGREGATES[name]
        return {"bucket", *(k.name for k in a.keys), *(m.name for m in a.rollup.measures)}

    assert set().union(*map(_read, ds.agg_columns.format(cost=cost).split(","))) <= columns(ds.aggregate)
    for rollup in ds.rollups:
        kept = [item for item in projection(ds, rollup).format(cost=cost).split(",") if "NULL::text" not in item]
        for name in filter(None, (rollup.name, rollup.daily)):
            assert set().union(*map(_read, kept)) <= columns(name), name
