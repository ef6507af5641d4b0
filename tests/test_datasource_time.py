"""Time semantics: previous-period windows (rolling, period-to-date, custom), the two-day bucket
rule, daily buckets at local midnight across a DST change, and a half-hour zone routed to raw."""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from agent_analytics.datasource import timerange as tr
from tests.harness_support import LLM_TOKEN
from tests.datasource_dataset import ANCHOR, DATA, UTC, Oracle, day_buckets
from tests.datasource_support import api, field, grafana, iso, materialised, ms, same

ORACLE = Oracle(DATA)
NY = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")


# ---- pure rules -------------------------------------------------------------------------------

NOW = datetime(2026, 3, 31, 15, 20, tzinfo=UTC)


@pytest.mark.parametrize("raw_from, tz, start, prev", [
    # This month so far on 31 March: February is shorter; the previous window stops at 1 March.
    ("now/M", "UTC", datetime(2026, 3, 1, tzinfo=UTC), (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))),
    ("now/d", "UTC", datetime(2026, 3, 31, tzinfo=UTC),
     (datetime(2026, 3, 30, tzinfo=UTC), datetime(2026, 3, 30, 15, 20, tzinfo=UTC))),
    ("now/w", "UTC", datetime(2026, 3, 30, tzinfo=UTC),
     (datetime(2026, 3, 23, tzinfo=UTC), datetime(2026, 3, 24, 15, 20, tzinfo=UTC))),
    ("now/Q", "UTC", datetime(2026, 1, 1, tzinfo=UTC),
     (datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 12, 29, 15, 20, tzinfo=UTC))),
    ("now/y", "UTC", datetime(2026, 1, 1, tzinfo=UTC),
     (datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 3, 31, 15, 20, tzinfo=UTC))),
    # Today in New York on the day after the spring change: yesterday's local midnight.
    ("now/d", "America/New_York", datetime(2026, 3, 31, 4, tzinfo=UTC),
     (datetime(2026, 3, 30, 4, tzinfo=UTC), datetime(2026, 3, 30, 15, 20, tzinfo=UTC))),
])
def test_period_to_date_previous_window(raw_from, tz, start, prev):
    zone = ZoneInfo(tz)
    assert tr.resolve(raw_from, NOW, zone) == start
    unit = tr.period_to_date_unit(raw_from, "now")
    window = tr.previous_window(tr.Window(start, NOW), zone, unit)
    assert (window.start, window.end) == prev
    assert window.end <= start


