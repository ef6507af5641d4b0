"""Claude Code's productivity metrics (lines of code, commits, pull requests, edit decisions,
active time) ingest to exactly what the captured payloads hold, on both backends: the expected
counts are read out of the protobuf and OTLP/JSON here (the JSON with the json module, not the
receiver's codec), cumulative series differenced by the test itself."""
from __future__ import annotations

import json
from collections import defaultdict

import pytest

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from tests.ingest_support import FIXTURES, JSON, fixture_bytes, metrics_fixture, plain, post

# The metric a point counts toward, as the receiver is meant to store it (docs/ingest.md).
LINES, COMMITS, PRS = "claude_code.lines_of_code.count", "claude_code.commit.count", "claude_code.pull_request.count"
DECISIONS, ACTIVE = "claude_code.code_edit_tool.decision", "claude_code.active_time.total"
NAMES = (LINES, COMMITS, PRS, DECISIONS, ACTIVE)
EDITS = "claude-code-2.1.332-edits-commit-pr"


def _stored_as(name: str, attrs: dict) -> tuple:
    """(metric, model, language, tool_name, decided_by, activity) of a point."""
    if name == LINES:
        return ("lines_" + attrs["type"], attrs.get("model", "unknown"), "", "", "", "")
    if name == DECISIONS:
        metric = {"accept": "edits_accepted", "reject": "edits_rejected"}[attrs["decision"]]
        return (metric, "unknown", attrs["language"], attrs["tool_name"], attrs["source"], "")
    if name == ACTIVE:
        return ("active_seconds", "unknown", "", "", "", attrs["type"])
    return ({COMMITS: "commits", PRS: "pull_requests"}[name], "unknown", "", "", "", "")


def _pb_points(file: str):
    """(metric name, cumulative, series, attrs, time, value) of each productivity point."""
    for rm in metrics_fixture(file).resource_metrics:
        resource = tuple(sorted((kv.key, str(plain(kv.value))) for kv in rm.resource.attributes))
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name in NAMES:
                    cumulative = m.sum.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
                    for dp in m.sum.data_points:
                        attrs = {kv.key: plain(kv.value) for kv in dp.attributes}
                        series = (m.name, resource, tuple(sorted((k, str(v)) for k, v in attrs.items())))
                        yield m.name, cumulative, series, attrs, dp.time_unix_nano, dp.as_double


def _json_points(file: str):
    doc = json.loads((FIXTURES / file).read_text())
    for rm in doc["resourceMetrics"]:
        resource = tuple(sorted((a["key"], str(next(iter(a["value"].values())))) for a in rm["resource"]["attributes"]))
        for sm in rm["scopeMetrics"]:
            for m in sm["metrics"]:
                if m["name"] in NAMES:
                    cumulative = m["sum"]["aggregationTemporality"] == 2
                    for dp in m["sum"]["dataPoints"]:
                        attrs = {a["key"]: next(iter(a["value"].values())) for a in dp["attributes"]}
                        series = (m["name"], resource, tuple(sorted((k, str(v)) for k, v in attrs.items())))
                        value = dp.get("asDouble", dp.get("asInt"))
                        yield m["name"], cumulative, series, attrs, int(dp["timeUnixNano"]), float(value)


def _expected(points) -> dict[tuple, float]:
    """Per (session, user, stored-as key): delta points summed; a cumulative series' increments
    (a lower value is a reset: all of it is new)."""
    out: dict[tuple, float] = defaultdict(float)
    last: dict[tuple, float] = {}
    for name, cumulative, series, attrs, _t, value in sorted(points, key=lambda p: p[4]):
        if cumulative:
            before = last.get(series)
            delta = value if before is None or value < before else value - before
            last[series] = value
        else:
            delta = value
        out[(attrs["session.id"], attrs.get("user.email") or attrs["user.id"], *_stored_as(name, attrs))] += delta
    return dict(out)


def _stored(conn) -> dict[tuple, float]:
    rows = conn.execute(
        "SELECT session_id, user_id, metric, model, language, tool_name, decided_by, activity, sum(value)"
        " FROM productivity_points WHERE source = 'claude_code' AND agent_id = 'claude-code'"
        " GROUP BY 1, 2, 3, 4, 5, 6, 7, 8").fetchall()
    return {tuple(r[:8]): r[8] for r in rows}


