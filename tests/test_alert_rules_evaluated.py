"""Every shipped alert rule, evaluated end to end as Grafana's alerting evaluates it
(tests/grafana_alerting.py): the rule read from provisioning/alerting/, its Infinity queries sent
to the running service (waitress on a real port) with the absolute time range and the backend
macros interpolated, the answers read as server-side expressions read them, then its reduce, math
and threshold expressions. The data arrives the real way: OTLP spans from the OpenTelemetry SDK's
exporters through the receiver (the demo command's sender), on each backend.

For each rule, a dataset that must fire it and datasets that must not; the expected state and
the numbers are counted from the dataset here, not taken from the service."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import yaml

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("agent_analytics.ingest.http")

from agent_analytics import demo  # noqa: E402
from agent_analytics import demo_enforcement as enforcement  # noqa: E402
from agent_analytics.dashboards.alerts import (BYPASS_SURGE_MIN, ERROR_SURGE_MIN_ERRORS,  # noqa: E402
                                               ERROR_SURGE_MIN_RATE, ERROR_SURGE_RATIO, HOOK_SURGE_MIN,
                                               SURGE_MIN_BLOCKED, SURGE_RATIO)
from tests.harness_support import INGEST_TOKEN, LLM_TOKEN, QUERY_TOKEN, refresh_aggregates  # noqa: E402
from agent_analytics.dashboards import budget_alerts as ba  # noqa: E402
from agent_analytics.ingest import directory  # noqa: E402
from tests.grafana_alerting import alert_state, evaluate, infinity_numbers, evaluate_math, reduce, render  # noqa: E402
from tests.rawdata import load_raw_rows  # noqa: E402
from tests.ingest_support import Server  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
UTC = timezone.utc
RULES = {r["uid"]: r for g in yaml.safe_load((ROOT / "provisioning/alerting/agent-analytics.yaml").read_text())["groups"]
         for r in g["rules"]}
SURGE = "aa-blocked-calls-surge"
ERROR_SURGE = "aa-api-error-rate-surge"
USER = demo.User(id="alice@example.com", name="Alice", group="platform", anon_id="a1" * 16, agents=["claude-code"],
                 utc_offset_h=0)


def test_every_shipped_rule_has_datasets_here():
    assert set(RULES) == set(SCENARIOS_BY_RULE)


@dataclass(frozen=True)
class Scenario:
    name: str
    blocked_last_hour: int
    blocked_hour_before: int
    allowed_last_hour: int = 30   # allowed and failed calls: not blocked, never counted
    blocked_long_ago: int = 40    # three hours back: in neither window


SURGE_SCENARIOS = [
    Scenario("surge: enough and at least twice the hour before", 24, 6),
    Scenario("surge: exactly the floor, exactly twice the hour before", SURGE_MIN_BLOCKED,
             SURGE_MIN_BLOCKED // SURGE_RATIO),
    Scenario("no surge: one short of twice the hour before", 24, 13),
    Scenario("no surge: twice the hour before but below the floor", SURGE_MIN_BLOCKED - 1, 0),
    Scenario("no surge: nothing blocked at all", 0, 0, blocked_long_ago=0),
]
HOOK_SURGE, BYPASS_SURGE = "aa-hook-blocks-surge", "aa-bypass-sessions-surge"


@dataclass(frozen=True)
class AgentScenario:
    """Hook blocks (or bypass-mode sessions) in the last hour and the hour before; besides them,
    accepted decisions in default-mode sessions, which count for neither rule."""
    name: str
    last_hour: int
    hour_before: int


def _agent_scenarios(minimum: int) -> list[AgentScenario]:
    return [AgentScenario("surge: enough and at least twice the hour before", minimum + 2, 1),
            AgentScenario("surge: exactly the floor, at least twice the hour before", minimum, minimum // SURGE_RATIO),
            AgentScenario("no surge: one short of twice the hour before", minimum + 2, (minimum + 2) // 2 + 1),
            AgentScenario("no surge: twice the hour before but below the floor", minimum - 1, 0),
            AgentScenario("no surge: nothing at all", 0, 0)]


HOOK_SCENARIOS = _agent_scenarios(HOOK_SURGE_MIN)
BYPASS_SCENARIOS = _agent_scenarios(BYPASS_SURGE_MIN)


@dataclass(frozen=True)
class ErrorScenario:
    name: str
    errors_last_hour: int
    requests_last_hour: int
    errors_hour_before: int = 0
    requests_hour_before: int = 0
    exhausted: bool = True      # Claude Code gave up retrying: an api_retries_exhausted each, never an error
    errors_long_ago: int = 30   # three hours back: in neither window


ERROR_SCENARIOS = [
    ErrorScenario("surge: 12 errors in 100, none the hour before", 12, 88, 0, 100),
    ErrorScenario("surge: exactly the floor and the rate, over an idle hour", ERROR_SURGE_MIN_ERRORS,
                  ERROR_SURGE_MIN_ERRORS * (100 // ERROR_SURGE_MIN_RATE - 1)),
    ErrorScenario("surge: exactly twice the hour before's rate", 20, 80, 10, 90),
    ErrorScenario("no surge: one error short of the floor", ERROR_SURGE_MIN_ERRORS - 1, 1),
    ErrorScenario("no surge: enough errors, a rate just below the floor", 10, 241),
    ErrorScenario("no surge: the hour before was nearly as bad", 20, 80, 11, 89),
    ErrorScenario("no surge: nothing ended at all", 0, 0, errors_long_ago=0),
]
# The budgets' rules share one dataset, evaluated at known moments (below).
BUDGET_RULES = ("aa-budget-80", "aa-budget-100", "aa-budget-forecast", "aa-budget-surge")
SCENARIOS_BY_RULE = {SURGE: SURGE_SCENARIOS, HOOK_SURGE: HOOK_SCENARIOS, BYPASS_SURGE: BYPASS_SCENARIOS,
                     ERROR_SURGE: ERROR_SCENARIOS, **{uid: "budget moments" for uid in BUDGET_RULES}}


def _calls(n: int, first: datetime, last: datetime, outcome: str) -> list[demo.ToolCall]:
    step = (last - first) / max(1, n)
    out = []
    for i in range(n):
        server, tool, policy = (("postgres", "execute", "pol-readonly-prod-db") if outcome == "blocked"
                                else ("github", "search_code", None))
        out.append(demo.ToolCall(first + step * i, 2, server, tool, "error" if outcome == "error" else outcome,
                                 policy))
    return out


def _plan(s: Scenario, now: datetime) -> demo.Plan:
    """Calls well inside each window (at least 4 minutes from any edge), in sessions of one user."""
    m = timedelta(minutes=1)
    windows = [
        (now - 56 * m, now - 4 * m, _calls(s.blocked_last_hour, now - 56 * m, now - 4 * m, "blocked")
         + _calls(s.allowed_last_hour, now - 50 * m, now - 10 * m, "ok")
         + _calls(3, now - 30 * m, now - 20 * m, "error")),
        (now - 116 * m, now - 64 * m, _calls(s.blocked_hour_before, now - 116 * m, now - 64 * m, "blocked")),
        (now - 200 * m, now - 170 * m, _calls(s.blocked_long_ago, now - 200 * m, now - 170 * m, "blocked")),
    ]
    sessions = []
    for i, (start, end, calls) in enumerate(windows):
        if not calls:
            continue
        sid = f"{i + 1:08d}-0000-4000-8000-{int(now.timestamp()):012d}"
        request = demo.Request(start + m, "claude-sonnet-4-5", input_tokens=100, output_tokens=50,
                               cache_read_tokens=0, cache_write_tokens=0, duration_ms=900)
        sessions.append(demo.Session(sid, USER, "claude-code", demo._instance(USER, "claude-code"), start, end,
                                     requests=[request], tool_calls=sorted(calls, key=lambda c: c.start)))
    return demo.Plan(now, [USER], demo.directory_document([USER]), sessions)


def _sent_and_evaluated(app, db_url: str, p: demo.Plan, rule: dict, now: datetime, token: str):
    """The plan sent through the OTLP path, the aggregates refreshed, and the rule evaluated at
    `now` with `token`, as Grafana would: (the evaluation, the service's URL)."""
    with Server(app) as server:
        if p.sessions:
            results = demo.send(p, server.url, INGEST_TOKEN, say=lambda s: None)
            assert not any(k.endswith("_failed") for k in results), results
        with psycopg.connect(db_url, autocommit=True) as c:
            refresh_aggregates(c)
        return evaluate(rule, now, server.url, {"Authorization": f"Bearer {token}"}), server.url


def _blocked_between(p: demo.Plan, start: datetime, end: datetime) -> int:
    return sum(1 for s in p.sessions for c in s.tool_calls if c.outcome == "blocked" and start <= c.start < end)


@pytest.mark.parametrize("scenario", SURGE_SCENARIOS, ids=lambda s: s.name)
def test_blocked_calls_surge_rule_as_grafana_evaluates_it(app, db_url, scenario):
    rule = RULES[SURGE]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    p = _plan(scenario, now)
    ev, url = _sent_and_evaluated(app, db_url, p, rule, now, QUERY_TOKEN)

    # The queries Grafana sends: the last hour, absolute, in epoch milliseconds.
    hour_ago_ms, now_ms = int((now - timedelta(hours=1)).timestamp() * 1000), int(now.timestamp() * 1000)
    assert ev.requests == [f"{url}/api/v1/query/security_blocked_calls?from={hour_ago_ms}&to={now_ms}"] * 2
    # The numbers, counted from the dataset.
    last_hour = _blocked_between(p, now - timedelta(hours=1), now)
    hour_before = _blocked_between(p, now - timedelta(hours=2), now - timedelta(hours=1))
    assert (last_hour, hour_before) == (scenario.blocked_last_hour, scenario.blocked_hour_before)
    assert ev.values["C"] == [float(last_hour)] and ev.values["D"] == [float(hour_before)]
    fires = last_hour >= SURGE_MIN_BLOCKED and last_hour >= SURGE_RATIO * hour_before
    assert ev.state == ("Alerting" if fires else "Normal")
    assert alert_state(rule, ev) == ev.state
    assert fires == scenario.name.startswith("surge")


def _agent_session(i: int, start: datetime, end: datetime, mode: str,
                   decisions: list[enforcement.Decision]) -> demo.Session:
    sid = f"{i:08d}-0000-4000-9000-{int(start.timestamp()):012d}"
    s = demo.Session(sid, USER, "claude-code", demo._instance(USER, "claude-code"), start, end,
                     requests=[demo.Request(start, "claude-sonnet-4-5", input_tokens=100, output_tokens=50,
                                            cache_read_tokens=0, cache_write_tokens=0, duration_ms=900)])
    s.enforcement = enforcement.SessionEnforcement(permission_mode=mode, decisions=decisions, connections=[])
    return s


def _agent_plan(rule: str, s: AgentScenario, now: datetime) -> demo.Plan:
    """Hook blocks spread over one default-mode session per hour window, or bypass-mode sessions
    of one decision each, well inside each window; and accepted decisions in the last hour."""
    m = timedelta(minutes=1)
    windows = [(now - 56 * m, now - 4 * m, s.last_hour), (now - 116 * m, now - 64 * m, s.hour_before)]
    sessions = [_agent_session(0, now - 50 * m, now - 10 * m, "default",
                               [enforcement.Decision(now - 30 * m + i * m, "Read", "accept", "config")
                                for i in range(12)])]
    for w, (first, last, n) in enumerate(windows):
        step = (last - first) / max(1, n)
        if rule == HOOK_SURGE and n:
            sessions.append(_agent_session(1 + w, first, last, "default", [
                enforcement.Decision(first + step * i, "Bash", "reject", "hook") for i in range(n)]))
        elif rule == BYPASS_SURGE:
            sessions += [_agent_session(10 * (w + 1) + i, first + step * i, first + step * i + m, "bypassPermissions",
                                        [enforcement.Decision(first + step * i, "Bash", "accept", "config")])
                         for i in range(n)]
    return demo.Plan(now, [USER], demo.directory_document([USER]), sorted(sessions, key=lambda x: x.start))


def _counted_between(rule: str, p: demo.Plan, start: datetime, end: datetime) -> int:
    if rule == HOOK_SURGE:
        return sum(1 for x in p.sessions for d in x.enforcement.decisions or () if d.source == "hook"
                   and start <= d.time < end)
    return len({x.id for x in p.sessions if x.enforcement.permission_mode == "bypassPermissions"
                for d in x.enforcement.decisions or () if start <= d.time < end})


@pytest.mark.parametrize("rule_uid, scenario, metric, minimum",
                         [(HOOK_SURGE, s, "security_hook_blocks", HOOK_SURGE_MIN) for s in HOOK_SCENARIOS]
                         + [(BYPASS_SURGE, s, "security_bypass_sessions", BYPASS_SURGE_MIN) for s in BYPASS_SCENARIOS],
                         ids=lambda x: x.name if isinstance(x, AgentScenario) else str(x))
def test_agent_enforcement_surge_rules_as_grafana_evaluates_them(app, db_url, rule_uid, scenario, metric, minimum):
    rule = RULES[rule_uid]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    p = _agent_plan(rule_uid, scenario, now)
    ev, url = _sent_and_evaluated(app, db_url, p, rule, now, QUERY_TOKEN)

    hour_ago_ms, now_ms = int((now - timedelta(hours=1)).timestamp() * 1000), int(now.timestamp() * 1000)
    assert ev.requests == [f"{url}/api/v1/query/{metric}?from={hour_ago_ms}&to={now_ms}"] * 2
    last_hour = _counted_between(rule_uid, p, now - timedelta(hours=1), now)
    hour_before = _counted_between(rule_uid, p, now - timedelta(hours=2), now - timedelta(hours=1))
    assert (last_hour, hour_before) == (scenario.last_hour, scenario.hour_before)
    assert ev.values["C"] == [float(last_hour)] and ev.values["D"] == [float(hour_before)]
    fires = last_hour >= minimum and last_hour >= SURGE_RATIO * hour_before
    assert ev.state == ("Alerting" if fires else "Normal")
    assert alert_state(rule, ev) == ev.state


def _error_plan(s: ErrorScenario, now: datetime) -> demo.Plan:
    """Claude Code sessions, one per window, their requests and API errors well inside it."""
    m = timedelta(minutes=1)
    windows = [(now - 56 * m, now - 4 * m, s.requests_last_hour, s.errors_last_hour),
               (now - 116 * m, now - 64 * m, s.requests_hour_before, s.errors_hour_before),
               (now - 200 * m, now - 170 * m, 0, s.errors_long_ago)]
    sessions = []
    for i, (start, end, n_requests, n_errors) in enumerate(windows):
        if not n_requests and not n_errors:
            continue
        sid = f"{i + 1:08d}-0000-4000-8000-{int(now.timestamp()):012d}"
        step = (end - start) / max(1, n_requests + n_errors)
        requests = [demo.Request(start + step * k, "claude-sonnet-4-5", input_tokens=100, output_tokens=50,
                                 cache_read_tokens=0, cache_write_tokens=0, duration_ms=900)
                    for k in range(n_requests)]
        errors = [demo.ApiError(start + step * (n_requests + k), "claude-sonnet-4-5", 529, 4, s.exhausted)
                  for k in range(n_errors)]
        sessions.append(demo.Session(sid, USER, "claude-code", demo._instance(USER, "claude-code"), start, end,
                                     requests=requests, errors=errors))
    return demo.Plan(now, [USER], demo.directory_document([USER]), sessions)


def _rate(errors: int, requests: int) -> float | None:
    return None if errors + requests == 0 else 100 * errors / (errors + requests)


@pytest.mark.parametrize("scenario", ERROR_SCENARIOS, ids=lambda s: s.name)
def test_api_error_rate_surge_rule_as_grafana_evaluates_it(app, db_url, scenario):
    rule = RULES[ERROR_SURGE]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    p = _error_plan(scenario, now)
    # The provisioned data source's token has the llm-analytics permission (AA_GRAFANA_QUERY_TOKEN).
    ev, url = _sent_and_evaluated(app, db_url, p, rule, now, LLM_TOKEN)

    hour_ago_ms, now_ms = int((now - timedelta(hours=1)).timestamp() * 1000), int(now.timestamp() * 1000)
    assert ev.requests == [f"{url}/api/v1/query/llm_error_rate?from={hour_ago_ms}&to={now_ms}"] * 3
    # The numbers, counted from the dataset: errors against requests that ended, per hour.
    hour, before = (now - timedelta(hours=1), now), (now - timedelta(hours=2), now - timedelta(hours=1))
    counted = [(sum(1 for x in p.sessions for e in x.errors if lo <= e.time < hi),
                sum(1 for x in p.sessions for r in x.requests if lo <= r.time < hi)) for lo, hi in (hour, before)]
    rate, previous = (_rate(*c) for c in counted)
    assert ev.values["F"] == [float(counted[0][0])]
    assert ev.values["D"] == ([pytest.approx(rate, rel=1e-12)] if rate is not None else [])
    assert ev.values["E"] == [pytest.approx(previous or 0.0, rel=1e-12)]
    fires = (rate is not None and counted[0][0] >= ERROR_SURGE_MIN_ERRORS and rate >= ERROR_SURGE_MIN_RATE
             and rate >= ERROR_SURGE_RATIO * (previous or 0))
    assert alert_state(rule, ev) == ("Alerting" if fires else "Normal")
    assert fires == scenario.name.startswith("surge")


# -- the evaluator's own pieces, against what Grafana's code says they do ----------------------------
def test_math_follows_bosun_precedence_and_null_propagation():
    v = {"A": [24.0], "B": [12.0], "N": [None], "E": []}
    assert evaluate_math("($A >= 20) && ($A >= 2 * $B)", v) == [1.0]
    assert evaluate_math("$A >= 20 && $A >= 2 * $B + 1", v) == [0.0]  # * before +, + before >=, >= before &&
    assert evaluate_math("1 || 0 && 0", v) == [1.0]                    # && binds tighter than ||
    assert evaluate_math("2 ** 3 * 2", v) == [16.0]
    assert evaluate_math("-1 + 2", v) == [-3.0]                        # unary minus takes the rest: -(1 + 2)
    assert evaluate_math("!0 + 1", v) == [0.0]                         # !(0 + 1)
    assert evaluate_math("$N > 0", v) == [None]
    assert evaluate_math("$E > 0", v) == []


def test_reduce_modes_on_numbers():
    assert reduce({"reducer": "last"}, [3.0, None]) == [3.0, None]
    assert reduce({"reducer": "last", "settings": {"mode": "dropNN"}}, [3.0, None, float("nan")]) == [3.0]
    assert reduce({"reducer": "last", "settings": {"mode": "replaceNN", "replaceWithValue": 0}}, [None]) == [0.0]


def test_a_null_or_missing_answer_is_no_data_which_the_rule_treats_as_ok():
    rule = RULES[SURGE]
    model = rule["data"][0]["model"]
    assert infinity_numbers(model, {"rows": [{"value": None}]}) == [None]
    assert infinity_numbers(model, {"rows": []}) == []
    assert rule["noDataState"] == "OK"


# -- the budgets' rules: one dataset, budgets crossing 80 % and 100 % at known moments ----------------
def _t(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


# (time, user, cost; None: a request no price is known for)
SPEND = ([(_t(d, 20), "ann@x", 12) for d in range(13, 20)]          # the 7 days before: $12 a day at 20:00
         + [(_t(19, 8), "ann@x", 6)]                                   # and $6 the day before at 08:00
         + [(_t(20, 9), "ann@x", 5), (_t(20, 10), "ann@x", 3), (_t(20, 11), "ann@x", 2),
            (_t(20, 9), "bob@x", None),
            (_t(20, 9, 30), "carol@x", 4)])                             # carol's first usage ever
# A rule's columns, by the figure _oracle names them: a budget with one of them unknown has no instance.
RULE_FIGURES = {"aa-budget-80": ("pct", "spend"), "aa-budget-100": ("pct", "spend"),
                "aa-budget-forecast": ("forecast_pct", "pct", "spend"), "aa-budget-surge": ("spend", "previous", "pct")}
BUDGETS = [
    {"id": "ann-day", "name": "Ann daily", "scope": "user", "target": "ann@x", "period": "day", "amount_usd": 10,
     "owner": "ann@x"},
    {"id": "org-month", "name": "Organisation", "scope": "organisation", "period": "month", "amount_usd": 1000,
     "owner": "finance@x"},
    # Its only usage has no price: its spend is unknown, so no instance of any rule, never "0 %".
    {"id": "bob-day", "name": "Bob daily", "scope": "user", "target": "bob@x", "period": "day", "amount_usd": 1,
     "owner": "bob@x"},
    # 40 % spent on her first day: no previous period to surge against (its 0 is no history), no alert;
    # no complete day of usage, so no rate and no forecast: no instance of the forecast rule.
    {"id": "carol-day", "name": "Carol daily", "scope": "user", "target": "carol@x", "period": "day",
     "amount_usd": 10, "owner": "carol@x"},
]
# Worked out by hand: which budgets each rule fires for, at each moment.
MOMENTS = {
    _t(20, 9, 59): {"aa-budget-forecast": {"ann-day"}},  # $5 (50 %); 5 + 90/7 x 14h01/24h = $12.51
    _t(20, 10, 1): {"aa-budget-80": {"ann-day"}, "aa-budget-forecast": {"ann-day"}},   # $8: 80 %
    _t(20, 11, 1): {"aa-budget-100": {"ann-day"}, "aa-budget-surge": {"ann-day"}},     # $10 >= 1.5 x $6
}


def _oracle(t: datetime) -> dict[str, dict[str, float]]:
    """Each budget's figures at `t`, from SPEND (day: from midnight; month: from the 1st)."""
    out = {}
    for b in BUDGETS:
        who = {"user": lambda u: u == b.get("target"), "organisation": lambda u: True}[b["scope"]]
        day0 = t.replace(hour=0, minute=0)
        start, end, prev = ((day0, day0 + timedelta(days=1), day0 - timedelta(days=1)) if b["period"] == "day"
                            else (_t(1, 0), datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)))
        mine = [(at, c) for at, u, c in SPEND if who(u)]
        if any(c is None for at, c in mine if start <= at < t) and not any(
                c is not None for at, c in mine if start <= at < t):
            continue  # nothing priced: unknown
        spend = sum(c for at, c in mine if start <= at < t and c is not None)
        # The rate: the complete days since the scope's first usage, at most 7; none complete: unknown.
        days = min(7, (day0 - min(at for at, _ in mine).replace(hour=0, minute=0)).days)
        rate = (sum(c for at, c in mine if day0 - timedelta(days=days) <= at < day0 and c is not None) / days
                if days > 0 else None)
        # The data begins 13 March: a previous period starting before it is unknown (February).
        previous = (sum(c for at, c in mine if prev <= at < prev + (t - start) and c is not None)
                    if min(at for at, _, _ in SPEND).date() <= prev.date() else None)
        out[b["id"]] = {"spend": spend, "pct": spend / b["amount_usd"] * 100, "previous": previous,
                        "forecast_pct": None if rate is None else
                        (spend + rate * ((end - t) / timedelta(days=1))) / b["amount_usd"] * 100}
    return out


def _fires(uid: str, f: dict[str, float]) -> bool:
    if any(f[k] is None for k in RULE_FIGURES[uid]):
        return False
    return {"aa-budget-80": lambda: ba.WARN_PCT <= f["pct"] < ba.FULL_PCT,
            "aa-budget-100": lambda: f["pct"] >= ba.FULL_PCT,
            "aa-budget-forecast": lambda: f["forecast_pct"] > ba.FULL_PCT and f["pct"] < ba.FULL_PCT,
            # A surge needs a previous period that spent something: against nothing, any spend is "a surge".
            "aa-budget-surge": lambda: f["previous"] > 0 and f["spend"] >= 1.5 * f["previous"] and f["pct"] >= 25,
            }[uid]()


def test_budget_rules_fire_when_budgets_cross_at_known_moments(app, db_url, conn):
    load_raw_rows(db_url, ([], [(at, hashlib.sha256(f"b{i}".encode()).digest(), "claude_code", f"s{i}", u,
                                 "claude-code", "anthropic", "claude-sonnet-4-5", 100, 10, 0, 0,
                                 None if c is None else Decimal(c), None if c is None else Decimal(c), 900.0)
                                for i, (at, u, c) in enumerate(SPEND)], []))
    directory.apply(conn, {"budgets": BUDGETS})
    names = {b["id"]: b for b in BUDGETS}
    with Server(app) as server:
        for moment, expected in MOMENTS.items():
            figures = _oracle(moment)
            assert set(figures) == {"ann-day", "org-month", "carol-day"}
            assert figures["carol-day"]["forecast_pct"] is None and figures["org-month"]["previous"] is None
            for uid in BUDGET_RULES:
                rule = RULES[uid]
                ev = evaluate(rule, moment, server.url, {"Authorization": f"Bearer {LLM_TOKEN}"})
                budgets = {dict(labels)["budget"]: state for labels, state in ev.instances.items()}
                # One instance per budget whose figures the rule reads are known, labelled with its
                # id, name and owner.
                known = {b for b, f in figures.items() if all(f[k] is not None for k in RULE_FIGURES[uid])}
                assert set(budgets) == known, (moment, uid, ev.instances)
                for labels in ev.instances:
                    b = names[dict(labels)["budget"]]
                    assert dict(labels) == {"budget": b["id"], "budget_name": b["name"], "owner": b["owner"]}
                firing = {b for b, state in budgets.items() if state == "Alerting"}
                assert firing == expected.get(uid, set()), (moment, uid, figures)
                assert firing == {b for b, f in figures.items() if _fires(uid, f)}, (moment, uid, figures)
                assert all(state in ("Alerting", "Normal") for state in budgets.values())
                for labels, state in ev.instances.items():
                    spend = figures[dict(labels)["budget"]]["spend"]
                    assert dict(ev.sets["SPEND"])[labels] == pytest.approx(spend)
                    summary = render(rule["annotations"]["summary"], labels, ev)
                    b = names[dict(labels)["budget"]]
                    assert summary.startswith(f"Budget {b['name']} ({b['id']}), owner {b['owner']}: "
                                              f"spend to date {spend:.2f} USD"), summary


def test_budget_rules_without_budgets_are_no_data_treated_as_ok(app, db_url):
    with Server(app) as server:
        for uid in BUDGET_RULES:
            ev = evaluate(RULES[uid], _t(20, 12), server.url, {"Authorization": f"Bearer {LLM_TOKEN}"})
            assert ev.state == "NoData" and alert_state(RULES[uid], ev) == "Normal"
