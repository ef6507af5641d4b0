"""The raw rows a query groups are those of a minute at most at each edge of its window, however
many arrived in the window's last hour (issue 18: with 300,000 recent rows not yet materialised, a
7-day LLM statistic took 2.4 s). Counted on the plans PostgreSQL ran (EXPLAIN ANALYZE of every
query the engine sends): the rows the scans of the raw tables (TimescaleDB: their chunks) put out,
beside an exact answer."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import psycopg

from agent_analytics.datasource.catalog import BY_ID
from agent_analytics.datasource.engine import Engine
from agent_analytics.datasource.query import Query
from agent_analytics.datasource.timerange import Window
from agent_analytics.server import next_refresh_in
from tests.harness_support import refresh_aggregates
from tests.hardening_support import api_requests
from tests.ingest_support import headers

RAW = ("llm_requests", "metric_points")


class _Counting(Engine):
    """The engine, each of its queries run under EXPLAIN ANALYZE first: `raw_rows` adds up the
    rows the scans of the raw tables put out."""

    def __init__(self, conn: psycopg.Connection, raw_relations: set[str]) -> None:
        super().__init__(conn)
        self.raw_relations = raw_relations
        self.raw_rows = 0

    def fetch(self, query, params, shared=False):
        text = query.as_string(self.conn)
        plan = self.conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + text, params).fetchone()[0]
        stack = [(json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]]
        while stack:
            node = stack.pop()
            if node.get("Relation Name") in self.raw_relations:
                self.raw_rows += node["Actual Rows"] * node["Actual Loops"]
            stack += node.get("Plans", [])
        return super().fetch(query, params, shared)


def _raw_relations(conn: psycopg.Connection, backend: str) -> set[str]:
    if backend == "plain":
        return set(RAW)
    return {*RAW, *(n for (n,) in conn.execute("SELECT chunk_name FROM timescaledb_information.chunks"
                                              " WHERE hypertable_name = ANY(%s)", (list(RAW),)))}


def test_a_week_long_stat_groups_a_minute_of_raw_rows_at_most(client, conn, backend):
    # The window ends at minute 40 of the hour before the current one (so every hour and minute
    # before it is materialised by the refresh, whatever the clock says when the test runs): 40
    # minutes of rows in its last, partial hour, which the raw table answered.
    end = datetime.now(timezone.utc).replace(minute=40, second=37, microsecond=0) - timedelta(hours=1)
    window = Window(end - timedelta(days=7), end)
    tokens_in_window = rows_in_last_minute = 0
    sent = [(end - timedelta(minutes=m, seconds=5), 4) for m in range(1, 50)]  # 49 minutes before the end
    sent += [(end - timedelta(seconds=20), 3),  # the end's own minute
             (end + timedelta(seconds=5), 5), (end + timedelta(minutes=3), 5)]  # after the window
    for k, (t0, n) in enumerate(sent):
        body, expected = api_requests(f"live{k}", n, int(t0.timestamp() * 1e9), first_tokens=10 * k)
        assert client.post("/v1/logs", data=body, headers=headers()).status_code == 200
        if t0 < end:
            tokens_in_window += sum(tokens + 1 for _, tokens in expected)  # input tokens, one output token
            rows_in_last_minute += n if t0 >= end.replace(second=0) else 0
    refresh_aggregates(conn)

    with psycopg.connect(conn.info.dsn, autocommit=True) as c:
        engine = _Counting(c, _raw_relations(c, backend))
        rows = engine.run(Query(metric=BY_ID["llm_total_tokens"], window=window, tz=timezone.utc)).rows
    assert rows[0]["value"] == tokens_in_window
    # The rows of the end's minute (read from the raw table), nothing else: the 196 rows of the 49
    # minutes before it come from the per-minute aggregates.
    assert engine.raw_rows == rows_in_last_minute == 3


def test_plain_rollups_are_refreshed_two_seconds_past_each_minute():
    """The service's refresh on plain PostgreSQL (TimescaleDB's per-minute policies likewise)."""
    minute = 1_800_000_000.0  # a minute's start (a multiple of 60)
    for second, wait in ((0, 2), (1.5, 0.5), (2, 60), (2.5, 59.5), (59, 3)):
        assert next_refresh_in(minute + second) == wait, second
