"""Dashboard speed: every panel query of each tab (read from the generated Infinity dashboards),
sent to `agent-analytics serve` over loopback for the last 30 days, unfiltered and with a user
filter; server time per tab (median, p95) with the continuous aggregates against the same
answers computed from raw rows (AA_READ_AGGREGATES=0); growth with the range; peak memory.

    python -m bench.dataset --database-url URL          # once: 10M tool calls, 5M LLM requests
    python -m bench.dashboards --database-url URL [--reps 7] [--raw-reps 2]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
from pathlib import Path
from urllib.parse import quote

import psycopg
import requests

from .common import TOKEN, machine, pct, peak_rss_mib, service

DASHBOARDS = Path(__file__).resolve().parent.parent / "dashboards" / "infinity"
TABS = {"MCP Usage": "mcp-usage.json", "LLM Usage": "llm-usage.json", "Security": "security.json",
        "Value": "value.json"}
TZ = "America/New_York"


def panel_urls(file: str) -> list[str]:
    """The Infinity URL of every panel query in a generated dashboard."""
    found = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                if t.get("url", "").startswith("/api/v1/query/"):
                    found.append(t["url"])

    walk(json.loads((DASHBOARDS / file).read_text())["panels"])
    return found


def render(url: str, start_ms: int, end_ms: int, user: str | None) -> str:
    """Expand the macros and variables as Grafana would (variables at All unless a user is chosen)."""
    url = url.replace("${__from}", str(start_ms)).replace("${__to}", str(end_ms))
    url = url.replace("${__timezone}", quote(TZ, safe=""))

    def var(m: re.Match) -> str:
        name = m.group(1)
        value = user if (name == "user" and user) else "All"
        return f"var-{name}={quote(value, safe='')}"

    url = re.sub(r"\$\{(\w+):queryparam\}", var, url)
    return url.replace("${order_by}", "cost")  # the sessions table's ranking variable


def server_seconds(response: requests.Response) -> float:
    """The service's own time for a request, from its Server-Timing header (app;dur=ms)."""
    return float(response.headers["Server-Timing"].partition(";dur=")[2]) / 1000


def tab_seconds(base: str, session: requests.Session, urls: list[str], days: float,
                user: str | None) -> tuple[float, float]:
    """(server time, round trip) of one refresh of the tab: every panel, one after the other."""
    end = int(time.time() * 1000)
    start = end - int(days * 86400 * 1000)
    server = 0.0
    t0 = time.perf_counter()
    for u in urls:
        r = session.get(base + render(u, start, end, user), timeout=600)
        r.raise_for_status()
        server += server_seconds(r)
    return server, time.perf_counter() - t0


def metric_of(url: str) -> str:
    return url.split("/api/v1/query/", 1)[1].split("?", 1)[0]


def panel_seconds(base: str, session: requests.Session, urls: list[str], reps: int,
                  user: str | None = None) -> dict[str, float]:
    """Median server time of each panel query (last 30 days, unfiltered or one user's), the panels of each
    repetition sent as one refresh: one range for all, a new one for the next (as Grafana does;
    the service shares figures between the panels of a refresh, see datasource/shared.py)."""
    times: dict[str, list[float]] = {metric_of(u): [] for u in urls}
    for _ in range(reps):
        end = int(time.time() * 1000)
        start = end - 30 * 86400 * 1000
        for u in urls:
            r = session.get(base + render(u, start, end, user), timeout=600)
            r.raise_for_status()
            times[metric_of(u)].append(server_seconds(r))
    return {m: statistics.median(v) for m, v in times.items()}


