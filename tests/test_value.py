"""The Value figures (what the spend bought) against an oracle computed here from the captured
payloads: Claude Code's edits/commit/pull-request runs (protobuf and http/json), two permission
runs (edits, no commits) and a Codex run (spend of an agent that reports no productivity, left
out), plus a copy of the protobuf run six hours earlier, in the previous period. The spend is the
agent's own `cost_usd` (AA_COST_SOURCE=reported), read out of the events here; the counts are
read out of the metric points; the ledger (the stand-in API's record of every answered request)
checks that the events are every request. Every run was started with the same team attributes:
one permissions run is sent as another team's, the other as a process that set none, so the
figures per team (department, cost centre) have three rows. Both backends."""
from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from tests.datasource_support import api
from tests.ingest_support import FIXTURES, JSON, fixture_bytes, plain, post

from tests.harness_support import refresh_aggregates

UTC = timezone.utc
EDITS = "claude-code-2.1.332-edits-commit-pr"
RUNS = {  # scenario -> (its files, JSON or protobuf)
    EDITS: ([f"{EDITS}-logs-{i}.pb" for i in (1, 2)] + [f"{EDITS}-metrics-{i}.pb" for i in (1, 2)], False),
    EDITS + "-httpjson": ([f"{EDITS}-httpjson-logs-{i}.json" for i in (1, 2)]
                          + [f"{EDITS}-httpjson-metrics-{i}.json" for i in (1, 2)], True),
    "claude-code-2.1.332-permissions-acceptedits-cliarg": (
        [f"claude-code-2.1.332-permissions-acceptedits-cliarg-logs-{i}.pb" for i in (1, 2, 3)]
        + [f"claude-code-2.1.332-permissions-acceptedits-cliarg-metrics-{i}.pb" for i in (1, 2)], False),
    "claude-code-2.1.332-permissions-rules": (
        [f"claude-code-2.1.332-permissions-rules-logs-{i}.pb" for i in (1, 2, 3)]
        + [f"claude-code-2.1.332-permissions-rules-metrics-{i}.pb" for i in (1, 2)], False),
    "codex-0.171.0-shell-500-then-ok": (["codex-0.171.0-shell-500-then-ok-logs-1.pb",
                                         "codex-0.171.0-shell-500-then-ok-metrics-1.pb"], False),
}
COUNTED = {"claude_code.pull_request.count": "pull_requests", "claude_code.commit.count": "commits",
           "claude_code.lines_of_code.count": "lines", "claude_code.code_edit_tool.decision": "edits"}
WINDOW = (datetime(2026, 12, 6, tzinfo=UTC), datetime(2026, 12, 6, 6, tzinfo=UTC))
# The attribution dimensions and the resource attributes Claude Code copies them from.
DIMENSIONS = {"department": "department", "team": "team.id", "cost_center": "cost_center"}
# Scenario -> the attributes its process is sent with instead of the captured ones (eng,
# platform, cc-42); {}: none at all (unattributed).
RELABELLED = {"claude-code-2.1.332-permissions-acceptedits-cliarg": {"department": "fin", "team.id": "payments",
                                                                     "cost_center": "cc-7"},
              "claude-code-2.1.332-permissions-rules": {}}
SHIFT = int((WINDOW[1] - WINDOW[0]).total_seconds())  # into the previous period, six hours earlier


def _attrs(kvs, is_json: bool) -> dict:
    if is_json:
        return {a["key"]: next(iter(a["value"].values()), None) for a in kvs}
    return {kv.key: plain(kv.value) for kv in kvs}


