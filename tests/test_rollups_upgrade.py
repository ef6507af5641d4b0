"""A database as the release with migration 0008 left it (its aggregates from the SQL files of
the time, tests/legacy/aggregates_0008, materialised over data whose raw rows retention has since
deleted) upgrades to the aggregates declared in sql/rollups/ in place: no aggregate is rebuilt
or created but those deliberately redefined since (tests/rollups_support.py's REDEFINED, which
lose the buckets retention emptied), every other materialised bucket is kept, and the aggregates
go on to group new rows as their definitions say. From then on a comment is no part of an
aggregate's checksum."""
from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from psycopg import sql

from agent_analytics.sql import migrate as migrate_module
from agent_analytics.sql.migrate import AGGREGATES, load_migrations, migrate, pending
from tests.harness_support import NO_TSDB, TIMESCALEDB, refresh_aggregates
from tests.rawdata import load_raw_rows, raw_rows
from tests.rollups_support import ADDED, REDEFINED, RELEASE

BACKEND_CHOICES = ["off", pytest.param("on", marks=pytest.mark.skipif(not TIMESCALEDB, reason=NO_TSDB))]
RAW = ("tool_calls", "llm_requests", "llm_errors", "metric_points")
RETENTION_DAYS = 30
NEW_DATA = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)

# How the release's migrate.py made a plain rollup's view and refresh query: the raw table's FROM
# and the bucket spliced into the aggregate's SQL text.
_FROM = re.compile(r"\bFROM\s+(tool_calls|llm_requests|llm_errors|metric_points)\b")
_BUCKET = re.compile(r"time_bucket\(INTERVAL '([^']+)', time\) AS bucket")


def _spliced(select: str, condition: str) -> str:
    m = _FROM.search(select)
    assert m is not None
    return f"{select[:m.start()]}FROM (SELECT * FROM {m[1]} WHERE {condition}) {m[1]}{select[m.end():]}"


def _as_the_release_made_plain_rollups(c: psycopg.Connection) -> None:
    for path in sorted(RELEASE.glob("*.sql")):
        name, select = path.stem, path.read_text()
        seconds = {"1 hour": 3600, "1 day": 86400}[_BUCKET.search(select)[1]]
        watermark = f"aa_watermark('{name}')"

        def bucket(k: int) -> str:
            return f"({watermark} + INTERVAL '{k * seconds} seconds')" if k else watermark

        parts = [_spliced(_BUCKET.sub(f"{bucket(k)} AS bucket", select, count=1),
                          f"time >= {bucket(k)} AND time < {bucket(k + 1)}") for k in (0, 1)]
        parts.append(_spliced(select, f"time >= {bucket(2)}"))
        c.execute("UPDATE aa_rollups SET fill = %s WHERE name = %s",
                  (_spliced(select, "time >= $1 AND time < $2"), name))
        c.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {name}_mat WHERE bucket < {watermark}"
                  f" UNION ALL {' UNION ALL '.join(parts)}")


def _release(url: str, tsdb: str, monkeypatch) -> None:
    with monkeypatch.context() as m:
        m.setattr(migrate_module, "load_migrations", lambda: [x for x in load_migrations() if x.version <= 8])
        m.setattr(migrate_module, "aggregate_definitions",
                  lambda: {p.stem: p.read_text() for p in sorted(RELEASE.glob("*.sql"))})
        migrate(url, timescaledb=tsdb, retention_days=RETENTION_DAYS, compress_after_days=0)
    with psycopg.connect(url, autocommit=True) as c:
        if tsdb == "off":
            _as_the_release_made_plain_rollups(c)
        else:
            _no_background_jobs(c)


def _no_background_jobs(c: psycopg.Connection) -> None:
    """TimescaleDB's refresh and retention jobs would race the test's own (their windows leave
    the history alone, as the test's do)."""
    c.execute("SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs"
              " WHERE proc_name IN ('policy_refresh_continuous_aggregate', 'policy_retention')")


def _refresh_since(c: psycopg.Connection, name: str, since: datetime) -> None:
    for attempt in range(50):
        try:
            c.execute("CALL refresh_continuous_aggregate(%s::regclass, %s, NULL)", (name, since))
            return
        except psycopg.errors.LockNotAvailable:  # a policy job that started before it was paused
            time.sleep(0.2)
    raise AssertionError(f"{name}: refreshed concurrently for 10 s")


def _exact(v):
    # Float sums of buckets grouped live may differ in the last bits with the rows' physical order.
    return float(f"{v:.12g}") if isinstance(v, float) else v


def _contents(c: psycopg.Connection, relation: sql.Composable, before: bool) -> list[tuple]:
    rows = c.execute(sql.SQL("SELECT * FROM {} WHERE (bucket < %s) = %s").format(relation), (NEW_DATA, before))
    return sorted((tuple(map(_exact, r)) for r in rows), key=repr)