def load() -> str:
    """The load average (1, 5, 15 minutes): the machine is shared, and the figures move with it."""
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def measure(url: str, read_aggregates: bool, reps: int, user: str, days_list: list[float],
            per_panel: bool = False, tabs: tuple[str, ...] = tuple(TABS)) -> dict:
    env = {"AA_READ_AGGREGATES": "1" if read_aggregates else "0", "AA_DB_TIMEOUT_S": "600"}
    out: dict = {}
    with service(url, role="query", extra_env=env) as (base, proc):
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {TOKEN}"
        for tab in tabs:
            urls = panel_urls(TABS[tab])
            tab_seconds(base, s, urls, 30, None)  # warm the caches once
            for label, who in (("unfiltered", None), ("user filter", user)):
                runs = [tab_seconds(base, s, urls, 30, who) for _ in range(reps)]
                server, trip = [r[0] for r in runs], [r[1] for r in runs]
                out[(tab, label)] = (len(urls), statistics.median(server), pct(server, 95), statistics.median(trip))
            for days in days_list:
                out[(tab, f"{days:g} days")] = (len(urls), statistics.median(
                    [tab_seconds(base, s, urls, days, None)[0] for _ in range(max(1, reps // 2))]), None, None)
            if per_panel:
                out[(tab, "panels")] = panel_seconds(base, s, urls, reps)
                out[(tab, "user panels")] = panel_seconds(base, s, urls, reps, user)
        out["peak_rss_mib"] = peak_rss_mib(proc.pid)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", required=True, action="append",
                    help="a database filled by bench.dataset (repeat for each backend)")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--raw-reps", type=int, default=2)
    ap.add_argument("--user", default="user007@example.com")
    ap.add_argument("--skip-raw", action="store_true")
    ap.add_argument("--tabs", default=",".join(TABS), help=f"the tabs measured, comma-separated (of {', '.join(TABS)})")
    ap.add_argument("--panels", action="store_true",
                    help="also print each panel's median (30 days, unfiltered and with the user filter)")
    a = ap.parse_args()
    tabs = tuple(t.strip() for t in a.tabs.split(","))
    if not set(tabs) <= set(TABS):
        ap.error(f"--tabs: not a tab: {', '.join(sorted(set(tabs) - set(TABS)))}")
    print(f"machine: {machine()}")
    for url in a.database_url:
        with psycopg.connect(url) as conn:
            backend = conn.execute("SELECT value FROM schema_meta WHERE key = 'backend'").fetchone()[0]
            calls = conn.execute("SELECT count(*) FROM tool_calls").fetchone()[0]
            llm = conn.execute("SELECT count(*) FROM llm_requests").fetchone()[0]
        print(f"\n[{backend}] {calls:,} tool calls, {llm:,} LLM requests; zone {TZ}; times are whole tabs (ms)")
        print(f"load average before: {load()}", flush=True)
        agg = measure(url, True, a.reps, a.user, [1, 7, 30, 90], per_panel=a.panels, tabs=tabs)
        print(f"load average after the aggregates' runs: {load()}", flush=True)
        raw = None if a.skip_raw else measure(url, False, a.raw_reps, a.user, [], tabs=tabs)
        if raw:
            print(f"load average after the raw runs: {load()}", flush=True)
        print("server time (the service's Server-Timing, summed over the tab's panels) and round trip"
              " (the client's, panels one after the other)")
        print(f"{'tab':10s} {'filter':12s} {'panels':>6s} {'median':>9s} {'p95':>9s} {'raw median':>11s}"
              f" {'raw/agg':>8s} {'round trip':>11s} {'raw trip':>9s} {'raw/agg':>8s}")
        for tab in tabs:
            for label in ("unfiltered", "user filter"):
                n, med, p95, trip = agg[(tab, label)]
                rmed, rtrip = raw[(tab, label)][1::2] if raw else (float("nan"), float("nan"))
                print(f"{tab:10s} {label:12s} {n:6d} {med * 1000:9.0f} {p95 * 1000:9.0f} {rmed * 1000:11.0f}"
                      f" {rmed / med:8.1f} {trip * 1000:11.0f} {rtrip * 1000:9.0f} {rtrip / trip:8.1f}")
        print("growth (aggregates, unfiltered, server time, median ms): " + "; ".join(
            f"{tab}: " + ", ".join(f"{d}d {agg[(tab, f'{d} days')][1] * 1000:.0f}" for d in (1, 7, 30, 90))
            for tab in tabs))
        if a.panels:
            for tab in tabs:
                for key, label in (("panels", "unfiltered"), ("user panels", "user filter")):
                    print(f"{tab} panels, {label} (server time, median ms): " + ", ".join(
                        f"{m} {v * 1000:.0f}" for m, v in agg[(tab, key)].items()))
        print(f"service peak RSS: {agg['peak_rss_mib']:.0f} MiB with aggregates"
              + (f", {raw['peak_rss_mib']:.0f} MiB raw" if raw else ""))


if __name__ == "__main__":
    main()
