"""Sessions: the ranked table, session metrics, and the drawer (totals from metrics else events,
per-model rollup, token mix, activity from events, chips against the median of the filter set)."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.datasource_dataset import ANCHOR, DATA, TOKEN_TYPES, UTC, Oracle
from tests.datasource_support import api, assert_rows, ms, same

ORACLE = Oracle(DATA)
W_START, W_END = ANCHOR - timedelta(days=9, minutes=13), ANCHOR
FILTER_SETS: list[dict[str, Any]] = [
    {}, {"provider": "anthropic"}, {"model": ["gpt-5", "claude-haiku-4-5"]}, {"group": "g-eng"},
    {"user": "user2@example.com", "provider": "$__all"}, {"provider": "local"},
]
DIMS = ("cost", "tokens", "duration", "requests")


def _expected_table(f: dict, order: str) -> list[dict]:
    sessions = ORACLE.sessions(W_START, W_END, f)
    stats = ORACLE.session_stats(sessions)
    rows = []
    for s in sessions.values():
        email, disp = DATA.users.get(s["user_id"], (None, None))
        row = {k: s[k] for k in ("session_id", "user_id", "agent_id", "models", "duration", "requests", "tokens",
                                 "cost", "unpriced_tokens", "unpriced")}
        row.update(start=ms(s["start"]), end=ms(s["end"]), user=disp or email, agent=DATA.agents[s["agent_id"]])
        for d in DIMS:
            row[f"{d}_ratio"], row[f"{d}_top_5pct"] = ORACLE.compare(s[d], stats, d)
        rows.append(row)
    key = {"cost": lambda r: (r["cost"] is None, -(r["cost"] or 0), r["session_id"]),
           "tokens": lambda r: (-r["tokens"], r["session_id"]),
           "recency": lambda r: (-r["end"], r["session_id"])}[order]
    return sorted(rows, key=key)


def test_sessions_table_and_session_metrics(ds_client):
    for f in FILTER_SETS:
        for order in ("cost", "tokens", "recency"):
            want = _expected_table(f, order)
            body = api(ds_client, "sessions_table", W_START, W_END, order_by=order, page_size=1000, **f)
            assert body["total"] == len(want), (f, order)
            assert_rows(body["rows"], want, (f, order))
        [m] = api(ds_client, "session_metrics", W_START, W_END, **f)["rows"]
        stats = ORACLE.session_stats(ORACLE.sessions(W_START, W_END, f))
        assert m["sessions"] == stats["sessions"]
        for d in DIMS:
            for cut in ("p50", "avg", "p95"):
                assert same(m[f"{d}_{cut}"], stats[f"{d}_{cut}"]), (f, d, cut)
    # Paginated ten per page by default, with the total.
    page2 = api(ds_client, "sessions_table", W_START, W_END, order_by="tokens", page=2)
    want = _expected_table({}, "tokens")
    assert page2["total"] == len(want) > 10
    assert [r["session_id"] for r in page2["rows"]] == [r["session_id"] for r in want[10:20]]


def _pick(kind: str) -> str:
    inside = ORACLE.sessions(W_START, W_END, {})
    return next(sid for sid in sorted(inside) if DATA.sessions[sid]["kind"] == kind)


def _buckets(events: list[dict]) -> tuple[int, list[datetime]]:
    lo, hi = min(r["time"] for r in events), max(r["time"] for r in events)
    span = (hi - lo).total_seconds()
    width = next((w for w in (60, 300, 900, 3600, 21600, 86400) if span / w < 60), 86400)
    origin = datetime(2000, 1, 3, tzinfo=UTC)
    t = origin + timedelta(seconds=width * ((lo - origin).total_seconds() // width))
    out = []
    while t <= hi:
        out.append(t)
        t += timedelta(seconds=width)
    return width, out


def test_session_drawer(ds_client):
    for kind, f in (("metrics", {}), ("events", {}), ("metrics+events", {}), ("metrics+events", {"provider": "anthropic"})):
        sid = _pick(kind)
        flt = {**f, "session": sid}
        want = ORACLE.sessions(W_START, W_END, flt)[sid]
        [tot] = api(ds_client, "session_totals", W_START, W_END, **flt)["rows"]
        for k in ("session_id", "user_id", "agent_id", "models", "duration", "requests", "tokens", "cost",
                  "unpriced_tokens", "unpriced", "totals_source", *[f"{t}_tokens" for t in TOKEN_TYPES]):
            assert same(tot[k], want[k]), (kind, k, tot[k], want[k])
        assert tot["totals_source"] == ("events" if kind == "events" else "metrics")

        mix = api(ds_client, "session_token_mix", W_START, W_END, **flt)["rows"]
        assert [(r["type"], r["tokens"]) for r in mix] == [(t, want[f"{t}_tokens"]) for t in TOKEN_TYPES]

        # Per-model rollup: tokens by the totals' source, cost from events where there are any,
        # requests and latency from events.
        models = api(ds_client, "session_models", W_START, W_END, **flt)["rows"]
        ev = want["events"]
        mp = [p for p in ORACLE.points(W_START, W_END, flt, True, attributed=False) if p["session_id"] == sid]
        expected = {}
        for m in sorted({(r["provider"], r["model"]) for r in ev + mp}):
            e = [r for r in ev if (r["provider"], r["model"]) == m]
            p = [r for r in mp if (r["provider"], r["model"]) == m]
            lat = [r["latency_ms"] for r in e if r["latency_ms"] is not None]
            if sid in ORACLE.metric_sessions:
                tokens = float(sum(r["value"] for r in p if r["metric"] == "tokens"))
            else:
                tokens = float(sum(ORACLE.tokens(r) for r in e))
            # Cost request by request from the events; from the metric points only without any.
            if sid in ORACLE.event_sessions:
                cs = [r["estimated_cost_usd"] for r in e if r["estimated_cost_usd"] is not None]
            else:
                cs = [r["estimated_cost_usd"] for r in p if r["metric"] == "tokens" and r["estimated_cost_usd"] is not None]
            expected[m] = {"requests": len(e) if e else None, "tokens": tokens, "cost": float(sum(cs)) if cs else None,
                           "avg_latency_ms": sum(lat) / len(lat) if lat else None}
        assert {(r["provider"], r["model"]) for r in models} == set(expected)
        for r in models:
            for k, v in expected[(r["provider"], r["model"])].items():
                assert same(r[k], v), (kind, r, k, v)

        # Activity from events only: a metrics-only session has totals but empty charts.
        tokens_chart = api(ds_client, "session_tokens_over_time", W_START, W_END, **flt)
        cost_chart = api(ds_client, "session_cumulative_cost", W_START, W_END, **flt)
        if kind == "metrics":
            assert tokens_chart["rows"] == [] and cost_chart["rows"] == [] and tot["tokens"] > 0
            continue
        width, starts = _buckets(ev)
        assert tokens_chart["meta"]["bucket_seconds"] == width
        assert [r["time"] for r in tokens_chart["rows"]] == [ms(t) for t in starts]
        running = None
        for k, t in enumerate(starts):
            inb = [r for r in ev if t <= r["time"] < t + timedelta(seconds=width)]
            assert tokens_chart["rows"][k]["current"] == sum(ORACLE.tokens(r) for r in inb)
            priced = [r["estimated_cost_usd"] for r in inb if r["estimated_cost_usd"] is not None]
            if priced:
                running = (running or 0) + float(sum(priced))
            assert same(cost_chart["rows"][k]["current"], running), (kind, k)


def test_comparison_chips(ds_client):
    sessions = ORACLE.sessions(W_START, W_END, {})
    stats = ORACLE.session_stats(sessions)
    top_cost = max((s for s in sessions.values() if s["cost"] is not None), key=lambda s: s["cost"])
    for sid in (top_cost["session_id"], _pick("events")):
        rows = api(ds_client, "session_comparison", W_START, W_END, session=sid)["rows"]
        assert [r["dimension"] for r in rows] == list(DIMS)
        for r in rows:
            value = sessions[sid][r["dimension"]]
            ratio, top = ORACLE.compare(value, stats, r["dimension"])
            assert same(r["value"], value) and same(r["median"], stats[f"{r['dimension']}_p50"])
            assert same(r["ratio"], ratio) and r["top_5pct"] is top
    top_row = api(ds_client, "session_comparison", W_START, W_END, session=top_cost["session_id"])["rows"][0]
    assert top_row["top_5pct"] is True and top_row["ratio"] > 1
    # A filter set with a single session has no baseline: ratio null, so the chip hides.
    lone = next(s for s in sessions.values()
                if len(ORACLE.sessions(W_START, W_END, {"user": s["user_id"], "model": s["models"].split(", ")[0]})) == 1)
    only = {"user": lone["user_id"], "model": lone["models"].split(", ")[0]}
    rows = api(ds_client, "session_comparison", W_START, W_END, session=lone["session_id"], **only)["rows"]
    assert all(r["ratio"] is None and r["top_5pct"] is False and r["baseline_sessions"] <= 1 for r in rows)
    # No session chosen yet: an empty drawer, not an error.
    assert api(ds_client, "session_totals", W_START, W_END)["rows"] == []


def test_a_session_of_two_users_under_a_user_filter(ds_client):
    """Its totals, under a filter on one of them, are that user's rows only."""
    for f in ({"user": "user5@example.com"}, {"user": "user2@example.com"}, {"group": "g-ops"}, {}):
        want = ORACLE.sessions(W_START, W_END, f)["sess-shared"]
        rows = api(ds_client, "sessions_table", W_START, W_END, page_size=1000, **f)["rows"]
        [got] = [r for r in rows if r["session_id"] == "sess-shared"]
        for k in ("requests", "tokens", "cost", "duration"):
            assert same(got[k], want[k]), (f, k, got[k], want[k])
    assert ORACLE.sessions(W_START, W_END, {"user": "user5@example.com"})["sess-shared"]["requests"] == 12