def _close(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-9 for k in a)


PB_FILES = sorted(p.name for p in FIXTURES.glob("claude-code-2.1.332-*-metrics-*.pb"))
JSON_FILES = sorted(p.name for p in FIXTURES.glob("claude-code-2.1.332-*-metrics-*.json"))


def test_every_capture_stores_its_productivity_points(client, conn):
    points = []
    for name in PB_FILES:
        assert post(client, "/v1/metrics", fixture_bytes(name)).status_code == 200
        points += _pb_points(name)
    for name in JSON_FILES:
        assert post(client, "/v1/metrics", fixture_bytes(name), content_type=JSON).status_code == 200
        points += _json_points(name)
    expected = _expected(points)
    assert {k[2] for k in expected} == {"lines_added", "lines_removed", "commits", "pull_requests",
                                        "edits_accepted", "edits_rejected", "active_seconds"}
    assert _close(_stored(conn), expected)
    # Retried, the same requests store nothing more (delta points by content, cumulative by series and time).
    for name in PB_FILES:
        assert post(client, "/v1/metrics", fixture_bytes(name)).status_code == 200
    assert _close(_stored(conn), expected)


def test_edits_commit_pr_counts(client, conn):
    """The scenario's own account (README): Write + Edit accepted in Python, 10 lines added and 1
    removed by claude-sonnet-4-5, one commit, one pull request; the same over protobuf and JSON."""
    for variant, ctype in ((EDITS, None), (EDITS + "-httpjson", JSON)):
        ext = "json" if ctype else "pb"
        for i in (1, 2):
            body = fixture_bytes(f"{variant}-metrics-{i}.{ext}")
            assert (post(client, "/v1/metrics", body, content_type=ctype) if ctype else
                    post(client, "/v1/metrics", body)).status_code == 200
    rows = conn.execute("SELECT metric, model, language, sum(value), count(DISTINCT session_id)"
                        " FROM productivity_points WHERE metric <> 'active_seconds' GROUP BY 1, 2, 3 ORDER BY 1").fetchall()
    assert rows == [("commits", "unknown", "", 2.0, 2), ("edits_accepted", "unknown", "Python", 4.0, 2),
                    ("lines_added", "claude-sonnet-4-5", "", 20.0, 2), ("lines_removed", "claude-sonnet-4-5", "", 2.0, 2),
                    ("pull_requests", "unknown", "", 2.0, 2)]
    # Edit decisions name their tool: Write (the new file) and Edit, once per run.
    tools = conn.execute("SELECT tool_name, sum(value) FROM productivity_points WHERE metric = 'edits_accepted'"
                         " GROUP BY 1 ORDER BY 1").fetchall()
    assert tools == [("Edit", 2.0), ("Write", 2.0)]
    # Productivity points are no token or cost points: the sessions' token figures still come
    # from their token points (has_metrics) and nothing else changed in metric_points.
    assert conn.execute("SELECT count(*) FROM metric_points WHERE metric NOT IN ('tokens', 'cost')").fetchone() == (0,)


def metrics_fixture_from(body: bytes) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest.FromString(body)


def _later(body: bytes, seconds: int, more: float, restart: bool = False) -> bytes:
    """The capture's cumulative export as the next one would be, `seconds` later: each running
    total of active time grown by `more` (or, `restart`ed, a new start and `more` alone)."""
    req = metrics_fixture_from(body)
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for dp in m.sum.data_points:
                    dp.time_unix_nano += seconds * 10**9
                    if m.name == ACTIVE:
                        if restart:
                            dp.start_time_unix_nano = dp.time_unix_nano - 10**9
                        dp.as_double = more if restart else dp.as_double + more
    return req.SerializeToString()


