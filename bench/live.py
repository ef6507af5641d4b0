"""Live rows under sustained ingest: how long a 7-day LLM statistic takes while senders keep
posting, with the service's own refreshes running (TimescaleDB's policies, the plain rollup job
every minute). The queries read the whole minutes of the current hour from the per-minute
aggregates and only the current minute's raw rows (and those of the minute before, until the
refresh has materialised it). Loopback only; bounded in time and count.

    python -m bench.live [--backend plain] [--rows 300000] [--minutes 30] [--queries 60] [--pause 1]
                         [--rate 50]

The rows: Claude Code api_request events through the receiver, spread evenly over the last
`--minutes` minutes up to now; meanwhile `--senders` keep posting current ones, `--rate`
records per second in all, and a query is sent every `--pause` seconds (so that the queries
span the refreshes' cycle). Counted at the start and the end of the measurement: the rows of the
current hour (what a query grouped from the raw table without the per-minute aggregates) and the
rows past the per-minute aggregate's watermark (what real-time aggregation groups).
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time
from datetime import datetime, timedelta, timezone

import psycopg
import requests

from agent_analytics.sql.migrate import refresh_aggregates

from .common import TOKEN, cluster, fresh_database, machine, pct, service
from .ingest import claude_code_batch

BATCH = 500
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PB = {**AUTH, "Content-Type": "application/x-protobuf"}
MINUTELY, HOURLY = "llm_usage_totals_minutely", "llm_usage_totals_hourly"


def _watermark(conn: psycopg.Connection, backend: str) -> datetime:
    # (The hourly aggregate's in a tree without the per-minute ones, for comparison.)
    view = MINUTELY if conn.execute("SELECT to_regclass(%s)", (MINUTELY,)).fetchone()[0] else HOURLY
    if backend == "plain":
        return conn.execute("SELECT watermark FROM aa_rollups WHERE name = %s", (view,)).fetchone()[0]
    return conn.execute(
        "SELECT _timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark(mat_hypertable_id))"
        " FROM _timescaledb_catalog.continuous_agg WHERE user_view_name = %s", (view,)).fetchone()[0]


def _live(conn: psycopg.Connection, backend: str) -> tuple[int, int]:
    """Rows of the current hour; rows past the per-minute aggregate's watermark."""
    hour, = conn.execute("SELECT count(*) FROM llm_requests WHERE time >= date_trunc('hour', now())").fetchone()
    past, = conn.execute("SELECT count(*) FROM llm_requests WHERE time >= %s", (_watermark(conn, backend),)).fetchone()
    return hour, past


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=("plain", "timescaledb"), default="plain")
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--pause", type=float, default=1.0, help="seconds between queries")
    ap.add_argument("--senders", type=int, default=2)
    ap.add_argument("--rate", type=float, default=50.0, help="records per second the senders keep posting")
    a = ap.parse_args()
    print(f"machine: {machine()}; backend: {a.backend}")
    with cluster() as c:
        url = fresh_database(c, "bench_live", a.backend)
        batches = a.rows // BATCH
        now = datetime.now(timezone.utc)
        spacing_ms = a.minutes * 60_000 / a.rows
        with service(url, role="ingest") as (ingest, _):
            s = requests.Session()
            t0 = time.monotonic()
            for n in range(batches):
                # claude_code_batch spaces records 37 ms apart: rescale to spread them evenly
                start = now - timedelta(minutes=a.minutes) + timedelta(milliseconds=n * BATCH * (spacing_ms - 37))
                body = claude_code_batch(n, BATCH, start)
                while (r := s.post(ingest + "/v1/logs", data=body, headers=PB, timeout=60)).status_code == 503:
                    time.sleep(0.5)  # the database busy: resent, as an exporter does
                r.raise_for_status()
            print(f"loaded {batches * BATCH:,} rows over the last {a.minutes:g} min in {time.monotonic() - t0:.0f} s")
            with service(url, role="query") as (query, _), psycopg.connect(url, autocommit=True) as conn:
                refresh_aggregates(conn)  # what the refreshes do after a bulk load
                stop = threading.Event()
                sent = [0]
                rejected = [0]

                def sender(k: int) -> None:
                    session = requests.Session()
                    n = 1_000_000 * (k + 1)
                    pause = 100 * a.senders / a.rate
                    while not stop.is_set() and sent[0] < 50_000:
                        stop.wait(pause)
                        # (claude_code_batch puts record i of batch n at start + (100 n + i) x 37 ms)
                        start = datetime.now(timezone.utc) - timedelta(seconds=5, milliseconds=37 * 100 * n)
                        body = claude_code_batch(n, 100, start)
                        r = session.post(ingest + "/v1/logs", data=body, headers=PB, timeout=60)
                        sent[0] += 1
                        rejected[0] += b"rejected" in r.content
                        n += 1

                senders = [threading.Thread(target=sender, args=(k,)) for k in range(a.senders)]
                for t in senders:
                    t.start()
                try:
                    stop.wait(10)  # sustained ingest before the first query
                    began, t_began = _live(conn, a.backend), time.monotonic()
                    times = []
                    for _ in range(a.queries):
                        t = time.perf_counter()
                        r = requests.get(query + "/api/v1/query/llm_total_cost", headers=AUTH, timeout=120,
                                         params={"from": "now-7d", "to": "now", "tz": "UTC"})
                        r.raise_for_status()
                        times.append((time.perf_counter() - t) * 1000)
                        stop.wait(a.pause)
                    ended, t_ended = _live(conn, a.backend), time.monotonic()
                finally:
                    stop.set()
                    for t in senders:
                        t.join(timeout=60)
                rate = (ended[0] - began[0]) / (t_ended - t_began)
                print(f"rows of the current hour {began[0]:,} -> {ended[0]:,}; past the per-minute watermark "
                      f"{began[1]:,} -> {ended[1]:,}; sustained ingest about {rate:,.0f} records/s")
                print(f"7-day LLM total cost median {statistics.median(times):.0f} ms, p95 {pct(times, 95):.0f} ms, "
                      f"max {max(times):.0f} ms over {a.queries} queries; measured at minute "
                      f"{datetime.now(timezone.utc).minute} of the hour; {sent[0]:,} batches of 100 records "
                      f"({rejected[0]} with rejections)")


if __name__ == "__main__":
    main()
