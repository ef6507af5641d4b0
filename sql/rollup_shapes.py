"""How a rollup is declared and rendered: keys, measures, raw tables, rollups and the aggregates
of each width (sql/rollups/ declares them all). `_render` writes an aggregate's SELECT in the
layout its SQL file had (see rollups/__init__.py on why the text must stay byte for byte); `narrowed` and
`plain_live` give plain PostgreSQL's rollups their refresh query and live part."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from psycopg.sql import quote

MINUTE, HOUR, DAY = "1 minute", "1 hour", "1 day"
SUFFIX = {MINUTE: "minutely", HOUR: "hourly", DAY: "daily"}
SECONDS = {MINUTE: 60, HOUR: 3600, DAY: 86400}

_INDENT = " " * len("SELECT ")
_GROUP_INDENT = " " * len("GROUP BY ")
_WIDTH = 97  # keys and GROUP BY wrap to lines of at most this many characters


@dataclass(frozen=True)
class Key:
    """A grouping column. `expr`: what it groups by when not the raw column itself; such a key
    holds the column only in part (the filters and questions on it need the raw column). `type`:
    its SQL type, for the NULL a rollup without it reads in its place."""
    name: str
    expr: str | None = None
    type: str = "text"

    @property
    def whole(self) -> bool:
        return self.expr is None

    @property
    def grouped(self) -> str:
        return self.expr or self.name

    @property
    def selected(self) -> str:
        return f"{self.expr} AS {self.name}" if self.expr else self.name


@dataclass(frozen=True)
class Measure:
    """An aggregated column; `expr` may span lines (continuation lines indented from SELECT's
    columns, the last one ending where the name is written). `counts`: the rule it sums, when it
    is one (FilteredSum.measure), from which a raw row's share of it is projected too."""
    name: str
    expr: str
    counts: FilteredSum | None = field(default=None, compare=False)

    @property
    def row(self) -> str:
        """A raw row's share of the measure, for the queries that read raw rows instead (the
        window's edges, or no aggregates at all): summed, the raw rows give the measure."""
        if self.counts is None:
            raise ValueError(f"measure {self.name} declares no FilteredSum to project a raw row from")
        return self.counts.row


@dataclass(frozen=True)
class FilteredSum:
    """A sum of `value` over the raw rows meeting `condition`: both the aggregate's measure and a
    raw row's projection are rendered from it, so that they count the same rows. `row_type`: the
    projection's cast, where a column chooses between shares of different types (the cost)."""
    value: str
    condition: str
    row_type: str | None = None

    def measure(self, name: str, *, before: str = "", between: str = " ", after: str = "") -> Measure:
        """The measure `name`: `sum(value) FILTER (WHERE condition)`, laid out with `before`
        (a comment line), `between` (a space or a line break) and `after` (a line break puts
        the name on a line of its own)."""
        return Measure(name, f"{before}sum({self.value}){between}FILTER (WHERE {self.condition}){after}", self)

    @property
    def row(self) -> str:
        value = f"{self.value}::{self.row_type}" if self.row_type else self.value
        return f"CASE WHEN {self.condition} THEN {value} END"


@dataclass(frozen=True)
class Raw:
    """A raw table and every measure its rollups may hold. `column`: where the measures' names
    are written, when a rollup holds more than one (past it after a longer expression)."""
    table: str
    measures: tuple[Measure, ...]
    column: int

    def measure(self, name: str) -> Measure:
        """Its measure `name`."""
        for m in self.measures:
            if m.name == name:
                return m
        raise KeyError(f"{self.table} has no measure {name}")


@dataclass(frozen=True)
class Aggregate:
    """One rollup at one bucket width: a relation the queries read."""
    name: str
    rollup: Rollup
    width: str

    @property
    def raw(self) -> str:
        return self.rollup.raw.table

    @property
    def keys(self) -> tuple[Key, ...]:
        return self.rollup.keys

    @property
    def where(self) -> str | None:
        return self.rollup.where

    @property
    def seconds(self) -> int:
        return SECONDS[self.width]

    @property
    def select(self) -> str:
        return _render(self.rollup, self.width)


