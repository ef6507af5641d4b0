"""The contract between the generated dashboards and the running service.

The service runs on a real port (waitress, as in production) against the test database of each
backend; the demo command fills it through the OTLP endpoint and the directory API with the
OpenTelemetry SDK's exporters. Then every panel of every generated dashboard has its query
rendered the way Grafana renders it - variables at All, the last 30 days, the browser's time
zone - in each plugin's request shape:
- Infinity: the panel's URL with Grafana's macros expanded (`${__from}`, `${__to}`,
  `${__timezone}`, `${var:queryparam}` of a custom all value), GET with the data source's header;
- JSON plugin: POST /grafana/query with Grafana's request body (range with raw, scopedVars with
  every dashboard variable, targets with their code-mode payload interpolated).
Every answer must be non-empty and typed as the panel expects, and every field the panel refers
to (overrides, x field, data links, transformations) must be in it. Every variable query of every
dashboard must answer options.
"""
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
import requests

pytest.importorskip("grafana_foundation_sdk")
# The query faces (datasource/) and the receiver (ingest/) are other areas' work: without them
# there is nothing to test the contract against.
pytest.importorskip("agent_analytics.datasource.json_api")
pytest.importorskip("agent_analytics.datasource.grafana_face")
pytest.importorskip("agent_analytics.ingest.http")

from agent_analytics import demo, demo_productivity  # noqa: E402
from agent_analytics.dashboards.tabs import DASHBOARDS, UIDS  # noqa: E402
from agent_analytics.dashboards.variants import INFINITY, JSON, VARIANTS  # noqa: E402
from agent_analytics.datasource import catalog  # noqa: E402
from tests import grafana_js_support as js  # noqa: E402
from tests import grafana_model  # noqa: E402
from agent_analytics.config import Config  # noqa: E402
from tests.harness_support import (BACKENDS, INGEST_TOKEN, LLM_TOKEN, QUERY_TOKEN, backends_ran,  # noqa: E402
                                   migrated_database, refresh_aggregates)
from tests.dashboards_support import load, metric_of  # noqa: E402

BROWSER_ZONE = "Europe/Paris"  # what ${__timezone} gives for a dashboard in browser time
AUTH = {"Authorization": f"Bearer {LLM_TOKEN}"}  # the provisioned token has the llm-analytics permission
ALL = "$__all"


class Server:
    """The app on a real HTTP port (waitress, as in production), in a thread."""

    def __init__(self, app) -> None:
        from waitress.server import create_server

        from agent_analytics.cluster import free_port

        self.port = free_port()
        self.server = create_server(app, host="127.0.0.1", port=self.port, map={}, threads=6)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self._stopping = threading.Event()

    def _run(self) -> None:
        try:
            self.server.run()
        except (OSError, ValueError):
            # Closing the sockets under the poll loop ends it with an error: expected on stop.
            if not self._stopping.is_set():
                raise

    def __enter__(self) -> "Server":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        for channel in list(self.server._map.values()):
            channel.close()
        self.server.close()
        self.thread.join(timeout=5)


# --- rendering queries as Grafana does ---------------------------------------------------------

def _variables(d: dict) -> dict[str, dict]:
    return {v["name"]: v for v in d["templating"]["list"]}


def _current(var: dict, overrides: dict[str, str]) -> str:
    if var["name"] in overrides:
        return overrides[var["name"]]
    return var["current"]["value"]


def _queryparam(name: str, value: str, var: dict) -> str:
    """Grafana's `${var:queryparam}`: `var-name=value` per value; for a custom all value Grafana
    writes the text "All" (scenes' CustomAllValue)."""
    if value == ALL and var.get("allValue"):
        value = "All"
    return f"var-{name}={quote(value, safe='')}"


def url_params(values: dict[str, str]) -> str:
    """@grafana/data urlUtil.toUrlParams: each key and value through encodeURIComponentAsAngularJS
    (encodeURIComponent, then @ : $ , ; left as they are)."""
    def enc(v: str) -> str:
        out = quote(v, safe="-_.!~*'()")
        for code, ch in (("%40", "@"), ("%3A", ":"), ("%24", "$"), ("%2C", ","), ("%3B", ";")):
            out = out.replace(code, ch)
        return re.sub(r"[!'()*]", lambda m: "%" + format(ord(m.group(0)), "X"), out)

    return "&".join(f"{enc(k)}={enc(v)}" for k, v in values.items())


def url_time_range(raw_from: str, raw_to: str, dashboard_zone: str = "browser") -> str:
    """Scenes' ${__url_time_range} (UrlTimeRangeMacro): the dashboard's raw range and zone."""
    return url_params({"from": raw_from, "to": raw_to, "timezone": dashboard_zone})


def render_infinity_url(url: str, d: dict, frm: int, to: int, overrides: dict[str, str],
                        zone: str = BROWSER_ZONE, time_range: str | None = None) -> str:
    """`time_range`: what ${__url_time_range} becomes; by default the absolute range from..to, as
    Scenes writes it (ISO strings)."""
    variables = _variables(d)
    if time_range is None:
        time_range = url_time_range(iso_z(datetime.fromtimestamp(frm / 1000, timezone.utc)),
                                    iso_z(datetime.fromtimestamp(to / 1000, timezone.utc)))

    def macro(m: re.Match) -> str:
        name, fmt = m.group(1), m.group(2)
        if name == "__from":
            return str(frm)
        if name == "__to":
            return str(to)
        if name == "__timezone":
            return zone
        if name == "__url_time_range":
            return time_range
        var = variables[name]
        value = _current(var, overrides)
        if fmt == "queryparam":
            return _queryparam(name, value, var)
        assert fmt is None, f"unexpected format {fmt} in {url}"
        return value

    rendered = re.sub(r"\$\{(\w+)(?::(\w+))?\}", macro, url)
    assert "${" not in rendered, rendered
    return rendered