@pytest.mark.parametrize("raw, start, end, prev_start", [
    ("now/M", datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
    ("now-1M/M", datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
    ("now-1d/d", datetime(2026, 3, 30, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC), datetime(2026, 3, 29, tzinfo=UTC)),
])
def test_whole_calendar_period_compares_with_the_whole_period_before(raw, start, end, prev_start):
    # Grafana's "This month" (now/M .. now/M), "Last month", "Yesterday".
    assert tr.resolve(raw, NOW, ZoneInfo("UTC")) == start
    assert tr.resolve(raw, NOW, ZoneInfo("UTC"), round_up=True) == end  # as the end of a range
    unit = tr.whole_period_unit(raw, raw)
    assert tr.period_to_date_unit(raw, raw) is None and unit
    w = tr.previous_window(tr.Window(start, end), ZoneInfo("UTC"), None, unit)
    assert (w.start, w.end) == (prev_start, start)


def test_rolling_and_custom_previous_windows_and_two_day_rule():
    for raw in ("now-7d", "now-24h", "now-1h", "2026-03-02T10:00:00Z"):
        start = tr.resolve(raw, NOW, ZoneInfo("UTC"))
        assert tr.period_to_date_unit(raw, "now") is None
        w = tr.previous_window(tr.Window(start, NOW), ZoneInfo("UTC"), None)
        assert (w.start, w.end) == (start - (NOW - start), start)
    assert tr.resolve("now-7d", NOW, ZoneInfo("UTC")) == NOW - timedelta(days=7)
    assert tr.resolve(str(ms(NOW)), NOW, ZoneInfo("UTC")) == NOW
    for iso_text in ("2026-03-31T17:20:00+02:00", "2026-03-31T17:20:00 02:00", "2026-03-31T15:20:00Z",
                     "2026-03-31T15:20:00.000Z"):
        assert tr.resolve(iso_text, NOW, ZoneInfo("UTC")) == NOW, iso_text
    assert tr.resolve("2026-03-31T17:20:00", NOW, ZoneInfo("Europe/Paris")) == NOW  # naive: in tz
    assert tr.period_to_date_unit("now/M", "now/M") is None  # a whole period, not period-to-date
    two_days = tr.Window(NOW - timedelta(days=2), NOW)
    assert tr.bucket_unit(two_days) == "hour"
    assert tr.bucket_unit(tr.Window(NOW - timedelta(days=2, milliseconds=1), NOW)) == "day"


# ---- end to end ---------------------------------------------------------------------------------

def _series_expect(metric: str, start, end, prev_start, prev_end, tz: ZoneInfo, unit: str, f=None):
    f = f or {}
    if unit == "day":
        cur_b, prev_b = day_buckets(start, end, tz), day_buckets(prev_start, prev_end, tz)
        bucket_of = lambda t: datetime.combine(t.astimezone(tz).date(), datetime.min.time(), tzinfo=tz)  # noqa: E731
    else:
        def hours(a, b):
            local = a.astimezone(tz)
            t = a - timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)
            out = []
            while t < b:
                out.append(t)
                t += timedelta(hours=1)
            return out
        cur_b, prev_b = hours(start, end), hours(prev_start, prev_end)

        def bucket_of(t):
            local = t.astimezone(tz)
            return t - timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)
    cur = ORACLE.series_values(metric, start, end, f, bucket_of)
    old = ORACLE.series_values(metric, prev_start, prev_end, f, bucket_of)
    return [(ms(b), cur.get(b, 0), old.get(prev_b[k], 0) if k < len(prev_b) else None)
            for k, b in enumerate(cur_b)]


def test_period_to_date_through_the_grafana_face(ds_client):
    start = datetime(2026, 11, 1, tzinfo=UTC)  # now/M resolved by the browser
    prev = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 20, 14, 37, 25, tzinfo=UTC))
    frames = grafana(ds_client, [{"refId": "A", "target": "mcp_tool_executions", "payload": {}},
                                 {"refId": "B", "target": "mcp_executions_over_time", "payload": {}}],
                     start, ANCHOR, raw={"from": "now/M", "to": "now"})
    stat, series = frames
    assert stat["meta"]["custom"]["previous_from"] == ms(prev[0])
    assert stat["meta"]["custom"]["previous_to"] == ms(prev[1])
    assert field(stat, "value") == [ORACLE.stat("mcp_tool_executions", start, ANCHOR, {})]
    assert field(stat, "previous") == [ORACLE.stat("mcp_tool_executions", *prev, {})]
    want = _series_expect("mcp_executions_over_time", start, ANCHOR, *prev, ZoneInfo("UTC"), "day")
    assert list(zip(field(series, "time"), field(series, "current"), field(series, "previous"))) == want
    # The same range typed as a custom one (absolute raw) compares with the 20 days before instead.
    stat2 = grafana(ds_client, [{"refId": "A", "target": "mcp_tool_executions"}], start, ANCHOR)[0]
    assert stat2["meta"]["custom"]["previous_from"] == ms(start - (ANCHOR - start))
    assert field(stat2, "previous") == [ORACLE.stat("mcp_tool_executions", start - (ANCHOR - start), start, {})]


def test_two_day_bucket_rule_end_to_end(ds_client):
    end = ANCHOR.replace(minute=0, second=0)
    for span, unit, n in ((timedelta(days=2), "hour", 48), (timedelta(days=2, hours=1), "day", 3)):
        body = api(ds_client, "security_blocked_over_time", end - span, end)
        assert body["meta"]["bucket"] == unit and len(body["rows"]) == n
        want = _series_expect("security_blocked_over_time", end - span, end, end - 2 * span, end - span,
                              ZoneInfo("UTC"), unit)
        assert [(r["time"], r["current"], r["previous"]) for r in body["rows"]] == want