@dataclass(frozen=True)
class Rollup:
    """Rows of `raw` (those meeting `where`) grouped by time bucket and `keys`, at each width
    `docs` describes (the aggregate's comment), and by minute beside hours. The aggregate of a
    width is named `{name}_minutely`, `{name}_hourly` or `{name}_daily`."""
    name: str
    raw: Raw
    keys: tuple[Key, ...]
    measures: tuple[Measure, ...]
    docs: dict[str, str] = field(hash=False)
    where: str | None = None
    # Indexes on each of its aggregates beyond the time bucket's, by name suffix: columns in
    # order (aggregates.py creates them on either backend; they are no part of the SELECT).
    indexes: tuple[tuple[str, tuple[str, ...]], ...] = field(default=(), hash=False)

    def __post_init__(self) -> None:
        unknown = [m.name for m in self.measures if m not in self.raw.measures]
        if unknown or not set(self.docs) <= set(SUFFIX):
            raise ValueError(f"rollup {self.name}: measures {unknown} not of {self.raw.table}, or widths {self.docs}")

    @property
    def widths(self) -> tuple[str, ...]:
        """The widths it is kept at: those `docs` describes, and minutes beside hours (the
        partial hours at a window's edges, datasource/planner.py)."""
        return (*((MINUTE,) if HOUR in self.docs else ()), *self.docs)

    def doc(self, width: str) -> str:
        if width == MINUTE and HOUR in self.docs:
            return (f"Per-minute twin of {self.name}_hourly: the whole minutes of a window's partial hours\n"
                    "(at its edges, and the hours ended too recently to be materialised).")
        return self.docs[width]

    def at(self, width: str) -> Aggregate:
        if width not in self.widths:
            raise KeyError(f"rollup {self.name} is not kept at {width}")
        return Aggregate(f"{self.name}_{SUFFIX[width]}", self, width)

    @property
    def hourly(self) -> Aggregate:
        return self.at(HOUR)

    @property
    def daily(self) -> Aggregate | None:
        return self.at(DAY) if DAY in self.docs else None

    @property
    def minutely(self) -> Aggregate | None:
        return self.at(MINUTE) if MINUTE in self.widths else None


def _wrapped(first: str, items: list[str], indent: str, end: str) -> list[str]:
    """`items` joined by ", " after `first`, a new line (at `indent`) before one that would
    pass _WIDTH; `end` after the last."""
    lines, line = [], first
    for i, item in enumerate(items):
        piece = item + ("," if i < len(items) - 1 else end)
        if line.strip() and len(line) + 1 + len(piece) > _WIDTH:
            lines.append(line)
            line = indent + piece
        else:
            line = f"{line} {piece}" if line.strip() else line + piece
    return [*lines, line]


def _render(rollup: Rollup, width: str) -> str:
    """The SELECT of `rollup` at `width`, in the layout its SQL file had (see the module's doc)."""
    lines = [f"-- {line}".rstrip() for line in rollup.doc(width).split("\n")]
    lines.append(f"SELECT time_bucket(INTERVAL '{width}', time) AS bucket,")
    if rollup.keys:
        lines += _wrapped(_INDENT, [k.selected for k in rollup.keys], _INDENT, ",")
    column = rollup.raw.column if len(rollup.measures) > 1 else 0
    for i, m in enumerate(rollup.measures):
        *head, last = m.expr.split("\n")
        lines += [_INDENT + h for h in head]
        lines.append(f"{_INDENT}{last:<{column}} AS {m.name}" + ("," if i < len(rollup.measures) - 1 else ""))
    lines.append(f"FROM {rollup.raw.table}")
    if rollup.where:
        lines.append(f"WHERE {rollup.where}")
    lines += _wrapped("GROUP BY", ["bucket", *(k.grouped for k in rollup.keys)],
                      _GROUP_INDENT, "")
    return "\n".join(lines) + "\n"


def narrowed(select: str, raw: str, condition: str) -> str:
    """`select` reading only the rows of `raw` that satisfy `condition`: a WITH query of the
    table's name (whose own FROM still names the table) stands in for the table."""
    return f"WITH {raw} AS (SELECT * FROM {raw} WHERE {condition}) {select}"


def plain_live(name: str, select: str, raw: str, seconds: int, columns: Sequence[str]) -> str:
    """What plain PostgreSQL's rollup `name` (plain/20_rollups.sql) groups live: the raw rows
    from its watermark on, by `select` (whose `columns` its table holds).

    Those of the watermark's own bucket and of the next one (the refresh materialises every ended
    bucket: the rows there are at most two buckets' worth) are grouped, then given their bucket as
    a value with no column in it, so PostgreSQL tests a query's bound on `bucket` once and skips
    the part when the query ends before it. (It cannot see that `time_bucket(width, time) < X`
    rules out rows past X, as TimescaleDB does, and would otherwise read every raw row past the
    watermark: a day of them for a daily rollup.) Later buckets (rows from the future, or all
    while the watermark is -infinity) are grouped as usual. Widths in seconds: '1 day' added to a
    timestamptz is a calendar day in the session's zone, 23 or 25 hours across a DST change."""
    watermark = f"aa_watermark({quote(name)})"

    def bucket(k: int) -> str:
        return f"({watermark} + INTERVAL '{k * seconds} seconds')" if k else watermark

    others = ", ".join(f'q."{c}"' for c in columns if c != "bucket")
    parts = [f"SELECT {bucket(k)} AS bucket, {others} FROM ("
             f"{narrowed(select, raw, f'time >= {bucket(k)} AND time < {bucket(k + 1)}')}) q" for k in (0, 1)]
    parts.append(f"({narrowed(select, raw, f'time >= {bucket(2)}')})")
    return " UNION ALL ".join(parts)