def render_json_request(panel: dict, d: dict, frm: datetime, to: datetime, overrides: dict[str, str],
                        raw: dict[str, str] | None = None, zone: str = BROWSER_ZONE) -> dict:
    """The body the JSON plugin POSTs to /query for one panel (`raw`: the picker's expressions)."""
    variables = _variables(d)
    scoped = {name: {"text": "All" if _current(v, overrides) == ALL else _current(v, overrides),
                     "value": _current(v, overrides)} for name, v in variables.items()}
    scoped.update({"__interval": {"text": "1h", "value": "1h"}, "__interval_ms": {"text": "3600000",
                                                                               "value": 3600000}})

    def interpolate_code_payload(payload: str) -> dict:
        """The plugin's code mode: each `$var` becomes its JSON-formatted value, with the quotes
        of a string value dropped (it sits inside the payload's own quotes), then JSON.parse."""
        def macro(m: re.Match) -> str:
            name = m.group(1) or m.group(2)
            value = zone if name == "__timezone" else _current(variables[name], overrides)
            return value if isinstance(value, str) else json.dumps(value)

        return json.loads(re.sub(r"\$\{(\w+)\}|\$(\w+)", macro, payload))

    targets = []
    for t in panel["targets"]:
        t = dict(t)
        assert t["editorMode"] == "code"
        t["payload"] = interpolate_code_payload(t["payload"])
        targets.append(t)
    iso = lambda x: x.isoformat(timespec="milliseconds").replace("+00:00", "Z")  # noqa: E731
    raw = raw or {"from": "now-30d", "to": "now"}
    return {
        "app": "dashboard", "requestId": "SQR100", "timezone": "browser", "panelId": panel.get("id", 1),
        "dashboardUID": d["uid"], "range": {"from": iso(frm), "to": iso(to), "raw": raw},
        "rangeRaw": raw, "interval": "1h", "intervalMs": 3_600_000,
        "maxDataPoints": 1200, "targets": targets, "scopedVars": scoped, "adhocFilters": [], "filters": [],
        "startTime": int(to.timestamp() * 1000),
    }


# --- checking answers --------------------------------------------------------------------------

_PY_TYPES = {"number": (int, float), "time": (int,), "string": (str,), "boolean": (bool,)}
_INFINITY_PY = {"number": (int, float), "timestamp_epoch": (int,), "string": (str,), "boolean": (bool,)}


def _panel_field_refs(panel: dict) -> set[str]:
    """Field names a panel refers to: overrides by name, x field, data link and transformation fields."""
    refs = set()
    for o in panel.get("fieldConfig", {}).get("overrides", []):
        if o["matcher"]["id"] == "byName":
            refs.add(o["matcher"]["options"])
    if panel.get("options", {}).get("xField"):
        refs.add(panel["options"]["xField"])
    text = json.dumps(panel)
    refs |= set(re.findall(r'__data\.fields\[\\"([^\\]+)\\"\]', text))
    refs |= set(re.findall(r"__data\.fields\.(\w+)", text))
    for tr in panel.get("transformations", []):
        for f in tr["options"].get("filters", []):
            refs.add(f["fieldName"])
        for c in tr["options"].get("conversions", []):
            refs.add(c["targetField"])
    return refs


def _may_be_null(column: str, may_be_null: set[str]) -> bool:
    """A Value figure's previous period (previous_*) is null in every row of the demo: its 30 days
    have no 30 days before them."""
    return column in may_be_null or column.startswith("previous_")


def rightly_null(where: str, metric_id: str, rows: list[dict], problems: list[str]) -> set[str]:
    """The columns that may be null in every row of an answer: no previous spend, no description
    recorded, no budget reached (none can be in the first hour of a Monday the 1st, when no period
    has spend yet). A budget's reached_on is checked against its spend and amount row by row."""
    out = {"previous", "change_pct", "policy_description"}
    if metric_id == "llm_budgets":
        reached = [r["spend"] is not None and r["spend"] >= r["amount"] for r in rows]
        if [r["reached_on"] is not None for r in rows] != reached:
            problems.append(f"{where}: reached_on is set where spend < amount or missing where spend >= amount")
        if not any(reached):
            out.add("reached_on")
    return out


def check_infinity_answer(where: str, panel: dict, target: dict, body: dict, problems: list[str]) -> None:
    m = catalog.BY_ID[metric_of("infinity", target)]
    rows = body.get("rows")
    if not isinstance(rows, list) or not rows:
        problems.append(f"{where}: no rows")
        return
    names = set()
    may_be_null = rightly_null(where, m.id, rows, problems)
    for col in target["columns"]:
        names.add(col["text"])
        values = [r.get(col["selector"]) for r in rows]
        if all(v is None for v in values) and not _may_be_null(col["selector"], may_be_null):
            problems.append(f"{where}: column {col['selector']} is null in every row")
        bad = [v for v in values if v is not None and not isinstance(v, _INFINITY_PY[col["type"]])]
        if bad:
            problems.append(f"{where}: column {col['selector']} ({col['type']}) has {bad[:3]}")
        if any(col["selector"] not in r for r in rows):
            problems.append(f"{where}: column {col['selector']} missing from rows")
    if m.kind == "timeseries" and len(rows) < 2:
        problems.append(f"{where}: a 30-day series with {len(rows)} bucket(s)")
    missing = _panel_field_refs(panel) - names
    if missing:
        problems.append(f"{where}: the panel refers to fields the answer lacks: {sorted(missing)}")


def check_json_answer(where: str, panel: dict, body: list, problems: list[str]) -> None:
    if not isinstance(body, list) or len(body) != len(panel["targets"]):
        problems.append(f"{where}: expected one frame per target, got {body!r:.200}")
        return
    names = set()
    for frame, target in zip(body, panel["targets"]):
        m = catalog.BY_ID[target["target"]]
        if frame.get("refId") != target["refId"]:
            problems.append(f"{where}: refId {frame.get('refId')} != {target['refId']}")
        fields = {f["name"]: f for f in frame.get("fields", [])}
        if [f["name"] for f in frame.get("fields", [])] != [c.name for c in m.columns]:
            problems.append(f"{where}: fields {list(fields)} are not the catalog's columns")
            continue
        lengths = {len(f["values"]) for f in fields.values()}
        if len(lengths) != 1 or lengths == {0}:
            problems.append(f"{where}: empty or ragged frame ({lengths})")
            continue
        may_be_null = rightly_null(where, m.id, [dict(zip(fields, values))
                                                 for values in zip(*(f["values"] for f in fields.values()))],
                                   problems)
        for c in m.columns:
            f = fields[c.name]
            names |= {c.name, f.get("config", {}).get("displayName", c.name)}
            if f["type"] != c.type:
                problems.append(f"{where}: field {c.name} typed {f['type']}, catalog says {c.type}")
            bad = [v for v in f["values"] if v is not None and not isinstance(v, _PY_TYPES[c.type])]
            if bad:
                problems.append(f"{where}: field {c.name} ({c.type}) has {bad[:3]}")
            if all(v is None for v in f["values"]) and not _may_be_null(c.name, may_be_null):
                problems.append(f"{where}: field {c.name} is null in every row")
        if m.kind == "timeseries":
            if m.columns[-1].name == "previous" and fields["previous"]["config"].get("displayName") != "Previous period":
                problems.append(f"{where}: the previous series is not named 'Previous period'")
    missing = _panel_field_refs(panel) - names
    if missing:
        problems.append(f"{where}: the panel refers to fields the answer lacks: {sorted(missing)}")


