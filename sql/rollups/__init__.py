"""The aggregates: rollups of the raw tables into time buckets, each declared once, in the module
of its raw table (tool_calls, llm_requests, metric_points, agent_enforcement, productivity_points,
llm_errors; `attribution` adds the attribution dimensions to rollups of several of them, `keys`
holds the keys several tables share). This package collects them, its names those of every module.

A `Rollup` names the raw table it groups, the rows it holds, its keys, its measures and the
bucket widths it is kept at (hourly; daily, by UTC day, for whole days of a window; and, for every
hourly one, a twin by minute for the partial hours at a window's edges). From it:

- `Aggregate.select` renders the SELECT of one width: aggregates.py builds from it a continuous
  aggregate on TimescaleDB and a rollup on plain PostgreSQL (plain/20_rollups.sql: a table of
  its buckets, `narrowed` to refresh it, a view adding `plain_live`, both in aggregates.py), and
  records its checksum;
- datasource/relations.py chooses which aggregate answers a question from the keys each holds,
  and projects the raw rows read in an aggregate's place from its measures (a `FilteredSum`
  renders both the measure and a raw row's share of it).

A database records the checksum of each aggregate's SELECT and rebuilds an aggregate whose
SELECT changes, from the raw rows that remain (retention may have dropped older ones): a change
to a key, a measure, a width or to `_render`'s layout (rollup_shapes.py) rebuilds what it touches. The comment
(`docs`) is no part of that checksum, but releases up to migration 0008 recorded the whole text,
so the rendered text stays byte for byte theirs (tests/test_rollups_declared.py holds it to
tests/legacy/aggregates_0008, but for the aggregates deliberately redefined since, named in
tests/rollups_support.py) until every database has been migrated by a release that records the
SELECT alone.
"""
from __future__ import annotations

from agent_analytics.sql.rollup_shapes import (DAY, HOUR, MINUTE, SECONDS, SUFFIX, Aggregate, FilteredSum, Key,
                                               Measure, Raw, Rollup, narrowed, plain_live)

from . import agent_enforcement, attribution, llm_errors, llm_requests, metric_points, productivity_points, tool_calls
# Every module's names as the package's (`rollups.LLM_USAGE_FULL`, `rollups.BAND_MS`).
from .agent_enforcement import *  # noqa: F403
from .attribution import *  # noqa: F403
from .keys import *  # noqa: F403
from .llm_errors import *  # noqa: F403
from .llm_requests import *  # noqa: F403
from .metric_points import *  # noqa: F403
from .productivity_points import *  # noqa: F403
from .tool_calls import *  # noqa: F403

# Every rollup declared, module by module in this order, each module's in its own.
_MODULES = (tool_calls, llm_requests, metric_points, agent_enforcement, productivity_points, llm_errors, attribution)
ROLLUPS: tuple[Rollup, ...] = tuple({id(v): v for m in _MODULES for v in vars(m).values()
                                     if isinstance(v, Rollup)}.values())
# Every aggregate, by name.
AGGREGATES: dict[str, Aggregate] = dict(sorted(
    (a.name, a) for r in ROLLUPS for a in (r.at(w) for w in r.widths)))
# The per-minute twin of each hourly aggregate, by the hourly one's name.
MINUTELY: dict[str, str] = {r.hourly.name: r.minutely.name for r in ROLLUPS if r.minutely is not None}