def test_daily_buckets_at_local_midnight_across_dst(ds_client):
    # New York leaves daylight time on 1 November 2026: that local day lasts 25 hours.
    start = datetime(2026, 10, 27, 4, tzinfo=UTC)    # midnight EDT
    end = datetime(2026, 11, 5, 5, tzinfo=UTC)       # midnight EST
    for metric in ("mcp_executions_over_time", "llm_tokens_over_time", "llm_cost_over_time"):
        body = api(ds_client, metric, start, end, tz="America/New_York")
        assert body["meta"]["bucket"] == "day"
        times = [datetime.fromtimestamp(r["time"] / 1000, NY) for r in body["rows"]]
        assert all((t.hour, t.minute) == (0, 0) for t in times) and len(times) == 9
        want = _series_expect(metric, start, end, start - (end - start), start, NY, "day")
        got = [(r["time"], r["current"], r["previous"]) for r in body["rows"]]
        assert [g[0] for g in got] == [w[0] for w in want]
        for g, w in zip(got, want):
            assert same(g[1], w[1]) and same(g[2], w[2]), (metric, g, w)
        # Whole-hour zone: the hourly aggregates answer where they are materialised.
        assert any(r.endswith("_hourly") for r in body["meta"]["relations"]) == materialised(ds_client)


def test_half_hour_zone_is_answered_from_raw_rows(ds_client):
    cases = ((ANCHOR - timedelta(days=6), "day"), (ANCHOR - timedelta(hours=30), "hour"))
    for start, unit in cases:
        body = api(ds_client, "mcp_executions_over_time", start, ANCHOR, tz="Asia/Kolkata", agent_tag="cli")
        assert body["meta"]["bucket"] == unit
        # (The servers the gateway reported are looked up by UTC hour, from the rollups.)
        rows_from = [r for r in body["meta"]["relations"] if not r.startswith("tool_calls_by_server_")]
        assert rows_from == ["tool_calls"], body["meta"]
        want = _series_expect("mcp_executions_over_time", start, ANCHOR, start - (ANCHOR - start), start, KOLKATA,
                              unit, {"agent_tag": "cli"})
        assert [(r["time"], r["current"], r["previous"]) for r in body["rows"]] == want
        first = datetime.fromtimestamp(body["rows"][0]["time"] / 1000, KOLKATA)
        assert first.minute == 0 and (unit == "hour" or first.hour == 0)
    # Stats do not bucket by zone: they keep reading the aggregate.
    stat = api(ds_client, "mcp_tool_executions", ANCHOR - timedelta(days=6), ANCHOR, tz="Asia/Kolkata")
    assert (stat["meta"]["relations"][0] != "tool_calls") == materialised(ds_client)


def test_relative_range_in_the_json_api(ds_client):
    # now/M resolves in the given zone (real now) and is detected as period-to-date.
    resp = ds_client.get("/api/v1/query/mcp_tool_executions",
                         query_string={"from": "now/M", "to": "now", "tz": "America/New_York"},
                         headers={"Authorization": f"Bearer {LLM_TOKEN}"})
    assert resp.status_code == 200, resp.get_json()
    meta = resp.get_json()["meta"]
    start = datetime.fromtimestamp(meta["from"] / 1000, NY)
    assert (start.day, start.hour, start.minute) == (1, 0, 0)
    prev_start = datetime.fromtimestamp(meta["previous_from"] / 1000, NY)
    assert (prev_start.day, prev_start.hour) == (1, 0) and prev_start < start
    assert meta["previous_to"] - meta["previous_from"] <= meta["to"] - meta["from"]
    assert meta["previous_to"] <= meta["from"]
    # Last month, whole: compared with the whole month before it.
    resp = ds_client.get("/api/v1/query/mcp_tool_executions", query_string={"from": "now-1M/M", "to": "now-1M/M"},
                         headers={"Authorization": f"Bearer {LLM_TOKEN}"})
    meta = resp.get_json()["meta"]
    start, end = (datetime.fromtimestamp(meta[k] / 1000, UTC) for k in ("from", "to"))
    prev = datetime.fromtimestamp(meta["previous_from"] / 1000, UTC)
    assert (start.day, end.day, prev.day) == (1, 1, 1) and meta["previous_to"] == meta["from"]
    assert 28 <= (end - start).days <= 31 and prev < start


