"""Budgets against their spend, on a synthetic February and March 2026 with known answers: the
spend to date, the previous period to the same point, the daily rate, the forecast at the
period's end and the date the amount is forecast to be reached, worked out by hand below (and the
periods' arithmetic on its own, without a database). Spend is read through the JSON API from the
aggregates on both backends; rows written with COPY as the receiver stores them."""
from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from agent_analytics.datasource import budget_forecast as bf
from agent_analytics.ingest import directory
from tests.datasource_support import api, field, grafana, ms
from tests.harness_support import refresh_aggregates
from tests.rawdata import load_raw_rows

UTC = timezone.utc
AS_OF = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)  # a Friday


def T(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


# -- the periods, UTC -----------------------------------------------------------------------------
def test_periods_are_utc_days_iso_weeks_and_calendar_months():
    assert bf.period_bounds("day", T(3, 20, 12)) == (T(3, 20), T(3, 21))
    assert bf.period_bounds("week", T(3, 20, 12)) == (T(3, 16), T(3, 23))   # Monday to Monday
    assert bf.period_bounds("week", T(3, 16)) == (T(3, 16), T(3, 23))
    assert bf.period_bounds("week", T(3, 15, 23, 59)) == (T(3, 9), T(3, 16))
    assert bf.period_bounds("month", T(3, 20, 12)) == (T(3, 1), T(4, 1))
    assert bf.period_bounds("month", datetime(2026, 12, 31, 23, tzinfo=UTC)) == (T(12, 1), datetime(2027, 1, 1, tzinfo=UTC))
    # Another time zone's instant is placed in its UTC period.
    assert bf.period_bounds("day", datetime(2026, 3, 21, 1, tzinfo=timezone(timedelta(hours=5)))) == (T(3, 20), T(3, 21))
    with pytest.raises(ValueError):
        bf.period_bounds("year", T(3, 1))


def test_previous_period_to_the_same_point():
    assert bf.previous_point("month", T(3, 1), T(3, 20, 12)) == (T(2, 1), T(2, 20, 12))
    # 30.5 days into March is past February's end: all of February.
    assert bf.previous_point("month", T(3, 1), T(3, 31, 12)) == (T(2, 1), T(3, 1))
    assert bf.previous_point("week", T(3, 16), T(3, 20, 12)) == (T(3, 9), T(3, 13, 12))
    assert bf.previous_point("day", T(3, 20), T(3, 20, 12)) == (T(3, 19), T(3, 19, 12))


def test_outlook_on_a_synthetic_month():
    """$5 a day on 1-12 March, $12 a day on 13-19, $4 on the 20th by noon; a budget of $250."""
    daily = {date(2026, 3, d): 5.0 for d in range(1, 13)} | {date(2026, 3, d): 12.0 for d in range(13, 20)}
    daily[date(2026, 3, 20)] = 4.0
    daily[date(2026, 2, 27)] = 100.0  # before the period and the rate's 7 days: in neither
    first = date(2026, 2, 27)
    o = bf.outlook(250.0, "month", AS_OF, daily, first)
    assert o.spend == 12 * 5 + 7 * 12 + 4 == 148
    assert o.daily_rate == 12.0                               # 13..19 March
    assert o.forecast == 148 + 12 * 11.5 == 286.0             # 11.5 days left in March
    assert o.spend_pct == pytest.approx(59.2) and o.forecast_pct == pytest.approx(114.4)
    assert o.forecast_date == T(3, 29)                        # (250 - 148) / 12 = 8.5 days on
    assert o.reached_on is None and o.outlook == "forecast to be reached on 2026-03-29 00:00 UTC"
    # The rate reaches back before the period: on 2 April, 26 March..1 April (none of it April's).
    o = bf.outlook(250.0, "month", T(4, 2, 12), daily | {date(2026, 3, d): 7.0 for d in range(26, 32)}, first)
    assert (o.spend, o.daily_rate, o.forecast) == (0, 6 * 7.0 / 7, 0 + 6.0 * 28.5)
    # Reached: the day the running total crossed it; no forecast date.
    o = bf.outlook(100.0, "month", AS_OF, daily, first)
    # 60 by the 12th, 72, 84, 96 by the 15th, 108 on the 16th.
    assert o.reached_on == date(2026, 3, 16) and o.forecast_date is None
    assert o.outlook == "reached on 2026-03-16"
    # Not within the period at this rate.
    o = bf.outlook(1000.0, "month", AS_OF, daily, first)
    assert o.forecast_date is None and o.outlook == "not forecast to be reached this period"
    # A rate of 0: no date, not a made-up one.
    o = bf.outlook(10.0, "week", T(3, 28, 12), {date(2026, 3, 28): 3.0}, date(2026, 3, 2))  # all of it today
    assert (o.spend, o.daily_rate, o.forecast, o.forecast_date) == (3.0, 0.0, 3.0, None)
    assert o.outlook.startswith("no cost in the last 7 complete days")
    # Usage none of which could be priced: unknown, not 0; partly priced: the priced part.
    o = bf.outlook(10.0, "day", AS_OF, {date(2026, 3, 20): None}, date(2026, 3, 1))
    assert (o.spend, o.spend_pct, o.forecast, o.forecast_date) == (None, None, None, None)
    assert bf.outlook(10.0, "month", AS_OF, {date(2026, 3, 19): None, date(2026, 3, 20): 2.0},
                      date(2026, 3, 19)).spend == 2.0


def test_the_rate_is_the_mean_of_the_complete_days_since_the_first_usage():
    """A scope whose usage began 3 days ago: the rate is the mean of those 3 days, not 3/7 of it."""
    daily = {date(2026, 3, 17): 2.0, date(2026, 3, 18): 4.0, date(2026, 3, 19): 6.0, date(2026, 3, 20): 1.0}
    o = bf.outlook(50.0, "month", AS_OF, daily, date(2026, 3, 17))
    assert o.daily_rate == (2 + 4 + 6) / 3 == 4.0
    assert o.spend == 13.0 and o.forecast == 13 + 4 * 11.5 == 59.0 and o.forecast_pct == pytest.approx(118.0)
    assert o.forecast_date == T(3, 29, 18)                     # (50 - 13) / 4 = 9.25 days on
    # A day without usage after the first one counts as $0: 17 March with usage, 18 and 19 without.
    o = bf.outlook(50.0, "month", AS_OF, {date(2026, 3, 17): 6.0, date(2026, 3, 20): 1.0}, date(2026, 3, 17))
    assert o.daily_rate == 6.0 / 3
    # Usage that began more than 7 complete days ago: the last 7, older days not in it.
    o = bf.outlook(50.0, "month", AS_OF, daily | {date(2026, 3, 2): 70.0}, date(2026, 3, 2))
    assert o.daily_rate == 12.0 / 7
    # First usage today, or none at all: no complete day, so no rate, no forecast and no date.
    for first in (date(2026, 3, 20), None):
        o = bf.outlook(50.0, "month", AS_OF, {date(2026, 3, 20): 1.0} if first else {}, first)
        assert (o.daily_rate, o.forecast, o.forecast_pct, o.forecast_date) == (None, None, None, None)
        assert o.spend == (1.0 if first else 0) and o.outlook == bf.NO_RATE
    # Reached on its first day: the day is known, the forecast is not.
    o = bf.outlook(0.5, "month", AS_OF, {date(2026, 3, 20): 1.0}, date(2026, 3, 20))
    assert (o.reached_on, o.forecast) == (date(2026, 3, 20), None) and o.outlook == "reached on 2026-03-20"
    assert bf.rate_window(AS_OF, date(2026, 3, 17)) == (T(3, 17), T(3, 20))
    assert bf.rate_window(AS_OF, date(2026, 1, 1)) == (T(3, 13), T(3, 20))


# -- end to end: the JSON API over the aggregates ------------------------------------------------------
def _request(i: int, t: datetime, user: str, cost: str | None, tokens: int = 100) -> tuple:
    c = None if cost is None else Decimal(cost)
    return (t, hashlib.sha256(f"budget{i}".encode()).digest(), "claude_code", f"s-{user}-{t.date()}", user,
            "claude-code", "anthropic", "claude-sonnet-4-5", tokens, 0, 0, 0, c, c, 900.0)


def _month() -> list[tuple]:
    rows: list[tuple] = []
    for d in range(1, 29):                        # February: ann $3 a day at 10:00
        rows.append((T(2, d, 10), "ann@x", "3"))
    for d in range(1, 13):                        # March 1-12: ann $5 a day
        rows.append((T(3, d, 10), "ann@x", "5"))
    for d in range(13, 20):                       # March 13-19: ann $12 a day
        rows.append((T(3, d, 10), "ann@x", "12"))
    rows += [(T(3, 20, 6), "ann@x", "4"),         # today by noon
             (T(3, 20, 13), "ann@x", "50")]       # after the moment of evaluation: never counted
    for d in range(1, 20):                        # March 1-19: bob $1 a day at 09:30
        rows.append((T(3, d, 9, 30), "bob@x", "1"))
    rows.append((T(3, 15, 11), "bob@x", None))    # unpriced: 1000 tokens of a model without a price
    return [_request(i, t, u, c, 1000 if c is None else 100) for i, (t, u, c) in enumerate(rows)]


BUDGETS = [
    {"id": "org", "name": "Organisation", "scope": "organisation", "period": "month", "amount_usd": 250,
     "owner": "finance@x"},
    {"id": "eng-week", "name": "Engineering weekly", "scope": "group", "target": "eng", "period": "week",
     "amount_usd": 100, "owner": "lead@x"},
    {"id": "ann-day", "scope": "user", "target": "ann@x", "period": "day", "amount_usd": 3, "owner": "ann@x"},
    {"id": "bob-month", "scope": "user", "target": "bob@x", "period": "month", "amount_usd": 10, "owner": "bob@x"},
    {"id": "carol-month", "scope": "user", "target": "carol@x", "period": "month", "amount_usd": 5,
     "owner": "carol@x"},
]


def _oracle(rows: list[tuple], users: set[str] | None, start: datetime, end: datetime) -> float:
    return float(sum(r[13] for r in rows if start <= r[0] < end and r[13] is not None
                     and (users is None or r[4] in users)))


def test_budgets_spend_and_forecast_on_a_known_month(client, conn, db_url):
    rows = _month()
    load_raw_rows(db_url, ([], rows, []))
    directory.apply(conn, {"groups": [{"id": "eng", "name": "Engineering", "members": ["ann@x"]}],
                           "budgets": BUDGETS})
    answer = api(client, "llm_budgets", AS_OF - timedelta(days=1), AS_OF)
    got = {r["budget"]: r for r in answer["rows"]}
    assert answer["total"] == 5 and list(got) == sorted(got)
    assert answer["meta"]["as_of"] == ms(AS_OF)
    # Every bound falls on a UTC hour: the aggregates answer it all, no raw row is read.
    assert not {"llm_requests", "metric_points"} & set(answer["meta"]["relations"])
    assert "llm_usage_per_user_daily" in answer["meta"]["relations"]

    # The known answers, worked out by hand.
    org = got["org"]
    assert (org["spend"], org["daily_rate"], org["forecast"]) == pytest.approx((167.0, 13.0, 167 + 13 * 11.5))
    assert org["previous_spend"] == pytest.approx(60.0)             # 1-20 Feb by 10:00, $3 a day
    assert org["unpriced_tokens"] == 1000 and org["unpriced"] is True
    assert org["forecast_date"] == ms(AS_OF + timedelta(days=(250 - 167) / 13))
    eng = got["eng-week"]                                             # ann, Monday 16 March on
    assert (eng["spend"], eng["daily_rate"], eng["forecast"]) == pytest.approx((52.0, 12.0, 82.0))
    assert eng["previous_spend"] == pytest.approx(32.0)               # 9-12 March, and 13 March by noon
    assert eng["change_pct"] == pytest.approx(62.5) and eng["forecast_date"] is None
    assert (eng["period_start"], eng["period_end"]) == (ms(T(3, 16)), ms(T(3, 23)))
    assert eng["outlook"] == "not forecast to be reached this period" and eng["unpriced"] is False
    ann = got["ann-day"]
    assert (ann["spend"], ann["spend_pct"], ann["forecast"]) == pytest.approx((4.0, 400 / 3, 10.0))
    assert ann["reached_on"] == ms(T(3, 20)) and ann["previous_spend"] == pytest.approx(12.0)
    bob = got["bob-month"]
    assert (bob["spend"], bob["reached_on"], bob["unpriced_tokens"]) == (pytest.approx(19.0), ms(T(3, 10)), 1000)
    assert bob["previous_spend"] == 0 and bob["change_pct"] is None
    carol = got["carol-month"]                                        # no usage at all: no rate, no forecast
    assert (carol["spend"], carol["daily_rate"], carol["forecast"], carol["forecast_date"]) == (0, None, None, None)
    assert carol["forecast_pct"] is None and carol["outlook"] == bf.NO_RATE
    assert carol["previous_spend"] == 0                              # the data began 1 February: a known $0
    assert carol["scope_name"] == "carol@x" and got["eng-week"]["scope_name"] == "Engineering"
    assert {r["owner"] for r in got.values()} == {"finance@x", "lead@x", "ann@x", "bob@x", "carol@x"}
    assert all(r["method"] == bf.METHOD for r in got.values())
    # The Grafana JSON face answers the same rows as one frame.
    [frame] = grafana(client, [{"refId": "A", "target": "llm_budgets", "payload": {}}], AS_OF - timedelta(days=1),
                      AS_OF)
    for column in ("budget", "owner", "spend", "forecast", "forecast_date", "reached_on", "outlook"):
        assert field(frame, column) == [r[column] for r in answer["rows"]], column

    # The same figures from the rows, independently of the hand-worked ones.
    scopes = {"org": None, "eng-week": {"ann@x"}, "ann-day": {"ann@x"}, "bob-month": {"bob@x"},
              "carol-month": {"carol@x"}}
    periods = {"org": (T(3, 1), T(2, 1)), "eng-week": (T(3, 16), T(3, 9)), "ann-day": (T(3, 20), T(3, 19)),
               "bob-month": (T(3, 1), T(2, 1)), "carol-month": (T(3, 1), T(2, 1))}
    for bid, users in scopes.items():
        start, prev_start = periods[bid]
        spend = _oracle(rows, users, start, AS_OF)
        if bid == "carol-month":
            continue                                                   # no usage: above
        rate = _oracle(rows, users, T(3, 13), T(3, 20)) / 7            # every other scope began in February
        amount = next(b["amount_usd"] for b in BUDGETS if b["id"] == bid)
        r = got[bid]
        assert r["spend"] == pytest.approx(spend) and r["daily_rate"] == pytest.approx(rate), bid
        assert r["previous_spend"] == pytest.approx(_oracle(rows, users, prev_start, prev_start + (AS_OF - start)))
        assert r["spend_pct"] == pytest.approx(spend / amount * 100)
        end = datetime.fromtimestamp(r["period_end"] / 1000, UTC)
        assert r["forecast"] == pytest.approx(spend + rate * (end - AS_OF) / timedelta(days=1)), bid


def test_budgets_of_one_kind_measured_together_keep_each_scope_apart(client, conn, db_url):
    """Groups sharing a member and users with budgets of several periods, measured a few
    statements per scope kind: each budget's spend, rate and previous period are its own
    members' alone, as counted from the rows."""
    rows = _month()
    load_raw_rows(db_url, ([], rows, []))
    groups = {"eng": {"ann@x"}, "all": {"ann@x", "bob@x"}, "ops": {"bob@x"}}
    budgets = [{"id": f"{g}-{p}", "scope": "group", "target": g, "period": p, "amount_usd": 100, "owner": "x@x"}
               for g in groups for p in ("week", "month")]
    budgets += [{"id": f"{u}-{p}", "scope": "user", "target": f"{u}@x", "period": p, "amount_usd": 10,
                 "owner": "x@x"} for u in ("ann", "bob") for p in ("day", "week", "month")]
    directory.apply(conn, {"groups": [{"id": g, "name": g, "members": sorted(m)} for g, m in groups.items()],
                           "budgets": budgets})
    got = {r["budget"]: r for r in api(client, "llm_budgets", AS_OF - timedelta(days=1), AS_OF)["rows"]}
    assert sorted(got) == sorted(b["id"] for b in budgets)
    starts = {"day": (T(3, 20), T(3, 19)), "week": (T(3, 16), T(3, 9)), "month": (T(3, 1), T(2, 1))}
    for b in budgets:
        users = groups[b["target"]] if b["scope"] == "group" else {b["target"]}
        start, prev_start = starts[b["period"]]
        r = got[b["id"]]
        assert r["spend"] == pytest.approx(_oracle(rows, users, start, AS_OF)), b["id"]
        assert r["daily_rate"] == pytest.approx(_oracle(rows, users, T(3, 13), T(3, 20)) / 7), b["id"]
        assert r["previous_spend"] == pytest.approx(
            _oracle(rows, users, prev_start, prev_start + (AS_OF - start))), b["id"]
        # bob's unpriced request of Sunday 15 March: in this month, not in this week.
        assert r["unpriced_tokens"] == (1000 if "bob@x" in users and b["period"] == "month" else 0), b["id"]


def test_a_young_installation_rates_from_its_first_day_and_has_no_previous_month(client, conn, db_url):
    """The data begins 17 March: dan $2, $4, $6 on 17-19 March at 10:00 and $1 today at 06:00;
    erin $3 today at 08:00, her first usage."""
    rows = [_request(100 + i, t, u, c) for i, (t, u, c) in enumerate(
        [(T(3, 17, 10), "dan@x", "2"), (T(3, 18, 10), "dan@x", "4"), (T(3, 19, 10), "dan@x", "6"),
         (T(3, 20, 6), "dan@x", "1"), (T(3, 20, 8), "erin@x", "3")])]
    load_raw_rows(db_url, ([], rows, []))
    directory.apply(conn, {"budgets": [
        {"id": "dan-day", "scope": "user", "target": "dan@x", "period": "day", "amount_usd": 10, "owner": "dan@x"},
        {"id": "dan-month", "scope": "user", "target": "dan@x", "period": "month", "amount_usd": 50,
         "owner": "dan@x"},
        {"id": "erin-week", "scope": "user", "target": "erin@x", "period": "week", "amount_usd": 20,
         "owner": "erin@x"}]})
    answer = api(client, "llm_budgets", AS_OF - timedelta(days=1), AS_OF)
    got = {r["budget"]: r for r in answer["rows"]}
    assert not {"llm_requests", "metric_points"} & set(answer["meta"]["relations"])
    dan = got["dan-month"]
    # 3 complete days since 17 March: (2 + 4 + 6) / 3 = 4 a day, not 12 / 7; 13 + 4 x 11.5 = 59.
    assert (dan["spend"], dan["daily_rate"], dan["forecast"], dan["forecast_pct"]) == pytest.approx(
        (13.0, 4.0, 59.0, 118.0))
    assert dan["forecast_date"] == ms(T(3, 29, 18))                  # (50 - 13) / 4 = 9.25 days on
    # February began before the data: unknown, not $0, and no change against it.
    assert (dan["previous_spend"], dan["change_pct"]) == (None, None)
    day = got["dan-day"]                                              # 19 March to noon: its $6 at 10:00
    assert day["previous_spend"] == pytest.approx(6.0) and day["change_pct"] == pytest.approx((1 - 6) / 6 * 100)
    assert (day["daily_rate"], day["forecast"]) == pytest.approx((4.0, 1 + 4 * 0.5))
    erin = got["erin-week"]                                           # usage only today
    assert erin["spend"] == pytest.approx(3.0)
    assert (erin["daily_rate"], erin["forecast"], erin["forecast_pct"], erin["forecast_date"]) == (None,) * 4
    assert erin["outlook"] == bf.NO_RATE and erin["previous_spend"] is None   # the week of 9 March: before the data


def test_the_rate_knows_each_scopes_first_day_however_long_ago(client, conn, db_url):
    """First usage long before the last 7 days (with nothing since, or again within them), the day
    before them, within them, or none: the rate over the days since the first, from the rows."""
    usage = {"old@x": [(T(2, 2, 10), "2")],                             # February only: a known $0 a day
             "gus@x": [(T(2, 2, 10), "2"), (T(3, 16, 10), "7")],         # back within the last 7 days
             "eve@x": [(T(3, 12, 10), "7"), (T(3, 13, 10), "7")],        # the day before them
             "fay@x": [(T(3, 14, 10), "6"), (T(3, 20, 6), "1")],         # within them
             "hal@x": [(T(3, 20, 8), "3")]}                              # today only
    rows = [_request(200 + i, t, u, c) for i, (u, tc) in enumerate(
        (u, tc) for u, tcs in usage.items() for tc in tcs) for t, c in [tc]]
    load_raw_rows(db_url, ([], rows, []))
    budgets = [{"id": f"{u}-{p}", "scope": "user", "target": u, "period": p, "amount_usd": 50, "owner": "x@x"}
               for u in usage for p in ("day", "week")]
    budgets += [{"id": "g-old", "scope": "group", "target": "g-old", "period": "week", "amount_usd": 50,
                 "owner": "x@x"}]
    directory.apply(conn, {"groups": [{"id": "g-old", "name": "g-old", "members": ["old@x", "gus@x"]}],
                           "budgets": budgets})
    answer = api(client, "llm_budgets", AS_OF - timedelta(days=1), AS_OF)
    got = {r["budget"]: r for r in answer["rows"]}
    # No rule maps a value onto the group: its members' usage, from the rollups by user alone.
    assert not [r for r in answer["meta"]["relations"] if "attributed" in r]
    users = {b["id"]: ({b["target"]} if b["scope"] == "user" else {"old@x", "gus@x"}) for b in budgets}
    for bid, who in users.items():
        mine = [r for r in rows if r[4] in who]
        first = min((r[0] for r in mine if r[0] < T(3, 20)), default=None)
        if first is None:
            rate = None
        else:
            start = max(datetime(first.year, first.month, first.day, tzinfo=UTC), T(3, 13))
            rate = _oracle(mine, None, start, T(3, 20)) / ((T(3, 20) - start) / timedelta(days=1))
        assert got[bid]["daily_rate"] == pytest.approx(rate), bid
    # By hand: old $0 a day, gus 7 / 7 (not 7 / 4), eve 7 / 7, fay 6 / 6, hal none.
    assert [got[f"{u}-week"]["daily_rate"] for u in usage] == pytest.approx([0, 1, 1, 1, None])
    assert got["g-old"]["daily_rate"] == pytest.approx(1.0) and got["old@x-week"]["forecast"] == 0


def _payments(r: tuple) -> bool:
    """Whose usage the processes started with team.id=payments made: ann's from 13 March and on
    10-20 February, bob's on even days of March and his unpriced request."""
    t, user, cost = r[0], r[4], r[13]
    if user == "ann@x":
        return t >= T(3, 13) or T(2, 10) <= t < T(2, 21)
    return t.month == 3 and (t.day % 2 == 0 or cost is None)


def test_an_attribute_budget_counts_the_usage_attributed_to_its_value(client, conn, db_url):
    rows = _month()
    load_raw_rows(db_url, ([], rows, []), refresh=False)
    conn.execute("UPDATE llm_requests SET team = 'payments' WHERE source_key = ANY(%s)",
                 ([r[1] for r in rows if _payments(r)],))
    conn.execute("UPDATE llm_requests SET department = 'eng' WHERE team IS NULL")  # another dimension: not counted
    conn.execute("SELECT aa_rebuild_session_totals()")
    refresh_aggregates(conn)
    directory.apply(conn, {"budgets": [
        {"id": "payments", "scope": "attribute", "attribute": "team", "target": "payments", "period": "month",
         "amount_usd": 200, "owner": "payments-lead@x"},
        {"id": "search", "scope": "attribute", "attribute": "team", "target": "search", "period": "week",
         "amount_usd": 50, "owner": "search-lead@x"}]})
    answer = api(client, "llm_budgets", AS_OF - timedelta(days=1), AS_OF)
    got = {r["budget"]: r for r in answer["rows"]}
    assert not {"llm_requests", "metric_points"} & set(answer["meta"]["relations"])
    p = got["payments"]
    assert p["scope_name"] == "team=payments" and p["owner"] == "payments-lead@x"
    # By hand: ann 7 x $12 + $4 today, bob $1 on 9 even days; the rate over 13-19 March: 84 + 3.
    assert (p["spend"], p["daily_rate"]) == pytest.approx((97.0, 87 / 7))
    assert p["forecast"] == pytest.approx(97 + 87 / 7 * 11.5)
    assert p["previous_spend"] == pytest.approx(33.0)                    # ann's $3 on 10-20 February
    assert (p["unpriced_tokens"], p["unpriced"]) == (1000, True)         # bob's unpriced request
    # From the rows, independently of the hand-worked figures.
    mine = [r for r in rows if _payments(r)]
    assert p["spend"] == pytest.approx(_oracle(mine, None, T(3, 1), AS_OF))
    assert p["daily_rate"] == pytest.approx(_oracle(mine, None, T(3, 13), T(3, 20)) / 7)
    assert p["previous_spend"] == pytest.approx(_oracle(mine, None, T(2, 1), T(2, 20, 12)))
    # A value no usage carries: nothing spent, no rate, and the previous week a known $0.
    s = got["search"]
    assert (s["spend"], s["daily_rate"], s["forecast"], s["previous_spend"]) == (0, None, None, 0)


def test_group_budgets_with_shared_members_and_attribution_rules_measured_together(client, conn, db_url):
    """Groups sharing members, whose rules map attribution values (one value onto two groups; a
    member's own attributed usage, counted once), measured together: each budget equals its
    group's rows counted from the data (members or a mapped value), and its own answer measured
    alone, with no other budget in the directory."""
    rows = _month()
    load_raw_rows(db_url, ([], rows, []), refresh=False)
    conn.execute("UPDATE llm_requests SET team = 'payments' WHERE source_key = ANY(%s)",
                 ([r[1] for r in rows if _payments(r)],))
    conn.execute("UPDATE llm_requests SET department = 'eng' WHERE team IS NULL")
    conn.execute("SELECT aa_rebuild_session_totals()")
    refresh_aggregates(conn)
    # (members, {dimension: mapped values})
    groups = {"eng": ({"ann@x"}, {"team": {"payments"}}),      # ann's payments usage: hers once
              "ops": ({"bob@x"}, {"team": {"payments"}}),      # payments also maps here
              "all": ({"ann@x", "bob@x"}, {}),
              "fin": (set(), {"department": {"eng"}}),         # no member: the rule alone
              "nobody": (set(), {})}
    budgets = [{"id": f"{g}-{p}", "scope": "group", "target": g, "period": p, "amount_usd": 60, "owner": "x@x"}
               for g in groups for p in ("week", "month")]
    budgets.append({"id": "org", "scope": "organisation", "period": "month", "amount_usd": 500, "owner": "x@x"})
    directory.apply(conn, {"groups": [{"id": g, "name": g, "members": sorted(m),
                                       "attribution": {d: sorted(v) for d, v in a.items()}}
                                      for g, (m, a) in groups.items()], "budgets": budgets})
    answer = api(client, "llm_budgets", AS_OF - timedelta(days=1), AS_OF)
    together = {r["budget"]: r for r in answer["rows"]}
    assert sorted(together) == sorted(b["id"] for b in budgets)
    assert "llm_usage_attributed_daily" in answer["meta"]["relations"]     # the rules read the attribution

    def values(r: tuple) -> dict[str, str]:
        return {"team": "payments"} if _payments(r) else {"department": "eng"}

    starts = {"week": (T(3, 16), T(3, 9)), "month": (T(3, 1), T(2, 1))}
    for b in budgets[:-1]:
        members, mapped = groups[b["target"]]
        mine = [r for r in rows if r[4] in members or any(v in mapped.get(d, ()) for d, v in values(r).items())]
        start, prev_start = starts[b["period"]]
        r = together[b["id"]]
        assert r["spend"] == pytest.approx(_oracle(mine, None, start, AS_OF)), b["id"]
        rate = _oracle(mine, None, T(3, 13), T(3, 20)) / 7 if mine else None    # every scope began in February
        assert r["daily_rate"] == pytest.approx(rate), b["id"]
        assert r["previous_spend"] == pytest.approx(_oracle(mine, None, prev_start, prev_start + (AS_OF - start)))
        unpriced = sum(x[8] for x in mine if x[13] is None and start <= x[0] < AS_OF)
        assert r["unpriced_tokens"] == unpriced, b["id"]
    # Not vacuous: ann's payments usage is in eng once, the payments value counts in eng and ops.
    assert together["eng-month"]["spend"] == pytest.approx(_oracle(rows, {"ann@x"}, T(3, 1), AS_OF) + 9)
    assert together["nobody-month"]["spend"] == 0 and together["fin-week"]["spend"] > 0

    for b in budgets:  # each alone: the same row
        for other in budgets:
            if other is not b:
                directory.delete_one(conn, "budgets", other["id"])
        [alone] = api(client, "llm_budgets", AS_OF - timedelta(days=1), AS_OF)["rows"]
        assert alone == together[b["id"]], b["id"]
        directory.apply(conn, {"budgets": [o for o in budgets if o is not b]})
    # A deleted group covers nobody: $0, no rate; the groups sharing its members keep theirs.
    directory.delete_one(conn, "groups", "ops")
    after = {r["budget"]: r for r in api(client, "llm_budgets", AS_OF - timedelta(days=1), AS_OF)["rows"]}
    assert (after["ops-month"]["spend"], after["ops-month"]["daily_rate"]) == (0, None)
    assert after["all-month"] == together["all-month"] and after["eng-month"] == together["eng-month"]


def test_budgets_are_llm_analytics(client, conn):
    from tests.harness_support import QUERY_TOKEN
    directory.apply(conn, {"budgets": BUDGETS[:1]})
    resp = client.get("/api/v1/query/llm_budgets", query_string={"from": ms(AS_OF - timedelta(days=1)),
                                                                 "to": ms(AS_OF)},
                      headers={"Authorization": f"Bearer {QUERY_TOKEN}"})
    assert resp.status_code == 403