# --- the test ----------------------------------------------------------------------------------

def _send_a_rejected_record(url: str) -> None:
    """The demo sends only good records: one bad span, so that the Telemetry dashboard's
    rejection reasons have a row to show."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add()
    span.name, span.start_time_unix_nano = "tools/call lookup", int(datetime.now(timezone.utc).timestamp() * 1e9)
    for key, value in (("mcp.method.name", "tools/call"), ("mcp.server.name", "crm"),
                       ("mcp.gateway.decision", "block")):  # blocked, without the policy that blocked it
        kv = span.attributes.add()
        kv.key, kv.value.string_value = key, value
    r = requests.post(f"{url}/v1/traces", data=req.SerializeToString(), timeout=30,
                      headers={"Authorization": f"Bearer {INGEST_TOKEN}", "Content-Type": "application/x-protobuf"})
    assert r.status_code == 200 and "policy.id" in r.text


@dataclass(frozen=True)
class _Demo:
    server: Server
    plan: demo.Plan
    url: str      # its database, of its own (never reset)
    app: Any


@pytest.fixture(scope="module", params=BACKENDS)
def _demo(request, pg_cluster):
    """The service on a real port, filled by the demo command's code path: once per backend for
    this module's tests, which only read it (30 days of the demo took 4-6 s to send each time),
    in a database of its own that no reset touches."""
    from agent_analytics.app import create_app

    backends_ran.add(request.param)
    url = migrated_database(pg_cluster, request.param, prefix="aa_dashboards_demo")
    application = create_app(Config(database_url=url, ingest_tokens=(INGEST_TOKEN,), query_tokens=(QUERY_TOKEN,),
                                    llm_query_tokens=(LLM_TOKEN,), db_timeout_s=5, db_pool_size=4,
                                    retention_days=0, compress_after_days=0), role="all")
    try:
        with Server(application) as server:
            p = demo.plan(days=30, users=6, seed=3)
            results = demo.send(p, server.url, INGEST_TOKEN, say=lambda s: None)
            assert not any(k.endswith("_failed") for k in results)
            _send_a_rejected_record(server.url)
            with psycopg.connect(url, autocommit=True) as c:
                refresh_aggregates(c)
            yield _Demo(server, p, url, application)
    finally:
        application.extensions["aa_db"].close()


@pytest.fixture(scope="module")
def demo_service(_demo):
    return _demo.server, _demo.plan


@pytest.fixture
def demo_conn(_demo):
    """An autocommit connection to the demo's database."""
    with psycopg.connect(_demo.url, autocommit=True) as c:
        yield c


def test_the_budgets_panel_answers_in_the_first_hour_of_a_monday_the_first(app, db_url):
    """No period has spend yet at 00:30 UTC on Monday 1 June 2026: no budget is reached, and the
    Budgets panel (both variants) is still a valid answer, not a dashboard failing on a date."""
    now = datetime(2026, 6, 1, 0, 30, tzinfo=timezone.utc)
    with Server(app) as server:
        p = demo.plan(days=8, users=6, seed=3, now=now)
        assert not any(k.endswith("_failed") for k in demo.send(p, server.url, INGEST_TOKEN, say=lambda s: None))
        with psycopg.connect(db_url, autocommit=True) as c:
            refresh_aggregates(c)
        start = now - timedelta(days=30)
        frm, to = int(start.timestamp() * 1000), int(now.timestamp() * 1000)
        problems: list[str] = []
        checked = 0
        for variant in VARIANTS:
            d = load(variant.key, "llm-usage")
            for panel in d["panels"]:
                if panel["type"] in ("row", "text") or "llm_budgets" not in json.dumps(panel.get("targets")):
                    continue
                where = f"{variant.key}/llm-usage/{panel['title']}"
                if variant is INFINITY:
                    for t in panel["targets"]:
                        r = requests.get(server.url + render_infinity_url(t["url"], d, frm, to, {}), headers=AUTH,
                                         timeout=60)
                        assert r.status_code == 200, r.text
                        rows = r.json()["rows"]
                        assert rows and all(row["reached_on"] is None and row["spend"] == 0 for row in rows)
                        check_infinity_answer(where, panel, t, r.json(), problems)
                else:
                    r = requests.post(f"{server.url}/grafana/query", json=render_json_request(panel, d, start, now, {}),
                                      headers=AUTH, timeout=60)
                    assert r.status_code == 200, r.text
                    check_json_answer(where, panel, r.json(), problems)
                checked += 1
        assert checked == 2 and not problems, problems


def test_demo_data_arrives_through_the_real_path(demo_service, demo_conn):
    """The demo's numbers, counted independently from its plan, are what the database holds."""
    _, p = demo_service
    conn = demo_conn
    counts = p.counts()
    assert conn.execute("SELECT count(*) FROM llm_requests").fetchone()[0] == counts["llm_requests"]
    assert conn.execute("SELECT count(*) FROM tool_calls").fetchone()[0] == counts["tool_calls"]
    assert conn.execute("SELECT count(*) FROM tool_calls WHERE outcome = 'blocked'").fetchone()[0] == \
        counts["blocked_calls"]
    expected_tokens = sum(r.input_tokens + r.output_tokens + r.cache_read_tokens + r.cache_write_tokens
                          for s in p.sessions for r in s.requests)
    assert conn.execute("SELECT sum(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens)"
                        " FROM llm_requests").fetchone()[0] == expected_tokens
    claude_tokens = sum(r.input_tokens + r.output_tokens + r.cache_read_tokens + r.cache_write_tokens
                        for s in p.sessions if s.agent == "claude-code" for r in s.requests)
    assert conn.execute("SELECT sum(value) FROM metric_points WHERE metric = 'tokens'").fetchone()[0] == claude_tokens
    assert conn.execute("SELECT count(DISTINCT session_id) FROM llm_requests").fetchone()[0] == len(p.sessions)
    members = {(g, u) for g, u in conn.execute("SELECT group_id, user_id FROM group_members")}
    assert members == {(u.group, u.id) for u in p.users}
    assert conn.execute("SELECT count(*) FROM agent_tags").fetchone()[0] == 4
    assert {r[0] for r in conn.execute("SELECT tag FROM mcp_server_tags UNION SELECT tag FROM tool_tags")} >= {
        "production", "destructive", "external"}
    policies = dict(conn.execute("SELECT id, name FROM policies WHERE id LIKE 'pol-%'").fetchall())
    assert policies == {k: v[0] for k, v in demo.POLICIES.items()}
    # What each Claude Code session bought, as the plan says (demo_productivity.work).
    work = [demo_productivity.work(p.seed, s) for s in p.sessions if s.agent == "claude-code"]
    stored = dict(conn.execute("SELECT metric, sum(value) FROM productivity_points GROUP BY 1").fetchall())
    assert stored == pytest.approx({
        "lines_added": sum(w.lines_added for w in work), "lines_removed": sum(w.lines_removed for w in work),
        "commits": sum(w.commits for w in work), "pull_requests": sum(w.pull_requests for w in work),
        "edits_accepted": sum(n for w in work for (d, *_), n in w.edits.items() if d == "accept"),
        "edits_rejected": sum(n for w in work for (d, *_), n in w.edits.items() if d == "reject"),
        "active_seconds": sum(w.active_seconds for w in work)})
    by_agent = dict(conn.execute("SELECT agent_id, count(*) FROM llm_requests GROUP BY 1").fetchall())
    assert by_agent == {a: sum(len(s.requests) for s in p.sessions if s.agent == a)
                        for a in {s.agent for s in p.sessions}}


