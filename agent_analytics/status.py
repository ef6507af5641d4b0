"""`agent-analytics status`: what is arriving, in a terminal: the Telemetry dashboard's Sources
and Rejection reasons, read through the same query engine (datasource/telemetry.py)."""
from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from typing import Any, Callable, Sequence
from zoneinfo import ZoneInfo

from agent_analytics.config import Config

UTC = timezone.utc


def database_url(cfg: Config) -> str | None:
    """DATABASE_URL, else the embedded cluster's (`agent-analytics up`) while it runs."""
    if cfg.database_url:
        return cfg.database_url
    from agent_analytics.cluster import ClusterError, LocalCluster
    from agent_analytics.server import EMBEDDED_DB_NAME

    try:
        cluster = LocalCluster(cfg.data_dir, cfg.embedded_pg_port)
        return cluster.url(EMBEDDED_DB_NAME) if cluster.is_running() else None
    except ClusterError:
        return None


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], right: set[int]) -> str:
    cells = [list(header)] + [["-" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     .rstrip() for r in cells)


def _when(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


COUNTS = ("received", "stored", "duplicate", "ignored", "rejected")


def report(conn: Any, cfg: Config, since: str = "now-24h", now: datetime | None = None) -> str:
    """The text `status` prints, from the Telemetry metrics over `since` .. now."""
    from agent_analytics.connect import plain
    from agent_analytics.datasource import timerange as tr
    from agent_analytics.datasource.catalog import BY_ID
    from agent_analytics.datasource.engine import Engine
    from agent_analytics.datasource.query import Query

    now = now or datetime.now(UTC)
    zone = ZoneInfo("UTC")
    window = tr.Window(tr.resolve(since, now, zone), now)

    def run(metric: str) -> list[dict[str, Any]]:
        return Engine(conn).run(Query(metric=BY_ID[metric], window=window, tz=zone)).rows

    span = f"since {_when(tr.to_ms(window.start))} UTC, by hour of arrival"
    sources = run("telemetry_sources")
    if not sources:
        return f"Nothing has arrived yet ({span}).\n\n" + plain(cfg)
    out = [f"What is arriving ({span}):", "",
           _table(("source", "signals", "versions", "last seen (UTC)", *COUNTS),
                  [(s["source"], s["signals"], s["versions"], _when(s["last_seen"]), *(s[c] for c in COUNTS))
                   for s in sources], right=set(range(4, 4 + len(COUNTS))))]
    rejections = run("telemetry_rejections")
    if rejections:
        out += ["", "Rejected records, by reason:", "",
                _table(("source", "reason", "rejected", "last seen (UTC)"),
                       [(r["source"], r["reason"], r["rejected"], _when(r["last_seen"])) for r in rejections],
                       right={2})]
    out += ["", "Per agent instance and user: the Telemetry dashboard."]
    return "\n".join(out)


def cmd_status(args: argparse.Namespace, say: Callable[[str], None] = print) -> int:
    import psycopg

    from agent_analytics.cli import _config

    cfg = _config()
    url = database_url(cfg)
    if url is None:
        sys.exit("no database: DATABASE_URL is unset and the embedded PostgreSQL is not running"
                 " (start it with `agent-analytics up`)")
    try:
        with psycopg.connect(url, connect_timeout=10, autocommit=True) as conn:
            row = conn.execute("SELECT to_regclass('ingest_stats') IS NULL").fetchone()
            if row is None or row[0]:
                sys.exit("the database schema is out of date (no ingest_stats): run `agent-analytics migrate`")
            say(report(conn, cfg, args.since))
    except psycopg.OperationalError as exc:
        sys.exit(f"could not connect to the database: {str(exc).strip().splitlines()[0]}")
    return 0


def register_commands(subparsers: Any) -> None:
    p = subparsers.add_parser("status", help="what is arriving: records per source, as on the Telemetry dashboard")
    p.add_argument("--since", default="now-24h",
                   help="start of the range, as the dashboards write it (now-1h, now-7d, now/d...; default %(default)s)")
    p.set_defaults(func=cmd_status)