def _cut_windows() -> list[tuple[datetime, datetime]]:
    """Windows whose edges fall inside sessions: the session panels keep whole-life totals for
    sessions wholly inside a window and must group the ones an edge cuts from their rows."""
    def second(t: datetime) -> datetime:
        return t.replace(microsecond=0)

    long = sorted((s for s in ORACLE.sessions(W_START, W_END, {}).values()
                   if s["end"] - s["start"] >= timedelta(minutes=40)), key=lambda s: s["start"])
    first, middle, last = long[0], long[len(long) // 2], long[-1]
    at = (lambda s: second(s["start"] + (s["end"] - s["start"]) / 2))
    return [(at(first), at(last)),                                  # both edges cut a session
            (at(middle), W_END),                                     # the start cuts one
            (second(middle["start"] + timedelta(minutes=5)),         # inside a single session
             second(middle["end"] - timedelta(minutes=5)))]


CUT_FILTERS: list[dict[str, Any]] = [{}, {"user": "user2@example.com"}, {"group": "g-ops"}]


def test_session_panels_exact_when_the_range_cuts_sessions(ds_client):
    for (start, end), f in ((w, f) for w in _cut_windows() for f in CUT_FILTERS):
        whole = ORACLE.sessions(start, end, f)
        # The oracle's own check that an edge cuts a session: some session has rows outside.
        outside = set(ORACLE.sessions(W_START - timedelta(days=90), start, {})) | set(
            ORACLE.sessions(end, ANCHOR + timedelta(days=1), {}))
        assert set(whole) & outside or f, (start, end)
        stats = ORACLE.session_stats(whole)
        body = api(ds_client, "sessions_table", start, end, order_by="cost", page_size=1000, **f)
        assert "sessions" in body["meta"]["relations"]  # the kept totals answered
        assert body["total"] == len(whole)
        by_id = {r["session_id"]: r for r in body["rows"]}
        assert set(by_id) == set(whole)
        for sid, s in whole.items():
            for k in ("user_id", "agent_id", "models", "duration", "requests", "tokens", "cost"):
                assert same(by_id[sid][k], s[k]), (start, end, sid, k, by_id[sid][k], s[k])
            assert by_id[sid]["start"] == ms(s["start"]) and by_id[sid]["end"] == ms(s["end"])
            for d in DIMS:
                assert (by_id[sid][f"{d}_ratio"], by_id[sid][f"{d}_top_5pct"]) == pytest.approx(
                    ORACLE.compare(s[d], stats, d)), (sid, d)
        # Pages in each order: the kept sessions' first ones (read from an index) merged with
        # the cut ones.
        for order, key in (("cost", lambda s: (s["cost"] is None, -(s["cost"] or 0), s["session_id"])),
                           ("tokens", lambda s: (-s["tokens"], s["session_id"])),
                           ("recency", lambda s: (-s["end"].timestamp(), s["session_id"]))):
            want = [s["session_id"] for s in sorted(whole.values(), key=key)][:6]
            got = [r["session_id"] for page in (1, 2)
                   for r in api(ds_client, "sessions_table", start, end, order_by=order, page=page, page_size=3,
                                **f)["rows"]]
            assert got == want, (start, end, f, order)
        [m] = api(ds_client, "session_metrics", start, end, **f)["rows"]
        assert m["sessions"] == stats["sessions"]
        for d in DIMS:
            for c in ("p50", "avg", "p95"):
                assert same(m[f"{d}_{c}"], stats[f"{d}_{c}"]), (start, end, d, c)


def test_session_drawer_exact_when_the_range_cuts_sessions(ds_client):
    """The drawer's chosen sessions: those wholly inside the window from their kept totals, one an
    edge cuts from its rows in the window; the other cut sessions stay out."""
    for (start, end), f in ((w, f) for w in _cut_windows() for f in CUT_FILTERS):
        whole = ORACLE.sessions(start, end, f)
        outside = set(ORACLE.sessions(W_START - timedelta(days=90), start, {})) | set(
            ORACLE.sessions(end, ANCHOR + timedelta(days=1), {}))
        cut, inside = sorted(set(whole) & outside), sorted(set(whole) - outside)
        for chosen in ([*inside[:1]], [*cut[:1]], [*inside[-1:], *cut[-1:]]):
            if not chosen:
                continue
            flt = {**f, "session": chosen}
            want = ORACLE.sessions(start, end, flt)
            assert set(want) == set(chosen)
            body = api(ds_client, "session_totals", start, end, **flt)
            assert "sessions" in body["meta"]["relations"]  # the kept totals answered
            by_id = {r["session_id"]: r for r in body["rows"]}
            assert set(by_id) == set(chosen), (start, end, f, chosen)
            for sid, s in want.items():
                for k in ("user_id", "agent_id", "models", "duration", "requests", "tokens", "cost",
                          "unpriced_tokens", "totals_source", *[f"{t}_tokens" for t in TOKEN_TYPES]):
                    assert same(by_id[sid][k], s[k]), (start, end, f, sid, k, by_id[sid][k], s[k])
