"""Live rows under sustained ingest: how long a 7-day LLM statistic takes while a sender keeps
posting, with the rollups materialised up to an hour ago (the last one to two hours of raw rows
grouped live by every query) and, as the service does, every ended hour (the current hour's rows
alone). Plain PostgreSQL, whose rollups the service refreshes itself.
Loopback only; bounded in time and count.

    python -m bench.live [--rows 300000] [--queries 40] [--senders 2]

The rows: Claude Code api_request events through the receiver, spread evenly over the last
`--hours` hours (3 by default) up to now; meanwhile `--senders` keep posting current ones,
`--rate` records per second in all. The
service refreshes the rollups every minute, materialising every ended hour; for the "before"
figures the watermarks are moved back to an hour's offset, and the live rows are counted at the
start and the end of each measurement, and before each query of the "before" run (the service's
refresh would otherwise move them on meanwhile).
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time
from datetime import datetime, timedelta, timezone

import psycopg
import requests

from .common import TOKEN, cluster, fresh_database, machine, pct, service
from .ingest import claude_code_batch

BATCH = 500
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PB = {**AUTH, "Content-Type": "application/x-protobuf"}


def _live_rows(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM llm_requests WHERE time >= (SELECT watermark FROM aa_rollups"
                        " WHERE name = 'llm_usage_hourly')").fetchone()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--senders", type=int, default=2)
    ap.add_argument("--rate", type=float, default=50.0, help="records per second the senders keep posting")
    a = ap.parse_args()
    print(f"machine: {machine()}")
    with cluster() as c:
        url = fresh_database(c, "bench_live", "plain")
        batches = a.rows // BATCH
        now = datetime.now(timezone.utc)
        spacing_ms = a.hours * 3_600_000 / a.rows
        with service(url, role="ingest") as (ingest, _):
            s = requests.Session()
            t0 = time.monotonic()
            for n in range(batches):
                # claude_code_batch spaces records 37 ms apart: rescale to spread them evenly
                start = now - timedelta(hours=a.hours) + timedelta(milliseconds=n * BATCH * (spacing_ms - 37))
                s.post(ingest + "/v1/logs", data=claude_code_batch(n, BATCH, start), headers=PB,
                       timeout=60).raise_for_status()
            print(f"loaded {batches * BATCH:,} rows over the last {a.hours:g} h in {time.monotonic() - t0:.0f} s")
            with service(url, role="query") as (query, _), psycopg.connect(url, autocommit=True) as conn:
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
                    for label, before in (("up to an hour ago (before)", True), ("every ended hour (now)", False)):
                        conn.execute("SELECT aa_refresh_rollups()")
                        live = None
                        times = []
                        for _ in range(a.queries):
                            if before:
                                # The service's own refresh (every minute) materialises every ended
                                # hour: move the watermarks back to where an hour's offset left them,
                                # before each query. (The view reads materialised buckets below the
                                # watermark only.)
                                conn.execute("UPDATE aa_rollups SET watermark = time_bucket(width, now() - interval"
                                             " '1 hour') WHERE watermark > time_bucket(width, now() - interval '1 hour')")
                            live = _live_rows(conn) if live is None else live
                            t = time.perf_counter()
                            r = requests.get(query + "/api/v1/query/llm_total_cost", headers=AUTH, timeout=120,
                                             params={"from": "now-7d", "to": "now", "tz": "UTC"})
                            r.raise_for_status()
                            times.append((time.perf_counter() - t) * 1000)
                        live_after = _live_rows(conn)
                        print(f"materialised {label}: {live:,} live rows at the start, {live_after:,} at the end; "
                              f"7-day LLM total cost "
                              f"median {statistics.median(times):.0f} ms, p95 {pct(times, 95):.0f} ms, "
                              f"max {max(times):.0f} ms over {a.queries} queries under ingest")
                finally:
                    stop.set()
                    for t in senders:
                        t.join(timeout=60)
                print(f"measured at minute {datetime.now(timezone.utc).minute} of the hour; sustained ingest meanwhile: {sent[0]:,} batches of 100 records ({rejected[0]} with rejections)")


if __name__ == "__main__":
    main()
