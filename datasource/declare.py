"""Declaring a metric in the shapes most metrics share: a stat with its previous period, a
series with the previous period's buckets alongside, a top list. Each returns the catalog's
Metric, its columns drawn from the shape and its builder running the shape (kinds.py) over what
it reads: the dataset, the rows it counts (a named relations.Condition) and the key columns its
body reads beyond the dataset's measures and time (`needs`; relations.EVERY_COLUMN for the full
aggregate). `needs` has no default: a declaration without it fails at import. A metric of
another shape is a catalog.Metric with its own builder and relations.reads(...).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from agent_analytics.datasource import kinds
from agent_analytics.datasource.catalog import PERCENT, Column, Metric
from agent_analytics.datasource.kinds import Handler
from agent_analytics.datasource.relations import Condition, Dataset, reads

Rows = list[dict[str, Any]]


def stat(id_: str, tab: str, title: str, unit: str, filters: tuple[str, ...], description: str,
         dataset: Dataset, rows: Condition, *, needs: Iterable[str] | None, body: str,
         value: Callable[[Rows], Any] = kinds.column("v"), more: tuple[Column, ...] = (),
         time: bool = False, build: Handler | None = None) -> Metric:
    """A stat: `body` run over `src` (the rows of the range, then of the previous one), its
    value read by `value` (by default the column `v`). `more`: columns of the range's row
    answered besides the value. `time`: whether the body looks at when a row fell (a total
    does not, so whole days may come from a daily rollup). `build`: a builder of its own."""
    columns = (Column("value", "number", unit, title), Column("previous", "number", unit, "Previous period"),
               Column("change_pct", "number", PERCENT, "Change")) + more
    handler = build or kinds.stat_handler((dataset, rows, body, value), tuple(c.name for c in more))
    return Metric(id_, tab, "stat", title, unit, columns, filters, description, build=handler,
                  reads=reads(dataset, rows, needs, time=time))


def series(id_: str, tab: str, title: str, unit: str, filters: tuple[str, ...], description: str,
           dataset: Dataset, rows: Condition, *, needs: Iterable[str] | None, sums: str, column: str,
           more: tuple[Column, ...] = ()) -> Metric:
    """A series: `sums` per bucket of `src` (`SELECT date_trunc(...) AS b, {sums} FROM src GROUP
    BY 1`), the column `column` drawn; `more`: columns of each bucket answered besides it."""
    columns = (Column("time", "time"), Column("current", "number", unit, title),
               Column("previous", "number", unit, "Previous period")) + more
    handler = kinds.series_handler((dataset, rows, sums, column), tuple(c.name for c in more))
    return Metric(id_, tab, "timeseries", title, unit, columns, filters, description, build=handler,
                  reads=reads(dataset, rows, needs, time=True))


def top(id_: str, tab: str, title: str, keys: tuple[Column, ...], measure: Column, filters: tuple[str, ...],
        description: str, dataset: Dataset, rows: Condition, *, needs: Iterable[str] | None, body: str,
        more: tuple[Column, ...] = (), order: Callable[[dict[str, Any]], tuple] | None = None) -> Metric:
    """A top list (a paged table): `body` over `src` answers its groups ranked, with `total`
    (count(*) OVER ()); or, with `order`, unranked groups shared by the panels of a refresh and
    ranked here by that key."""
    handler = kinds.top_handler((dataset, rows, body), order)
    return Metric(id_, tab, "table", title, measure.unit, keys + (measure,) + more, filters, description,
                  paged=True, build=handler, reads=reads(dataset, rows, needs, time=False))