def _records(name: str, is_json: bool, shift: int, body: bytes | None = None):
    """(kind, time in s, attributes, value) of the api_request events and counted metric points;
    a record's attributes over its resource's (the record's win). `body`: the request as sent."""
    if is_json:
        doc = json.loads((FIXTURES / name).read_text())
        for rl in doc.get("resourceLogs", []):
            for sl in rl["scopeLogs"]:
                for rec in sl["logRecords"]:
                    if rec.get("body", {}).get("stringValue") == "claude_code.api_request":
                        yield ("request", int(rec["timeUnixNano"]) / 1e9 - shift,
                               {**_attrs(rl["resource"]["attributes"], True), **_attrs(rec["attributes"], True)},
                               None)
        for rm in doc.get("resourceMetrics", []):
            for sm in rm["scopeMetrics"]:
                for m in sm["metrics"]:
                    for dp in m.get("sum", {}).get("dataPoints", []) if m["name"] in COUNTED else ():
                        yield (m["name"], int(dp["timeUnixNano"]) / 1e9 - shift,
                               {**_attrs(rm["resource"]["attributes"], True), **_attrs(dp["attributes"], True)},
                               float(dp.get("asDouble", dp.get("asInt", 0))))
        return
    body = fixture_bytes(name) if body is None else body
    if "-logs-" in name:
        for rl in ExportLogsServiceRequest.FromString(body).resource_logs:
            resource = _attrs(rl.resource.attributes, False)
            for sl in rl.scope_logs:
                for rec in sl.log_records:
                    if rec.body.string_value == "claude_code.api_request":
                        yield ("request", rec.time_unix_nano / 1e9 - shift,
                               {**resource, **_attrs(rec.attributes, False)}, None)
    else:
        for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics:
            resource = _attrs(rm.resource.attributes, False)
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name in COUNTED:
                        for dp in m.sum.data_points:
                            yield (m.name, dp.time_unix_nano / 1e9 - shift, {**resource, **_attrs(dp.attributes, False)},
                                   dp.as_double)


def _relabelled(name: str, attrs: dict[str, str]) -> bytes:
    """A protobuf capture as if its process had been started with `attrs` instead of the
    attribution attributes it was: on the resource and on every record and point, as Claude Code
    copies them."""
    is_logs = "-logs-" in name
    req = (ExportLogsServiceRequest if is_logs else ExportMetricsServiceRequest).FromString(fixture_bytes(name))

    def relabel(kvs) -> None:
        kept = [kv for kv in kvs if kv.key not in DIMENSIONS.values()]
        del kvs[:]
        kvs.extend(kept)
        for key, value in attrs.items():
            kv = kvs.add()
            kv.key, kv.value.string_value = key, value

    for res in (req.resource_logs if is_logs else req.resource_metrics):
        relabel(res.resource.attributes)
        for scope in (res.scope_logs if is_logs else res.scope_metrics):
            if is_logs:
                for rec in scope.log_records:
                    relabel(rec.attributes)
            else:
                for m in scope.metrics:
                    for dp in m.sum.data_points:
                        relabel(dp.attributes)
    return req.SerializeToString()


