"""Memory of the query service: its resident set (RSS) at rest, at its peak while 8 clients send
the largest requests the bounds allow, and idle afterwards. Loopback only; bounded in time.

    python -m bench.memory [--seconds 30] [--idle 15] [--backend plain] [--env NAME=VALUE ...]

The data: 30,000 Claude Code api_request events over the last days, through the receiver. The
load: Grafana requests of 20 targets (every non-session metric in turn) over 1,999 days in
Asia/Kolkata (daily buckets, raw rows: the zone is not a whole number of hours from UTC), and
JSON API series over the same range. `--env` passes settings to the query service (for example
MALLOC_ARENA_MAX=8 to compare with glibc's default number of malloc arenas).
"""
from __future__ import annotations

import argparse
import threading
import time
from datetime import datetime, timedelta, timezone

import psycopg
import requests

from agent_analytics.datasource import catalog
from agent_analytics.sql.migrate import refresh_aggregates

from .common import TOKEN, backends, cluster, fresh_database, machine, rss_mib, service
from .ingest import claude_code_batch

SAMPLE_EVERY_S = 0.25


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--idle", type=float, default=15)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--backend", choices=("both", "timescaledb", "plain"), default="plain")
    ap.add_argument("--targets", type=int, default=20, help="targets per Grafana request (the bound: 20)")
    ap.add_argument("--days", type=int, default=1_999, help="range of each request (the bound: 2,000 days)")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the query service")
    a = ap.parse_args()
    extra = dict(e.split("=", 1) for e in a.env)
    print(f"machine: {machine()}; query service env {extra or '(defaults)'}")
    metrics = [m.id for m in catalog.METRICS if m.tab != "sessions"]
    with cluster() as c:
        for backend in backends(a.backend):
            url = fresh_database(c, f"bench_memory_{backend}", backend)
            start = datetime.now(timezone.utc) - timedelta(days=3)
            with service(url, role="ingest") as (base, _):
                s = requests.Session()
                for n in range(60):
                    r = s.post(base + "/v1/logs", data=claude_code_batch(n, 500, start), timeout=60,
                               headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-protobuf"})
                    r.raise_for_status()
            with psycopg.connect(url, autocommit=True) as conn:
                refresh_aggregates(conn)
            with service(url, role="query", extra_env=extra) as (base, proc):
                h = {"Authorization": f"Bearer {TOKEN}"}
                requests.get(base + "/api/v1/query/llm_total_cost", headers=h, timeout=60).raise_for_status()
                time.sleep(1)
                rest = rss_mib(proc.pid)
                deadline = time.monotonic() + a.seconds
                answered: list[int] = []
                failed: list[str] = []
                lock = threading.Lock()

                def client(k: int) -> None:
                    s = requests.Session()
                    i = 0
                    while time.monotonic() < deadline:
                        now = datetime.now(timezone.utc)
                        frm = (now - timedelta(days=a.days)).isoformat()
                        if i % 2:
                            body = {"range": {"from": frm, "to": now.isoformat()}, "timezone": "Asia/Kolkata",
                                    "targets": [{"refId": f"R{j}", "target": metrics[(i + j + k) % len(metrics)]}
                                                for j in range(a.targets)]}
                            r = s.post(base + "/grafana/query", json=body, headers=h, timeout=120)
                        else:
                            r = s.get(base + "/api/v1/query/llm_cost_over_time", headers=h, timeout=120,
                                      params={"from": frm, "to": now.isoformat(), "tz": "Asia/Kolkata"})
                        r.content  # (read whole)
                        with lock:
                            (answered if r.status_code == 200 else failed).append(r.status_code)
                        i += 1

                threads = [threading.Thread(target=client, args=(k,)) for k in range(a.clients)]
                for t in threads:
                    t.start()
                peak = rest
                while any(t.is_alive() for t in threads):
                    peak = max(peak, rss_mib(proc.pid))
                    time.sleep(SAMPLE_EVERY_S)
                idle = []
                t0 = time.monotonic()
                while time.monotonic() - t0 < a.idle:
                    time.sleep(1)
                    idle.append(rss_mib(proc.pid))
                print(f"[{backend}] RSS at rest {rest:.0f} MiB; peak {peak:.0f} MiB under {a.clients} clients x "
                      f"{a.seconds:.0f} s ({len(answered)} answered, {len(failed)} failed); idle after "
                      f"1 s {idle[0]:.0f}, {a.idle:.0f} s {idle[-1]:.0f} MiB")


if __name__ == "__main__":
    main()