def test_grafana_timezone_macro_values(ds_client):
    # ${__timezone} may read "utc" or "browser": UTC, not a 400; an unknown zone is still refused.
    start = ANCHOR - timedelta(days=3)
    for tz in ("utc", "browser", "UTC"):
        body = api(ds_client, "mcp_executions_over_time", start, ANCHOR, tz=tz)
        assert all(datetime.fromtimestamp(r["time"] / 1000, UTC).hour == 0 for r in body["rows"])
    resp = ds_client.get(f"/api/v1/query/mcp_executions_over_time?tz=Europe/Atlantis", headers={
        "Authorization": f"Bearer {LLM_TOKEN}"})
    assert resp.status_code == 400 and "tz" in resp.get_json()["fields"]


def test_the_json_api_reads_the_pickers_range_after_the_window(ds_client):
    """Infinity's URL carries the window (${__from}/${__to}) then the picker's raw range
    (${__url_time_range}: from=now%2FM&to=now&timezone=browser): the window is the first pair,
    the previous period follows the raw range as for the JSON plugin's range.raw, and only when
    that range describes the window (a panel's time shift or relative time changes the window alone)."""
    start = datetime(2026, 11, 1, tzinfo=UTC)  # now/M resolved by the browser at ANCHOR
    auth = {"Authorization": f"Bearer {LLM_TOKEN}"}

    def meta(pairs: list[tuple[str, str]]) -> dict:
        resp = ds_client.get("/api/v1/query/mcp_tool_executions", query_string=pairs, headers=auth)
        assert resp.status_code == 200, resp.get_json()
        return resp.get_json()["meta"]

    window = [("from", str(ms(start))), ("to", str(ms(ANCHOR))), ("tz", "UTC")]
    got = meta(window + [("from", "now/M"), ("to", "now"), ("timezone", "browser")])
    assert (got["from"], got["to"]) == (ms(start), ms(ANCHOR))
    assert got["previous_from"] == ms(datetime(2026, 10, 1, tzinfo=UTC))
    assert got["previous_to"] == ms(datetime(2026, 10, 20, 14, 37, 25, tzinfo=UTC))
    # As the JSON plugin answers the same range (range.raw).
    frame = grafana(ds_client, [{"refId": "A", "target": "mcp_tool_executions"}], start, ANCHOR,
                    raw={"from": "now/M", "to": "now"})[0]
    assert (frame["meta"]["custom"]["previous_from"], frame["meta"]["custom"]["previous_to"]) == \
        (got["previous_from"], got["previous_to"])
    # Without the raw range (empty ${__url_time_range}), or with one the window does not fit (this
    # month's range shifted back a day by the panel): the window of equal length just before.
    for pairs in (window, [("from", str(ms(start - timedelta(days=1)))), ("to", str(ms(ANCHOR - timedelta(days=1)))),
                           ("from", "now/M"), ("to", "now")]):
        got = meta(pairs)
        assert got["previous_to"] == got["from"]
        assert got["previous_from"] == got["from"] - (got["to"] - got["from"])
    # from three times, or twice without a second to: a clear 400.
    for pairs in (window + [("from", "now/M"), ("to", "now"), ("from", "now/w")], window + [("from", "now/M")]):
        resp = ds_client.get("/api/v1/query/mcp_tool_executions", query_string=pairs, headers=auth)
        assert resp.status_code == 400 and "from" in resp.get_json()["fields"], resp.get_json()