def test_cumulative_active_time_is_differenced(client, conn):
    """The cumulative capture's running total of active time, followed by two later exports (one
    grown by 2.5 s, then one after a restart holding 1.25 s): stored, they add up to the running
    total plus 2.5 s plus the restarted 1.25 s, however often the requests are retried."""
    first = fixture_bytes("claude-code-2.1.332-cumulative-temporality-metrics-4.pb")
    points = list(_pb_points("claude-code-2.1.332-cumulative-temporality-metrics-4.pb"))
    active = [p for p in points if p[0] == ACTIVE]
    assert active and all(p[1] for p in active), "the capture holds cumulative active time"
    bodies = [first, _later(first, 60, 2.5), _later(first, 120, 1.25, restart=True)]
    for _ in range(2):
        for body in bodies:
            assert post(client, "/v1/metrics", body).status_code == 200
    total = conn.execute("SELECT sum(value) FROM productivity_points WHERE metric = 'active_seconds'").fetchone()[0]
    assert abs(total - (sum(p[5] for p in active) + len(active) * (2.5 + 1.25))) < 1e-9


@pytest.mark.parametrize("change,reason", [
    ({"type": "modified"}, "unknown type 'modified'"),
    ({"value": -3.0}, "is negative"),
    ({"value": float("nan")}, "is not finite"),
    ({"value": 1e12}, "implausibly large"),
])
def test_a_bad_point_is_rejected_alone(client, conn, change, reason):
    """A lines point whose type names nothing it counts, or whose value no count can be, is
    rejected with its reason (the sender is told, 200 with partial success); the rest of the
    request is stored."""
    req = metrics_fixture(f"{EDITS}-metrics-1.pb")
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == LINES:
                    dp = m.sum.data_points[0]  # the lines added
                    for kv in dp.attributes:
                        if kv.key == "type" and "type" in change:
                            kv.value.string_value = change["type"]
                    if "value" in change:
                        dp.as_double = change["value"]
    r = post(client, "/v1/metrics", req.SerializeToString())
    assert r.status_code == 200
    answer = ExportMetricsServiceResponse.FromString(r.data)
    assert answer.partial_success.rejected_data_points == 1
    assert reason in answer.partial_success.error_message
    stored = conn.execute("SELECT metric, sum(value) FROM productivity_points GROUP BY 1 ORDER BY 1").fetchall()
    assert stored == [("commits", 1.0), ("edits_accepted", 2.0), ("lines_removed", 1.0), ("pull_requests", 1.0)]


def test_a_user_known_only_by_productivity_points_is_in_the_directory(client, conn):
    """The capture's commit point alone (its token and cost points left out): its user and agent
    are recorded, as for any other fact."""
    req = metrics_fixture(f"{EDITS}-metrics-1.pb")
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            keep = [m for m in sm.metrics if m.name == COMMITS]
            del sm.metrics[:]
            sm.metrics.extend(keep)
    user = next(plain(kv.value) for rm in req.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
                for dp in m.sum.data_points for kv in dp.attributes if kv.key == "user.id")
    assert post(client, "/v1/metrics", req.SerializeToString()).status_code == 200
    assert conn.execute("SELECT metric, user_id FROM productivity_points").fetchall() == [("commits", user)]
    assert conn.execute("SELECT id FROM users").fetchall() == [(user,)]
    assert conn.execute("SELECT id FROM agents").fetchall() == [("claude-code",)]


def test_what_the_normaliser_writes_is_what_the_table_and_rollups_count():
    """One list of productivity metrics (sql/rollups/productivity_points.py): the normaliser writes exactly those, and
    the table's CHECK admits exactly those."""
    import re
    from pathlib import Path

    from agent_analytics.ingest.normalise_productivity import METRICS
    from agent_analytics.sql.rollups import PRODUCTIVITY_METRICS

    written = {m for _, names in METRICS.values() for m in names.values()}
    assert written == set(PRODUCTIVITY_METRICS)
    migration = (Path(__file__).parents[1] / "sql" / "migrations" / "0015_productivity_points.sql").read_text()
    check = re.search(r"metric\s+text NOT NULL CHECK \(metric IN \(([^)]*)\)\)", migration)
    assert check and set(re.findall(r"'(\w+)'", check.group(1))) == set(PRODUCTIVITY_METRICS)