def _session_with_activity(server: Server, frm: int, to: int) -> str:
    """A click on the first row of the Sessions table (ranked by cost): that row's session id."""
    r = requests.get(f"{server.url}/api/v1/query/sessions_table", headers=AUTH,
                     params={"from": frm, "to": to, "page_size": 1, "order_by": "cost"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["rows"][0]["session_id"]


def test_every_panel_and_variable_answers_as_the_dashboards_expect(demo_service):
    server, _ = demo_service
    now = datetime.now(timezone.utc)
    start = now - timedelta(days=30)
    frm, to = int(start.timestamp() * 1000), int(now.timestamp() * 1000)
    session = _session_with_activity(server, frm, to)
    problems: list[str] = []
    answered = 0
    for variant in VARIANTS:
        for name in DASHBOARDS:
            d = load(variant.key, name)
            # The drill-down opens for the clicked session; every other variable stays at All.
            overrides = {"session": session} if name == "session-timeline" else {}
            for panel in d["panels"]:
                if panel["type"] in ("row", "text"):
                    continue
                where = f"{variant.key}/{name}/{panel['title']}"
                if variant is INFINITY:
                    for t in panel["targets"]:
                        url = server.url + render_infinity_url(t["url"], d, frm, to, overrides)
                        r = requests.get(url, headers=AUTH, timeout=60)
                        if r.status_code != 200:
                            problems.append(f"{where}: {r.status_code} {r.text[:300]}")
                            continue
                        check_infinity_answer(where, panel, t, r.json(), problems)
                        answered += 1
                else:
                    body = render_json_request(panel, d, start, now, overrides)
                    r = requests.post(f"{server.url}/grafana/query", json=body, headers=AUTH, timeout=60)
                    if r.status_code != 200:
                        problems.append(f"{where}: {r.status_code} {r.text[:300]}")
                        continue
                    check_json_answer(where, panel, r.json(), problems)
                    answered += 1
            for var in d["templating"]["list"]:
                if var["type"] != "query":
                    continue
                where = f"{variant.key}/{name}/variable {var['name']}"
                if variant is JSON:
                    q = var["query"]
                    r = requests.post(f"{server.url}/grafana/variable", headers=AUTH, timeout=30, json={
                        "payload": {"target": q["query"]}, "range": {
                            "from": start.isoformat(), "to": now.isoformat(), "raw": {"from": "now-30d", "to": "now"}}})
                    options = r.json() if r.status_code == 200 else []
                    ok = bool(options) and all(isinstance(o.get("__text"), str) and isinstance(o.get("__value"), str)
                                               for o in options)
                else:
                    q = var["query"]["infinityQuery"]
                    url = server.url + render_infinity_url(q["url"], d, frm, to, {})
                    r = requests.get(url, headers=AUTH, timeout=30)
                    rows = r.json().get("rows", []) if r.status_code == 200 else []
                    ok = bool(rows) and all(isinstance(row.get(c["selector"]), str)
                                            for row in rows for c in q["columns"])
                    options = [{"__value": row.get("value")} for row in rows]
                if not ok:
                    problems.append(f"{where}: {r.status_code} {r.text[:200]}")
                if var["name"] == "session" and not any(o.get("__value") == session for o in options):
                    problems.append(f"{where}: the clicked session {session} is not among the options")
    assert not problems, "\n".join(problems)
    assert answered == sum(len([p for p in load(v.key, n)["panels"] if p["type"] not in ("row", "text")])
                           for v in VARIANTS for n in DASHBOARDS)


def test_the_sessions_data_link_opens_that_session(demo_service):
    """The link Grafana builds from a clicked row leads to the Session timeline of that session,
    and that dashboard answers for it."""
    server, _ = demo_service
    now = datetime.now(timezone.utc)
    frm, to = int((now - timedelta(days=30)).timestamp() * 1000), int(now.timestamp() * 1000)
    session = _session_with_activity(server, frm, to)
    for variant in VARIANTS:
        llm = load(variant.key, "llm-usage")
        table = next(p for p in llm["panels"] if "sessions_table" in json.dumps(p.get("targets")))
        link = next(prop["value"][0] for o in table["fieldConfig"]["overrides"] for prop in o["properties"]
                    if prop["id"] == "links")
        field = re.search(r'__data\.fields\["([^"]+)"\]', link["url"]).group(1)
        assert field == (variant.field_name(next(c for c in catalog.BY_ID["sessions_table"].columns
                                                 if c.name == "session_id")))
        url = (link["url"].replace('${__data.fields["' + field + '"]}', session)
               .replace("${__url_time_range}", f"from={frm}&to={to}")
               .replace("${__all_variables}", "&".join(f"var-{v}=$__all" for v in _variables(llm) if v != "order_by")))
        assert url.startswith(f"/d/{variant.uid(UIDS['session'])}/")
        assert f"var-session={session}" in url
        timeline = load(variant.key, "session-timeline")
        totals = next(p for p in timeline["panels"] if "session_totals" in json.dumps(p.get("targets")))
        if variant is INFINITY:
            r = requests.get(server.url + render_infinity_url(totals["targets"][0]["url"], timeline, frm, to,
                                                              {"session": session}), headers=AUTH, timeout=30)
            assert r.status_code == 200 and r.json()["rows"][0]["session_id"] == session
        else:
            body = render_json_request(totals, timeline, now - timedelta(days=30), now, {"session": session})
            r = requests.post(f"{server.url}/grafana/query", json=body, headers=AUTH, timeout=30)
            assert r.status_code == 200, r.text
            fields = {f["name"]: f["values"] for f in r.json()[0]["fields"]}
            assert fields["session_id"] == [session]


def test_the_alert_rule_query_answers_on_the_backend_macros(demo_service):
    """The surge rule's Infinity queries, with Grafana's backend macros for the last hour and
    for a window around the demo's incident two days ago."""
    import yaml

    from agent_analytics.dashboards.generate import REPO_ROOT

    server, p = demo_service
    rule = yaml.safe_load((REPO_ROOT / "provisioning/alerting/agent-analytics.yaml").read_text())["groups"][0]["rules"][0]
    incident_start = p.now - timedelta(days=2, hours=3)
    windows = [(datetime.now(timezone.utc) - timedelta(hours=1), datetime.now(timezone.utc)),
               (incident_start, incident_start + timedelta(hours=1))]
    values = []
    for frm, to in windows:
        got = {}
        for q in rule["data"][:2]:
            m = q["model"]
            url = (m["url"].replace("${__timeFrom}", str(int(frm.timestamp() * 1000)))
                   .replace("${__timeTo}", str(int(to.timestamp() * 1000))))
            r = requests.get(server.url + url, headers=AUTH, timeout=30)
            assert r.status_code == 200, r.text
            rows = r.json()["rows"]
            assert len(rows) == 1
            got[q["refId"]] = rows[0][m["columns"][0]["selector"]]
        values.append(got)
    # The incident hour: 45 blocks on one instance, against an hour before with few or none.
    a, b = values[1]["A"], values[1]["B"]
    assert a >= 45 and a >= 2 * b


def test_the_example_prometheus_rules_use_the_service_counters(demo_service, _demo):
    """Every series and label the example rules select exists on the service's /metrics."""
    app = _demo.app
    import yaml
    from prometheus_client.parser import text_string_to_metric_families

    from agent_analytics.dashboards.generate import REPO_ROOT

    server, _ = demo_service
    requests.get(f"{server.url}/api/v1/query/mcp_tool_executions", headers=AUTH, timeout=30)
    r = requests.get(f"{server.url}/metrics", headers=AUTH, timeout=30)
    assert r.status_code == 200
    # Counters are exported as <name>_total; a labelled one without children yet has no samples,
    # so its label names come from the collector itself.
    labelnames = {getattr(c, "_name", None): set(getattr(c, "_labelnames", ()))
                  for c in app.extensions["aa_registry"]._collector_to_names}
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(r.text):
        suffix = "_total" if family.type == "counter" else ""
        samples[family.name + suffix] = labelnames.get(family.name, set())
    doc = yaml.safe_load((REPO_ROOT / "provisioning/prometheus/agent-analytics.rules.yml").read_text())
    scrape = yaml.safe_load((REPO_ROOT / "provisioning/prometheus/prometheus.yml").read_text())
    assert scrape["rule_files"] == ["agent-analytics.rules.yml"]
    assert scrape["scrape_configs"][0]["authorization"]["type"] == "Bearer"
    rules = [rule for g in doc["groups"] for rule in g["rules"]]
    assert len(rules) >= 2
    for rule in rules:
        names = set(re.findall(r"\b(aa_[a-z_]+)", rule["expr"]))
        assert names, rule["alert"]
        for name in names:
            assert name in samples, f"{rule['alert']}: {name} is not exported"
        for labels in re.findall(r"by \(([^)]*)\)", rule["expr"]):
            for label in labels.split(","):
                assert any(label.strip() in samples[n] for n in names), (rule["alert"], label)
        for label in re.findall(r"\{(\w+)=", rule["expr"]):
            assert any(label in samples[n] for n in names), (rule["alert"], label)


def iso_z(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_headline_figures_equal_the_demo_plan(demo_service):
    """Through the dashboards' own queries (both plugins), the headline figures over a window
    that holds the whole demo equal what the demo plan says it sent."""
    server, p = demo_service
    start, end = p.now - timedelta(days=32), datetime.now(timezone.utc) + timedelta(minutes=5)
    frm, to = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    calls = [c for s in p.sessions for c in s.tool_calls]
    expected = {
        ("mcp-usage", "mcp_tool_executions"): sum(c.outcome != "blocked" for c in calls),
        ("security", "security_blocked_calls"): sum(c.outcome == "blocked" for c in calls),
        ("llm-usage", "llm_total_tokens"): sum(r.input_tokens + r.output_tokens + r.cache_read_tokens
                                               + r.cache_write_tokens for s in p.sessions for r in s.requests),
        ("mcp-usage", "mcp_active_users"): len({s.user.id for s in p.sessions if s.tool_calls
                                                and any(c.outcome != "blocked" for c in s.tool_calls)}),
    }
    for (name, metric_id), want in expected.items():
        for variant in VARIANTS:
            d = load(variant.key, name)
            panel = next(x for x in d["panels"] if metric_id in json.dumps(x.get("targets")))
            if variant is INFINITY:
                r = requests.get(server.url + render_infinity_url(panel["targets"][0]["url"], d, frm, to, {}),
                                 headers=AUTH, timeout=30)
                got = r.json()["rows"][0]["value"]
            else:
                r = requests.post(f"{server.url}/grafana/query", headers=AUTH, timeout=30,
                                  json=render_json_request(panel, d, start, end, {},
                                                           raw={"from": iso_z(start), "to": iso_z(end)}))
                got = next(f for f in r.json()[0]["fields"] if f["name"] == "value")["values"][0]
            assert got == want, (variant.key, metric_id, got, want)


def _panel_rows(server, name: str, metric_id: str, variant, start: datetime, end: datetime,
                overrides: dict[str, str]) -> list[dict]:
    """The rows a dashboard's panel of `metric_id` answers, through its own query."""
    d = load(variant.key, name)
    panel = next(x for x in d["panels"] if metric_id in json.dumps(x.get("targets")))
    frm, to = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    if variant is INFINITY:
        r = requests.get(server.url + render_infinity_url(panel["targets"][0]["url"], d, frm, to, overrides),
                         headers=AUTH, timeout=30)
        return r.json()["rows"]
    r = requests.post(f"{server.url}/grafana/query", headers=AUTH, timeout=30,
                      json=render_json_request(panel, d, start, end, overrides,
                                               raw={"from": iso_z(start), "to": iso_z(end)}))
    fields = r.json()[0]["fields"]
    return [dict(zip((f["name"] for f in fields), row)) for row in zip(*(f["values"] for f in fields))]


def test_the_attribution_tables_add_up_to_the_demo_plan(demo_service):
    """Executions, tokens and what Claude Code bought by team (the demo's users send team.id on
    events, metric points and gateway spans; some send none), and under the group whose rule maps
    a second team."""
    server, p = demo_service
    start, end = p.now - timedelta(days=32), datetime.now(timezone.utc) + timedelta(minutes=5)
    team = {u.id: u.resource.get("team.id", "(unattributed)") for u in p.users}
    assert "(unattributed)" in team.values() and len(set(team.values())) >= 3
    executions: dict[str, int] = {}
    tokens: dict[str, float] = {}
    for s in p.sessions:
        t = team[s.user.id]
        executions[t] = executions.get(t, 0) + sum(c.outcome != "blocked" for c in s.tool_calls)
        tokens[t] = tokens.get(t, 0) + sum(r.input_tokens + r.output_tokens + r.cache_read_tokens
                                           + r.cache_write_tokens for r in s.requests)
    rule = next(g for g in p.directory["groups"] if g["id"] == "platform")
    in_group = [s for s in p.sessions if s.user.group == "platform" or team[s.user.id] in rule["attribution"]["team"]]
    assert len(in_group) > sum(s.user.group == "platform" for s in p.sessions)  # the rule adds usage
    bought: dict[str, tuple[float, float]] = {}
    for s in p.sessions:
        if s.agent == "claude-code" and s.requests:
            w, t = demo_productivity.work(p.seed, s), team[s.user.id]
            commits, lines = bought.get(t, (0.0, 0.0))
            bought[t] = (commits + w.commits, lines + w.lines_added)
    assert len(bought) >= 3
    for variant in VARIANTS:
        rows = _panel_rows(server, "mcp-usage", "mcp_executions_by_team", variant, start, end, {})
        assert {r["team"]: r["executions"] for r in rows} == {k: v for k, v in executions.items() if v}, variant.key
        rows = _panel_rows(server, "llm-usage", "llm_cost_by_team", variant, start, end, {})
        assert {r["team"]: r["tokens"] for r in rows} == {k: v for k, v in tokens.items() if v}, variant.key
        rows = _panel_rows(server, "mcp-usage", "mcp_tool_executions", variant, start, end, {"group": "platform"})
        assert rows[0]["value"] == sum(c.outcome != "blocked" for s in in_group for c in s.tool_calls), variant.key
        # What Claude Code's sessions bought, by the team their points were sent with (Value).
        rows = _panel_rows(server, "value", "value_by_team", variant, start, end, {})
        assert {r["team"]: (r["commits"], r["lines_added"]) for r in rows} == bought, variant.key


def test_every_quick_range_of_the_picker_answers(demo_service):
    for zone in (BROWSER_ZONE, "America/New_York", "utc"):
        _check_quick_ranges(demo_service, zone)


def _check_quick_ranges(demo_service, zone: str) -> None:
    """Each preset of the date picker, resolved as the browser resolves it (in the dashboard's
    zone; `${__timezone}` is "utc" when a viewer picks UTC), charts through both plugins."""
    from zoneinfo import ZoneInfo

    from agent_analytics.dashboards.tabs import QUICK_RANGES
    from agent_analytics.datasource import timerange as tr

    server, _ = demo_service
    now = datetime.now(timezone.utc)
    tzinfo = ZoneInfo("UTC" if zone == "utc" else zone)
    for display, raw_from, raw_to in QUICK_RANGES:
        start, end = tr.resolve(raw_from, now, tzinfo), tr.resolve(raw_to, now, tzinfo)
        if end - start < timedelta(minutes=1):
            continue  # "Today" just after local midnight: nothing to chart yet
        for variant in VARIANTS:
            d = load(variant.key, "mcp-usage")
            panel = next(x for x in d["panels"] if "mcp_executions_over_time" in json.dumps(x.get("targets")))
            if variant is INFINITY:
                url = render_infinity_url(panel["targets"][0]["url"], d, int(start.timestamp() * 1000),
                                          int(end.timestamp() * 1000), {}, zone=zone)
                r = requests.get(server.url + url, headers=AUTH, timeout=30)
                assert r.status_code == 200, (display, r.text)
                rows = r.json()["rows"]
                times = [row["time"] for row in rows]
            else:
                body = render_json_request(panel, d, start, end, {}, raw={"from": raw_from, "to": raw_to}, zone=zone)
                r = requests.post(f"{server.url}/grafana/query", json=body, headers=AUTH, timeout=30)
                assert r.status_code == 200, (display, r.text)
                times = r.json()[0]["fields"][0]["values"]
            assert times and times == sorted(times), (zone, display)
            # Hourly buckets up to two days, daily beyond (the seed's rule).
            step = (times[1] - times[0]) if len(times) > 1 else None
            if step is not None:
                assert step in ((3_600_000,) if end - start <= timedelta(days=2) else
                                (86_400_000, 82_800_000, 90_000_000)), (display, step)


# --- what each panel shows: Infinity's parser and Grafana's transformations ------------------------

def _panel_answers(server: Server, session: str, start: datetime, end: datetime):
    """(variant, dashboard, panel, metric, fields) for every data panel's target: the fields the
    data source hands Grafana (Infinity: its backend parser's frame, modelled in tests/grafana_model;
    JSON plugin: the service's frame as sent)."""
    frm, to = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    for variant in VARIANTS:
        for name in DASHBOARDS:
            d = load(variant.key, name)
            overrides = {"session": session} if name == "session-timeline" else {}
            for panel in d["panels"]:
                if panel["type"] in ("row", "text"):
                    continue
                if variant is INFINITY:
                    for t in panel["targets"]:
                        url = server.url + render_infinity_url(t["url"], d, frm, to, overrides)
                        r = requests.get(grafana_model.infinity_request_url(url), headers=AUTH, timeout=60)
                        assert r.status_code == 200, r.text
                        yield (variant, name, panel, catalog.BY_ID[metric_of("infinity", t)], t, r.json(),
                               grafana_model.infinity_frame(t, r.json()))
                else:
                    r = requests.post(f"{server.url}/grafana/query", headers=AUTH, timeout=60,
                                      json=render_json_request(panel, d, start, end, overrides))
                    assert r.status_code == 200, r.text
                    for t, frame in zip(panel["targets"], r.json()):
                        yield (variant, name, panel, catalog.BY_ID[t["target"]], t, frame, frame["fields"])


def _displayed(panel_type: str, options: dict, fields: list[dict]) -> list[dict]:
    """The fields a panel shows: a stat panel those its reduce options select (a /regex/ on the
    field's name or display name, else the numeric fields), any other every field it does not hide."""
    if panel_type == "stat":
        pattern = (options.get("reduceOptions") or {}).get("fields") or ""
        if pattern.startswith("/") and pattern.endswith("/"):
            rx = re.compile(pattern[1:-1])
            return [f for f in fields if rx.search(f["name"]) or rx.search(f["displayName"])]
        return [f for f in fields if f["type"] == "number"]
    return [f for f in fields if not f["hidden"]]


def test_every_panel_shows_its_columns_in_the_declared_order_and_types(demo_service):
    """Infinity's backend parser sorts a frame's fields by name and converts each value to its
    column's declared type (tests/grafana_model.py, from the plugin's source); each panel must still
    show the catalog's columns in their order (its "Organize fields" transformation), booleans as
    booleans, and lose no value to a type conversion. Checked with a model of Grafana's organize
    transformation, then with Grafana's own (@grafana/data) where Node.js is available."""
    server, _ = demo_service
    now = datetime.now(timezone.utc)
    start = now - timedelta(days=30)
    session = _session_with_activity(server, int(start.timestamp() * 1000), int(now.timestamp() * 1000))
    problems: list[str] = []
    cases = []
    for variant, name, panel, m, target, answer, fields in _panel_answers(server, session, start, now):
        where = f"{variant.key}/{name}/{panel['title']}"
        want = [c.title or c.name for c in m.columns]
        shown = grafana_model.apply_order_transformations(fields, panel.get("transformations", []))
        got = [grafana_model.display_name(f) for f in shown]
        if got != want:
            problems.append(f"{where}: shows {got}, declared {want}")
        by_name = {grafana_model.display_name(f): f for f in fields}
        for c in m.columns:
            f = by_name.get(c.title or c.name)
            if f is None:
                continue
            if f["type"] != c.type:
                problems.append(f"{where}: {c.name} arrives as a {f['type']} field, declared {c.type}")
            if variant is INFINITY:
                sent = [row.get(c.name) for row in answer["rows"]]
                lost = [v for v, kept in zip(sent, f["values"]) if v is not None and kept is None]
                if lost:
                    problems.append(f"{where}: {c.name} loses {lost[:3]} to Infinity's {c.type} conversion")
        cases.append({"id": where, "variant": variant.key, "panel": f"{name}/{panel['title']}/{target['refId']}",
                      "want": [(c.title or c.name) if variant is INFINITY else c.name for c in m.columns],
                      "transformations": panel.get("transformations", []),
                      "panelType": panel["type"], "options": panel.get("options", {}),
                      "fieldConfig": panel.get("fieldConfig", {"defaults": {}, "overrides": []}),
                      "hidden": [c.title or c.name for c in m.columns
                                 if c.name.endswith("_id") and c.name != "session_id"],
                      "frames": [{"name": m.title, "fields": [{k: f[k] for k in ("name", "type", "values", "config")
                                                               if k in f} for f in fields]}]})
    assert not problems, "\n".join(problems)

    out, reason = js.try_run("organize.cjs", stdin=cases)
    if out is None:
        print(f"Grafana's own transformations and field display not run: {reason}")
        return
    shown: dict[str, dict[str, list]] = {}
    for case, result in zip(cases, out):
        assert result["id"] == case["id"]
        fields = result["frames"][0]["fields"]
        assert [f["name"] for f in fields] == case["want"], case["id"]
        if case["id"].split("/")[-1].startswith(("Top ", "Sessions", "Models")):
            # Tables hide the id columns (names are shown instead), and nothing else.
            assert [f["displayName"] for f in fields if f["hidden"]] == case["hidden"], case["id"]
        fc = case["fieldConfig"]
        mapped = {o["matcher"]["options"] for o in fc.get("overrides", [])
                  if any(p["id"] == "mappings" for p in o["properties"])}
        for f in fields:
            if f["type"] == "boolean" and f["name"] in mapped:
                # The badge's value mapping (keyed "true"/"false") applies to real booleans.
                assert set(f["display"]) <= {"top 5%", "typical", ""}, (case["id"], f["name"], f["display"])
            elif f["type"] == "boolean":  # a panel-wide mapping (the badges) or none
                assert set(f["display"]) <= {"true", "false", "", "top 5%", "typical"}, (case["id"], f["name"])
        shown.setdefault(case["panel"], {})[case["variant"]] = [
            (f["displayName"], f["display"]) for f in _displayed(case["panelType"], case["options"], fields)]
    # Both variants show the same: the fields the panel displays, under the same names, every value
    # displayed alike (units from the service's frame for the JSON plugin, from the panel's
    # overrides for Infinity).
    differ = [(panel, by) for panel, by in shown.items() if by.get("infinity") != by.get("json")]
    assert not differ, "\n".join(f"{panel}:\n  infinity {by.get('infinity')}\n  json {by.get('json')}"[:2000]
                                  for panel, by in differ[:5])


# --- the previous period, as each plugin asks for it ---------------------------------------------

def _previous_window(raw_from: str, raw_to: str, start: datetime, end: datetime, zone: str):
    """The documented rule (docs/dashboards.md, Previous period), computed here on its own: a
    period-to-date range (raw now/U .. now) compares with the same elapsed time from the start of
    the previous calendar period, never reaching into the current one; a whole calendar period
    (now-nU/U .. now-nU/U) with the whole one before; any other range with the window of equal
    length just before."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("UTC" if zone == "utc" else zone)
    local = start.astimezone(tz).replace(tzinfo=None)

    def back(unit: str) -> datetime:
        months = {"M": 1, "Q": 3, "y": 12}.get(unit)
        if months is None:
            naive = local - (timedelta(days=1) if unit == "d" else timedelta(weeks=1))
        else:
            y, m = divmod(local.year * 12 + local.month - 1 - months, 12)
            naive = local.replace(year=y, month=m + 1)  # period starts are the 1st: no day clamping
        return naive.replace(tzinfo=tz).astimezone(timezone.utc)

    m = re.fullmatch(r"now/([dwMQy])", raw_from)
    if m and raw_to == "now":
        prev_start = back(m.group(1))
        return prev_start, min(prev_start + (end - start), start)
    m = re.fullmatch(r"now-\d+([dwMQy])/([dwMQy])", raw_from)
    if m and raw_to == raw_from and m.group(1) == m.group(2):
        return back(m.group(2)), start
    return start - (end - start), start


PREVIOUS_CASES = [(display, f, t, None, None) for display, f, t in
                  __import__("agent_analytics.dashboards.tabs", fromlist=["QUICK_RANGES"]).QUICK_RANGES] + [
    ("Last month", "now-1M/M", "now-1M/M", None, None),
    ("Custom (absolute)", "ABSOLUTE", "ABSOLUTE", None, None),
    ("This week, panel shifted by 1d", "now/w", "now", None, "1d"),
    ("Last 7 days, panel's relative time now/d", "now-7d", "now", "now/d", None),
    ("Custom, panel's relative time now/d (ignored by Grafana)", "ABSOLUTE", "ABSOLUTE", "now/d", None),
]


def _grafana_ranges(cases: list[dict]) -> list[dict]:
    """Each case resolved as Grafana resolves it: its own date math in Node.js
    (tests/grafana_js/timerange.cjs) where available, else this model of it."""
    out, _ = js.try_run("timerange.cjs", stdin=cases)
    if out is not None:
        return out
    from zoneinfo import ZoneInfo

    from agent_analytics.dashboards.generate import relative_time_raw
    from agent_analytics.datasource import timerange as tr

    model = []
    for c in cases:
        tz = ZoneInfo("UTC" if c["timeZone"] == "utc" else c["timeZone"])
        now = datetime.fromtimestamp(c["now"] / 1000, timezone.utc)
        start, end = tr.resolve(c["from"], now, tz), tr.resolve(c["to"], now, tz, round_up=True)
        if c["to"] != "now" and "/" in c["to"]:
            end -= timedelta(milliseconds=1)  # Grafana's roundUp ends a period at its last millisecond
        raw = {"from": c["from"], "to": c["to"]}
        time_range = url_time_range(c["from"], c["to"], c["dashboardTimeZone"])
        if c.get("timeFrom") and not c["from"].startswith("20"):
            f, t = relative_time_raw(c["timeFrom"])
            start, end, raw = tr.resolve(f, now, tz), tr.resolve(t, now, tz), {"from": f, "to": t}
        if c.get("timeShift"):
            n = int(c["timeShift"][:-1])
            start, end = start - timedelta(days=n), end - timedelta(days=n)
            raw = {"from": iso_z(start), "to": iso_z(end)}
        if c.get("timeFrom") or c.get("timeShift"):
            time_range = ""
        model.append({"from_ms": int(start.timestamp() * 1000), "to_ms": int(end.timestamp() * 1000), "raw": raw,
                      "url_time_range": time_range})
    return model


def test_both_variants_give_every_preset_the_same_previous_period(demo_service, demo_conn):
    """Every date preset, a whole past month, an absolute range and panels with their own time
    shift or relative time, in three zones: the dashboards' own queries, rendered with what Grafana
    makes of each macro (Scenes: ${__from}/${__to}, ${__timezone}, ${__url_time_range}; the JSON
    plugin's range with raw and rangeRaw), give the same previous period through both plugins, and
    it is the documented one, counted here from the raw rows."""
    from agent_analytics.dashboards.generate import apply_time_overrides

    server, _ = demo_service
    now = datetime.now(timezone.utc).replace(microsecond=0)
    absolute = (iso_z(now - timedelta(days=3, hours=5)), iso_z(now - timedelta(hours=7)))
    problems: list[str] = []
    checked = 0
    for zone, dashboard_zone in (("Europe/Paris", "browser"), ("America/New_York", "browser"), ("utc", "utc")):
        cases = []
        for display, raw_from, raw_to, time_from, time_shift in PREVIOUS_CASES:
            if raw_from == "ABSOLUTE":
                raw_from, raw_to = absolute
            cases.append({"display": display, "from": raw_from, "to": raw_to, "timeZone": zone,
                          "dashboardTimeZone": dashboard_zone, "weekStart": "monday",
                          "now": int(now.timestamp() * 1000), "timeFrom": time_from, "timeShift": time_shift})
        for case, rng in zip(cases, _grafana_ranges(cases)):
            start = datetime.fromtimestamp(rng["from_ms"] / 1000, timezone.utc)
            end = datetime.fromtimestamp(rng["to_ms"] / 1000, timezone.utc)
            if end - start < timedelta(minutes=1):
                continue  # "Today" just after midnight: nothing to compare yet
            where = f"{zone}/{case['display']}"
            got = {}
            for variant in VARIANTS:
                d = load(variant.key, "mcp-usage")
                panel = json.loads(json.dumps(next(x for x in d["panels"]
                                                   if "mcp_tool_executions" in json.dumps(x.get("targets")))))
                for key, value in (("timeFrom", case["timeFrom"]), ("timeShift", case["timeShift"])):
                    if value:
                        panel[key] = value
                apply_time_overrides(panel)
                if variant is INFINITY:
                    if not (case["timeFrom"] or case["timeShift"]):
                        # This test's model of the macro is Grafana's (where Node.js gave rng).
                        assert rng["url_time_range"] == url_time_range(case["from"], case["to"], dashboard_zone)
                    url = render_infinity_url(panel["targets"][0]["url"], d, rng["from_ms"], rng["to_ms"], {},
                                              zone=zone, time_range=rng["url_time_range"])
                    r = requests.get(grafana_model.infinity_request_url(server.url + url), headers=AUTH, timeout=30)
                    assert r.status_code == 200, (where, r.text)
                    got[variant.key] = r.json()["rows"][0]["previous"]
                else:
                    body = render_json_request(panel, d, start, end, {}, raw=rng["raw"], zone=zone)
                    body["timezone"] = dashboard_zone
                    r = requests.post(f"{server.url}/grafana/query", json=body, headers=AUTH, timeout=30)
                    assert r.status_code == 200, (where, r.text)
                    got[variant.key] = next(f for f in r.json()[0]["fields"] if f["name"] == "previous")["values"][0]
            prev_start, prev_end = _previous_window(rng["raw"]["from"], rng["raw"]["to"], start, end, zone)
            want = demo_conn.execute("SELECT count(*) FROM tool_calls WHERE outcome <> 'blocked' AND time >= %s "
                                     "AND time < %s", (prev_start, prev_end)).fetchone()[0]
            if got["infinity"] != got["json"] or got["json"] != want:
                problems.append(f"{where}: Infinity {got['infinity']}, JSON {got['json']}, expected {want} "
                                f"({prev_start:%Y-%m-%d %H:%M} .. {prev_end:%Y-%m-%d %H:%M} UTC)")
            checked += 1
    assert not problems, "\n".join(problems)
    assert checked >= 3 * (len(PREVIOUS_CASES) - 1)