def _shifted(name: str, seconds: int) -> bytes:
    """A protobuf capture as if sent `seconds` earlier (every record's times moved)."""
    body = fixture_bytes(name)
    ns = seconds * 10**9
    if "-logs-" in name:
        req = ExportLogsServiceRequest.FromString(body)
        for rl in req.resource_logs:
            for sl in rl.scope_logs:
                for rec in sl.log_records:
                    rec.time_unix_nano -= ns
                    rec.observed_time_unix_nano -= ns
                    for kv in rec.attributes:
                        if kv.key == "event.timestamp":
                            t = datetime.fromisoformat(kv.value.string_value.replace("Z", "+00:00"))
                            kv.value.string_value = (t - timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
        return req.SerializeToString()
    req = ExportMetricsServiceRequest.FromString(body)
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for dp in m.sum.data_points:
                    dp.time_unix_nano -= ns
                    dp.start_time_unix_nano -= ns
    return req.SerializeToString()


def _empty() -> dict:
    return {"cost": None, "pull_requests": 0.0, "commits": 0.0, "lines": 0.0, "accepted": 0.0, "rejected": 0.0}


class Oracle:
    """Spend and counts per period (0: the window, 1: the six hours before) and key."""

    def __init__(self) -> None:
        self.keys: dict[tuple, dict] = defaultdict(_empty)
        self.languages: dict[tuple, dict] = defaultdict(lambda: {"accepted": 0.0, "rejected": 0.0})

    def add(self, kind: str, t: float, a: dict, value: float | None) -> None:
        start, end = WINDOW[0].timestamp(), WINDOW[1].timestamp()
        period = 0 if start <= t < end else 1
        assert start - SHIFT <= t < end
        user = a["user.id"]
        model = a.get("model", "unknown").removesuffix("[1m]")
        keys = ((period, "total", None), (period, "user", user), (period, "model", model),
                *((period, dim, a.get(attribute)) for dim, attribute in DIMENSIONS.items()))
        for key in keys:
            g = self.keys[key]
            if kind == "request":
                g["cost"] = (g["cost"] or 0.0) + float(a["cost_usd"])
            elif COUNTED[kind] == "edits":
                g["accepted" if a["decision"] == "accept" else "rejected"] += value
            else:
                g[COUNTED[kind]] += value
        if kind == "claude_code.code_edit_tool.decision":
            self.languages[(period, a["language"], a["tool_name"])][
                "accepted" if a["decision"] == "accept" else "rejected"] += value

    def figures(self, period: int, by: str, key) -> dict:
        g = self.keys.get((period, by, key), _empty())
        per = (lambda amount, n: None if amount is None or not n else amount / n)
        return {"cost_per_pull_request": per(g["cost"], g["pull_requests"]),
                "cost_per_commit": per(g["cost"], g["commits"]),
                "cost_per_kloc": per(g["cost"], g["lines"] / 1000),
                "acceptance_pct": per(100 * g["accepted"], g["accepted"] + g["rejected"])}


def _close(a, b) -> bool:
    return a is b if a is None or b is None else abs(a - b) <= 1e-9 * max(1.0, abs(b))


@pytest.fixture
def oracle(client, app, conn) -> Oracle:
    app.config["AA"] = app.config["AA"].replace(cost_source="reported")
    o = Oracle()
    for scenario, (files, is_json) in RUNS.items():
        for name in files:
            signal = "logs" if "-logs-" in name else "metrics"
            body = _relabelled(name, RELABELLED[scenario]) if scenario in RELABELLED else fixture_bytes(name)
            r = post(client, f"/v1/{signal}", body, content_type=JSON) if is_json else \
                post(client, f"/v1/{signal}", body)
            assert r.status_code == 200, (name, r.data)
            if scenario.startswith("claude-code"):
                for rec in _records(name, is_json, 0, body):
                    o.add(*rec)
    for name in RUNS[EDITS][0]:  # the previous period: the same run six hours earlier
        signal = "logs" if "-logs-" in name else "metrics"
        assert post(client, f"/v1/{signal}", _shifted(name, SHIFT)).status_code == 200
        for rec in _records(name, False, SHIFT):
            o.add(*rec)
    # As the service's refresh does within a minute: on TimescaleDB rows below an aggregate's
    # materialised buckets (a test before this one may have materialised today) show after it.
    refresh_aggregates(conn)
    return o


def test_the_events_are_every_request_of_the_ledger(oracle):
    """The spend divided is the events' cost: the ledger's answered requests are those events."""
    for scenario in (EDITS, EDITS + "-httpjson"):
        ledger = [json.loads(line) for line in (FIXTURES / f"{scenario}.ledger.jsonl").read_text().splitlines()]
        files, is_json = RUNS[scenario]
        events = [a for n in files if "-logs-" in n for kind, _, a, _ in _records(n, is_json, 0) if kind == "request"]
        assert len(events) == sum(1 for r in ledger if r["status"] == 200)
        assert sorted(int(float(a["input_tokens"])) for a in events) == sorted(r["input"] for r in ledger)


def _stat(client, metric: str) -> dict:
    return api(client, metric, *WINDOW)["rows"][0]


def test_figures_match_the_oracle(client, oracle):
    total, before = oracle.keys[(0, "total", None)], oracle.keys[(1, "total", None)]
    assert total["pull_requests"] == 2 and total["commits"] == 2 and before["pull_requests"] == 1
    want, was = oracle.figures(0, "total", None), oracle.figures(1, "total", None)
    for name, count in (("cost_per_pull_request", "pull_requests"), ("cost_per_commit", "commits"),
                        ("cost_per_kloc", "lines"), ("acceptance_pct", "edits")):
        row = _stat(client, f"value_{name}")
        assert _close(row["value"], want[name]) and _close(row["previous"], was[name]), (name, row, want, was)
        assert _close(row["cost"], total["cost"]) and row["unpriced_tokens"] == 0, (name, row)
        assert row[count] == (total["accepted"] + total["rejected"] if count == "edits" else total[count])
    spend = _stat(client, "value_spend")
    assert _close(spend["value"], total["cost"]) and _close(spend["previous"], before["cost"])
    # Codex's requests (no cost of its own under the reported cost) are not the spend divided.
    assert spend["unpriced_tokens"] == 0 and _stat(client, "llm_total_cost")["unpriced_tokens"] > 0
    for metric, count in (("value_pull_requests", "pull_requests"), ("value_commits", "commits")):
        row = _stat(client, metric)
        assert (row["value"], row["previous"]) == (total[count], before[count])


def test_figures_per_user_and_model(client, oracle):
    rows = api(client, "value_by_user", *WINDOW)["rows"]
    users = {k for (p, by, k) in oracle.keys if by == "user" and p == 0}
    assert {r["user_id"] for r in rows} == users and len(users) == 4
    for r in rows:
        want, was = oracle.figures(0, "user", r["user_id"]), oracle.figures(1, "user", r["user_id"])
        for name in want:
            assert _close(r[name], want[name]) and _close(r["previous_" + name], was[name]), (r, name)
    # The permissions runs made no commit: their users' cost per commit is unknown, never $0.
    no_commits = [r for r in rows if r["commits"] == 0]
    assert len(no_commits) == 2 and all(r["cost_per_commit"] is None and r["cost"] > 0 for r in no_commits)
    models = {r["model"]: r for r in api(client, "value_by_model", *WINDOW)["rows"]}
    assert set(models) == {k for (p, by, k) in oracle.keys if by == "model" and p == 0} - {"unknown"}
    for model, r in models.items():
        assert _close(r["cost_per_kloc"], oracle.figures(0, "model", model)["cost_per_kloc"]), r
        assert _close(r["previous_cost_per_kloc"], oracle.figures(1, "model", model)["cost_per_kloc"]), r


def test_figures_per_group(client, conn, oracle):
    """A directory group of the two edits runs' users; the others in none."""
    edit_users = sorted({a["user.id"] for s in (EDITS, EDITS + "-httpjson") for n in RUNS[s][0]
                         for _, _, a, _ in _records(n, RUNS[s][1], 0)})
    conn.execute("INSERT INTO groups (id, name) VALUES ('platform', 'Platform')")
    for u in edit_users:
        conn.execute("INSERT INTO group_members (group_id, user_id) VALUES ('platform', %s)", (u,))
    rows = {r["group"]: r for r in api(client, "value_by_group", *WINDOW)["rows"]}
    assert set(rows) == {"Platform", "(no group)"}
    users = [k for (p, by, k) in oracle.keys if by == "user" and p == 0]
    for group, members in (("Platform", edit_users), ("(no group)", [u for u in users if u not in edit_users])):
        g = _empty()
        for u in members:
            for k, v in oracle.keys[(0, "user", u)].items():
                g[k] = v if g[k] is None else g[k] + (v or 0)
        assert _close(rows[group]["cost"], g["cost"])
        assert _close(rows[group]["cost_per_pull_request"], None if not g["pull_requests"] else
                      g["cost"] / g["pull_requests"])
    only = api(client, "value_by_group", *WINDOW, group="platform")["rows"]
    assert [r["group"] for r in only] == ["Platform"]


def test_edit_decisions_by_language(client, oracle):
    rows = api(client, "value_edits_by_language", *WINDOW)["rows"]
    want = {(lang, tool): v for (p, lang, tool), v in oracle.languages.items() if p == 0}
    assert {(r["language"], r["tool_name"]) for r in rows} == set(want)
    for r in rows:
        w = want[(r["language"], r["tool_name"])]
        assert (r["edits_accepted"], r["edits_rejected"]) == (w["accepted"], w["rejected"])
        assert _close(r["acceptance_pct"], 100 * w["accepted"] / (w["accepted"] + w["rejected"]))
        old = oracle.languages.get((1, r["language"], r["tool_name"]))
        assert _close(r["previous_acceptance_pct"], 100 * old["accepted"] / (old["accepted"] + old["rejected"])
                      if old else None)


def test_the_estimated_spend_is_claude_codes_requests(client, conn, app, oracle):
    """Under the estimated cost (list prices), the spend divided is the estimate of Claude Code's
    requests in the window, read here from the raw rows; Codex's requests, priced too, are not."""
    app.config["AA"] = app.config["AA"].replace(cost_source="estimated")
    want, codex = conn.execute(
        "SELECT sum(estimated_cost_usd) FILTER (WHERE agent_id = 'claude-code'),"
        " sum(estimated_cost_usd) FILTER (WHERE agent_id <> 'claude-code') FROM llm_requests"
        " WHERE time >= %s AND time < %s", WINDOW).fetchone()
    # Every Claude Code session sent events: no metric point's cost counts.
    assert conn.execute("SELECT count(*) FROM metric_points WHERE cost_counted AND session_id IS NOT NULL"
                        " AND agent_id = 'claude-code'").fetchone() == (0,)
    assert want and codex
    spend = _stat(client, "value_spend")
    assert _close(spend["value"], float(want)) and spend["unpriced_tokens"] == 0
    row = _stat(client, "value_cost_per_pull_request")
    assert _close(row["value"], float(want) / oracle.keys[(0, "total", None)]["pull_requests"])


def test_figures_per_team_department_and_cost_centre(client, oracle):
    """Spend and counts per value of each attribution dimension as the processes sent it (on
    events and metric points alike), what processes that set none did under (unattributed)."""
    total = oracle.keys[(0, "total", None)]
    for dim in DIMENSIONS:
        rows = api(client, f"value_by_{dim}", *WINDOW)["rows"]
        want = {k: g for (p, by, k), g in oracle.keys.items() if by == dim and p == 0}
        assert len(want) == 3 and None in want, want.keys()  # the captured value, another, none
        assert {r[dim] if r["attributed"] else None for r in rows} == set(want), rows
        assert all(r[dim] == "(unattributed)" for r in rows if not r["attributed"])
        for r in rows:
            key = r[dim] if r["attributed"] else None
            g = want[key]
            assert _close(r["cost"], g["cost"]) and r["unpriced_tokens"] == 0, (dim, r)
            assert (r["pull_requests"], r["commits"], r["lines_added"] + r["lines_removed"],
                    r["edits_accepted"], r["edits_rejected"]) == \
                (g["pull_requests"], g["commits"], g["lines"], g["accepted"], g["rejected"]), (dim, r)
            now, was = oracle.figures(0, dim, key), oracle.figures(1, dim, key)
            for name in now:
                assert _close(r[name], now[name]) and _close(r["previous_" + name], was[name]), (dim, r, name)
        # The rows add up to the totals; by spend, highest first.
        assert _close(sum(r["cost"] for r in rows), total["cost"])
        assert sum(r["pull_requests"] for r in rows) == total["pull_requests"]
        assert [r["cost"] for r in rows] == sorted((r["cost"] for r in rows), reverse=True)
    # Only the captured team worked in the previous period: the others' previous figures are unknown.
    teams = {r["team"]: r for r in api(client, "value_by_team", *WINDOW)["rows"]}
    assert teams["platform"]["previous_cost_per_pull_request"] is not None
    assert teams["payments"]["previous_acceptance_pct"] is None and teams["payments"]["commits"] == 0
    assert teams["payments"]["cost_per_commit"] is None  # no commits: unknown, never $0


def test_figures_per_team_over_whole_days(client, oracle):
    """Over a range of whole UTC days (read from the daily rollups by attribution, the hours and
    minutes around them from their hourly and per-minute twins, the partial minutes raw), each
    dimension's spend and counts are those of both periods together."""
    window = (datetime(2026, 12, 4, 22, 30, 30, tzinfo=UTC), datetime(2026, 12, 7, 0, 0, 30, tzinfo=UTC))
    for dim in DIMENSIONS:
        want: dict = defaultdict(_empty)
        for (_, by, key), g in oracle.keys.items():
            if by == dim:
                w = want[key]
                w["cost"] = g["cost"] if w["cost"] is None else w["cost"] + (g["cost"] or 0.0)
                for m in ("pull_requests", "commits", "lines", "accepted", "rejected"):
                    w[m] += g[m]
        body = api(client, f"value_by_{dim}", *window)
        assert {"llm_usage_by_attribution_daily", "llm_metric_usage_by_attribution_daily",
                "productivity_by_attribution_daily"} <= set(body["meta"]["relations"]), body["meta"]
        rows = {r[dim] if r["attributed"] else None: r for r in body["rows"]}
        assert set(rows) == set(want) and len(want) == 3, (dim, rows.keys())
        for key, g in want.items():
            r = rows[key]
            assert _close(r["cost"], g["cost"]) and r["unpriced_tokens"] == 0, (dim, r)
            assert (r["pull_requests"], r["commits"], r["lines_added"] + r["lines_removed"],
                    r["edits_accepted"], r["edits_rejected"]) == \
                (g["pull_requests"], g["commits"], g["lines"], g["accepted"], g["rejected"]), (dim, r)


def test_a_groups_rule_counts_the_teams_work_as_its_spend(client, conn, oracle):
    """A group without members whose rule maps a team: under its filter the Value figures are
    that team's, the counts as well as the spend (both datasets are attributed)."""
    conn.execute("INSERT INTO groups (id, name) VALUES ('pay', 'Payments')")
    conn.execute("INSERT INTO attribution_groups (dimension, value, group_id) VALUES ('team', 'payments', 'pay')")
    g = oracle.keys[(0, "team", "payments")]
    assert g["lines"] and g["accepted"] + g["rejected"]
    spend = api(client, "value_spend", *WINDOW, group="pay")["rows"][0]
    assert _close(spend["value"], g["cost"])
    kloc = api(client, "value_cost_per_kloc", *WINDOW, group="pay")["rows"][0]
    assert kloc["lines"] == g["lines"] and _close(kloc["value"], oracle.figures(0, "team", "payments")["cost_per_kloc"])
    rate = api(client, "value_acceptance_pct", *WINDOW, group="pay")["rows"][0]
    assert _close(rate["value"], oracle.figures(0, "team", "payments")["acceptance_pct"])


# Two days ending with the window: 5 December whole (read from the daily twins), both periods' runs in it.
DAYS = (WINDOW[1] - timedelta(days=2), WINDOW[1])


def _both(oracle: Oracle, by: str, key) -> dict:
    """The spend and counts of a key over both periods (what DAYS holds)."""
    g = _empty()
    for period in (0, 1):
        for k, v in oracle.keys.get((period, by, key), _empty()).items():
            g[k] = v if g[k] is None else g[k] + (v or 0)
    return g


def test_the_spend_is_read_from_the_agents_rollups(client, oracle):
    """The figures read the productivity agents' spend from the rollups by agent (the totals, per
    model) and by agent and user (per user, under a user filter), their daily twins for whole
    days, never the full hourly aggregate of every key; what they give is the oracle's."""
    wide = {"llm_usage_hourly", "llm_metric_usage_hourly", "llm_usage_attributed_hourly",
            "llm_metric_usage_attributed_hourly"}

    def reading(metric: str, rollup: str, **filters) -> list[dict]:
        body = api(client, metric, *DAYS, **filters)
        relations = set(body["meta"]["relations"])
        assert {f"{p}_{rollup}_{w}" for p in ("llm_usage", "llm_metric_usage") for w in ("daily", "hourly")} \
            <= relations and not relations & wide, (metric, relations)
        return body["rows"]

    total = _both(oracle, "total", None)
    assert total["pull_requests"] == 3
    for metric in ("value_cost_per_pull_request", "value_spend"):
        row = reading(metric, "by_agent")[0]
        assert _close(row["cost"] if "cost" in row else row["value"], total["cost"]), (metric, row)
    row = reading("value_cost_per_pull_request", "by_agent")[0]
    assert row["pull_requests"] == 3 and _close(row["value"], total["cost"] / 3)
    users = reading("value_by_user", "by_agent_user")
    assert {r["user_id"] for r in users} == {k for (_, by, k) in oracle.keys if by == "user"}
    for r in users:
        g = _both(oracle, "user", r["user_id"])
        assert _close(r["cost"], g["cost"]) and (r["pull_requests"], r["commits"]) == \
            (g["pull_requests"], g["commits"]), (r, g)
        spend = reading("value_spend", "by_agent_user", user=r["user_id"])[0]
        assert _close(spend["value"], g["cost"]), (spend, g)
    models = reading("value_by_model", "by_agent")
    assert {r["model"] for r in models} == {k for (_, by, k) in oracle.keys if by == "model"} - {"unknown"}
    for r in models:
        g = _both(oracle, "model", r["model"])
        assert _close(r["cost"], g["cost"]) and r["lines_added"] + r["lines_removed"] == g["lines"], (r, g)
        assert _close(r["cost_per_kloc"], g["cost"] / (g["lines"] / 1000)), (r, g)
