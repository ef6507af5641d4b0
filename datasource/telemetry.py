"""The Telemetry dashboard's metrics: what is arriving, from `ingest_stats` (migration 0010,
written by the receiver in each batch's transaction: ingest/stats.py).

The table holds hours of arrival: a range takes every hour it touches (its first, partial hour
whole). Received = stored + duplicate + ignored + rejected. No model or token figure is read,
so the Telemetry metrics need only the query permission. Each metric is declared once here
(METRICS, collected by catalog.py) with its builder; none reads a dataset of relations.py.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from psycopg import sql

from agent_analytics.datasource import timerange as tr
from agent_analytics.datasource.catalog import COUNT, Metric, col
from agent_analytics.datasource.query import Query
from agent_analytics.ingest.sources import SOURCES
from agent_analytics.ingest.stats import OUTCOMES

if TYPE_CHECKING:
    from agent_analytics.datasource.engine import Engine, Result

_C = 'COLLATE "C"'
# Records by outcome, summed over the rows of a group.
_COUNTS = ", ".join(f"coalesce(sum(records) FILTER (WHERE outcome = '{o}'), 0)::bigint AS {o}" for o in OUTCOMES)
_RANGE = "bucket >= date_trunc('hour', %s::timestamptz) AND bucket < %s"
_SOURCE_NAME = ("CASE source " + " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in SOURCES.items())
                + " ELSE source END")

_SOURCES = (
    f"SELECT source AS source_id, {_SOURCE_NAME} AS source,"
    f" string_agg(DISTINCT signal, ', ' ORDER BY signal) AS signals,"
    f" string_agg(DISTINCT nullif(version, ''), ', ' ORDER BY nullif(version, '')) AS versions,"
    f" max(last_seen) AS last_seen, {_COUNTS}, count(*) OVER () AS total"
    f" FROM ingest_stats WHERE {_RANGE} GROUP BY source ORDER BY max(last_seen) DESC, source {_C}"
    f" LIMIT %s OFFSET %s")

_SENDERS = (
    f"SELECT {_SOURCE_NAME} AS source, nullif(g.service, '') AS service, g.versions,"
    f" nullif(g.agent_instance, '') AS agent_instance, nullif(g.user_id, '') AS user_id,"
    f" coalesce(u.display_name, u.email, nullif(g.user_id, '')) AS \"user\", g.last_seen,"
    f" {', '.join(OUTCOMES)}, count(*) OVER () AS total"
    f" FROM (SELECT source, service, agent_instance, user_id,"
    f"       string_agg(DISTINCT nullif(version, ''), ', ' ORDER BY nullif(version, '')) AS versions,"
    f"       max(last_seen) AS last_seen, {_COUNTS}"
    f"       FROM ingest_stats WHERE {_RANGE} GROUP BY source, service, agent_instance, user_id) g"
    f" LEFT JOIN users u ON u.id = g.user_id"
    f" ORDER BY g.last_seen DESC, g.source {_C}, g.service {_C}, g.agent_instance {_C}, g.user_id {_C}"
    f" LIMIT %s OFFSET %s")

_REJECTIONS = (
    f"SELECT {_SOURCE_NAME} AS source, reason, sum(records)::bigint AS rejected, max(last_seen) AS last_seen,"
    f" count(*) OVER () AS total"
    f" FROM ingest_stats WHERE outcome = 'rejected' AND {_RANGE} GROUP BY source, reason"
    f" ORDER BY sum(records) DESC, source {_C}, reason {_C} LIMIT %s OFFSET %s")

_OVER_TIME = (f"SELECT date_trunc(%s, bucket, %s) AS b, {_COUNTS} FROM ingest_stats WHERE {_RANGE} GROUP BY 1")


def _ms(value: datetime | None) -> int | None:
    return None if value is None else tr.to_ms(value)


def _table(body: str, times: tuple[str, ...]) -> Callable[["Engine", Query], "Result"]:
    def run(engine: "Engine", q: Query) -> "Result":
        from agent_analytics.datasource.engine import Result

        engine._note("ingest_stats")
        rows = engine.fetch(sql.SQL(body), [q.window.start, q.window.end, q.limit, q.offset])
        total = int(rows[0]["total"]) if rows else 0
        if not rows and q.offset:
            total = len(engine.fetch(sql.SQL(body), [q.window.start, q.window.end, None, 0]))
        out: list[dict[str, Any]] = []
        for r in rows:
            r.pop("total")
            r.update({t: _ms(r[t]) for t in times})
            if "stored" in r:
                r["received"] = sum(r[o] for o in OUTCOMES)
            out.append(r)
        return Result(out, total=total)
    return run


def records_over_time(engine: "Engine", q: Query) -> "Result":
    """Records by outcome per bucket of the dashboards' rule (hourly up to two days, else daily
    at local midnight), every bucket present."""
    from agent_analytics.datasource.engine import Result

    unit = tr.bucket_unit(q.window)
    engine._note("ingest_stats")
    rows = engine.fetch(sql.SQL(_OVER_TIME), [unit, q.tz.key, q.window.start, q.window.end])
    by = {r["b"]: r for r in rows}
    out = []
    for start in tr.bucket_starts(q.window, unit, q.tz):
        r = by.get(start)
        out.append({"time": tr.to_ms(start), **{o: int(r[o]) if r else 0 for o in OUTCOMES}})
    return Result(out, meta={"bucket": unit})


_RECORDS = tuple(col(name, "number", COUNT, title) for name, title in (
    ("received", "Received"), ("stored", "Stored"), ("duplicate", "Duplicates"), ("ignored", "Ignored"),
    ("rejected", "Rejected")))
_LAST_SEEN = col("last_seen", "time", None, "Last seen")

METRICS: tuple[Metric, ...] = (
    Metric("telemetry_sources", "telemetry", "table", "Sources", COUNT,
           (col("source_id", title="Source id"), col("source", title="Source"), col("signals", title="Signals"),
            col("versions", title="Versions"), _LAST_SEEN) + _RECORDS, (),
           "Per source (Claude Code, Codex, MCP gateway, MCP server, MCP client, GenAI SDK): the signals and "
           "versions (service.version) that arrived, when the last record did, and the records received, stored, "
           "already stored (duplicates), ignored and rejected.", paged=True,
           build=_table(_SOURCES, ("last_seen",)), reads=None),
    Metric("telemetry_senders", "telemetry", "table", "Agent instances and users", COUNT,
           (col("source", title="Source"), col("service", title="Service"), col("versions", title="Versions"),
            col("agent_instance", title="Agent instance"), col("user_id", title="User id"),
            col("user", title="User"), _LAST_SEEN) + _RECORDS, (),
           "Per sending service, agent instance and user, the most recent first.", paged=True,
           build=_table(_SENDERS, ("last_seen",)), reads=None),
    Metric("telemetry_records_over_time", "telemetry", "timeseries", "Records by outcome", COUNT,
           (col("time", "time"),) + _RECORDS[1:], (),
           "Records per bucket of arrival by what became of them; no previous period.",
           build=records_over_time, reads=None),
    Metric("telemetry_rejections", "telemetry", "table", "Rejection reasons", COUNT,
           (col("source", title="Source"), col("reason", title="Reason"),
            col("rejected", "number", COUNT, "Rejected"), _LAST_SEEN), (),
           "Rejected records by source and reason (the reason's words before any quoted or numeric detail).",
           paged=True, build=_table(_REJECTIONS, ("last_seen",)), reads=None),
)