def _objects(c: psycopg.Connection, tsdb: str) -> dict[str, tuple]:
    """Each aggregate's relations: a rebuilt one would have new ones."""
    if tsdb == "on":
        return {v: (o, h) for v, o, h in c.execute(
            "SELECT view_name, format('%I', view_name)::regclass::oid, materialization_hypertable_name"
            " FROM timescaledb_information.continuous_aggregates")}
    return {n: (c.execute("SELECT %s::regclass::oid, %s::regclass::oid", (n, n + "_mat")).fetchone())
            for n in AGGREGATES if c.execute("SELECT to_regclass(%s) IS NOT NULL", (n,)).fetchone()[0]}


@pytest.mark.parametrize("tsdb", BACKEND_CHOICES)
def test_upgrade_keeps_every_aggregate_and_its_history(fresh_database, tsdb, monkeypatch):
    _release(fresh_database, tsdb, monkeypatch)
    load_raw_rows(fresh_database, raw_rows(seed=13), refresh=False)  # March 2026
    with psycopg.connect(fresh_database, autocommit=True) as c:
        refresh_aggregates(c, sorted(set(AGGREGATES) - ADDED))  # (those of the release)
        # Retention deletes the raw rows; the aggregates keep their buckets.
        if tsdb == "on":
            for raw in RAW:
                c.execute("SELECT drop_chunks(%s::regclass, older_than => make_interval(days => %s))",
                          (raw, RETENTION_DAYS))
        else:
            c.execute("SELECT aa_apply_retention(%s)", (RETENTION_DAYS,))
        assert sum(c.execute(f"SELECT count(*) FROM {raw}").fetchone()[0] for raw in RAW) == 0
        history = {a: _contents(c, sql.Identifier(a), before=True) for a in set(AGGREGATES) - ADDED}
        objects = _objects(c, tsdb)
    assert all(history.values()) and len(objects) == len(AGGREGATES) - len(ADDED) == 35

    report = migrate(fresh_database, timescaledb=tsdb, retention_days=RETENTION_DAYS, compress_after_days=0)
    assert report.applied == [m.name for m in load_migrations() if m.version > 8]
    assert sorted(report.created_aggregates) == sorted(REDEFINED | ADDED), report.summary()
    assert sorted(n for n in report.notes if "aggregate" in n) == sorted(
        f"aggregate {name} rebuilt: its definition changed" for name in REDEFINED), report.summary()
    assert pending(fresh_database) == []
    load_raw_rows(fresh_database, raw_rows(seed=14, t0=NEW_DATA, days=2), refresh=False, health=True)
    with psycopg.connect(fresh_database, autocommit=True) as c:
        after = _objects(c, tsdb)
        assert set(after) == set(objects) | ADDED
        assert {n for n in objects if after[n] != objects[n]} == REDEFINED
        if tsdb == "on":  # (a refresh reaching back over the dropped chunks would empty those buckets)
            _no_background_jobs(c)
            for a in AGGREGATES:
                _refresh_since(c, a, NEW_DATA)
        else:
            c.execute("SELECT aa_refresh_rollups()")
        for name, select in migrate_module.aggregate_definitions().items():
            # A rebuilt or new aggregate holds what the raw rows still kept say: none of the history.
            kept = [] if name in REDEFINED | ADDED else history[name]
            assert _contents(c, sql.Identifier(name), before=True) == kept, name
            # The new rows, grouped as the definition says (straight from the raw table).
            grouped = _contents(c, sql.SQL("({}) q").format(sql.SQL(select)), before=False)
            assert (grouped or name in ADDED) and _contents(c, sql.Identifier(name), before=False) == grouped, name


    # Their checksums are recorded anew, of the SELECTs alone: reworded comments rebuild none; a
    # changed SELECT rebuilds its aggregate.
    definitions = migrate_module.aggregate_definitions()
    for changed in (None, "tool_calls_totals_hourly"):
        with monkeypatch.context() as m:
            m.setattr(migrate_module, "aggregate_definitions", lambda: _reworded(definitions, changed))
            again = migrate(fresh_database, timescaledb=tsdb, retention_days=RETENTION_DAYS, compress_after_days=0)
        assert again.created_aggregates == ([changed] if changed else []), again.summary()


def _reworded(definitions: dict[str, str], changed: str | None) -> dict[str, str]:
    """The definitions with other comments, and the SELECT of `changed` counting calls twice."""
    out = {}
    for name, select in definitions.items():
        body = "".join(line for line in select.splitlines(keepends=True) if not line.startswith("--"))
        if name == changed:
            body = body.replace("count(*) AS calls", "2 * count(*) AS calls")
            assert "2 * count(*)" in body
        out[name] = f"-- {name}, in other words.\n-- (A second line.)\n{body}"
    return out
