"""The committed dashboards and alert rules are exactly what the generator makes, and they have
what the product asks for: every element of the seed, the variables, the date presets, the
dashed previous period, pagination, data links that lead somewhere real."""
from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml

pytest.importorskip("grafana_foundation_sdk")

from agent_analytics.config import ATTRIBUTION_COLUMNS  # noqa: E402
from agent_analytics.dashboards import generate  # noqa: E402
from agent_analytics.dashboards.tabs import DASHBOARDS, QUICK_RANGES, UIDS  # noqa: E402
from agent_analytics.dashboards.variants import INFINITY, JSON, VARIANTS  # noqa: E402
from agent_analytics.datasource import catalog  # noqa: E402
from tests.dashboards_support import load, metric_of  # noqa: E402

ROOT = generate.REPO_ROOT
SEED_PRESETS = ["Last 1h", "Last 24h", "Last 7 days", "Last 30 days", "Last 90 days",
                "Today", "This week", "This month", "This quarter", "This year"]
TAB_FILTERS = {"mcp-usage": catalog.MCP_FILTERS, "security": catalog.MCP_FILTERS, "llm-usage": catalog.LLM_FILTERS,
               "session-timeline": ("session",) + catalog.LLM_SESSION_FILTERS, "telemetry": (), "value": catalog.VALUE_FILTERS}


def all_dashboards() -> list[tuple[str, str, dict]]:
    return [(v.key, n, load(v.key, n)) for v in VARIANTS for n in DASHBOARDS]


def panels(d: dict) -> list[dict]:
    return [p for p in d["panels"] if p["type"] != "row"]


def test_committed_files_equal_the_generator_output():
    assert generate.stale_files() == [], "run `agent-analytics dashboards generate` and commit the result"


def test_check_mode_reports_a_stale_file(tmp_path):
    generate.write_all(tmp_path)
    assert generate.stale_files(tmp_path) == []
    victim = tmp_path / "dashboards" / "infinity" / "security.json"
    victim.write_text(victim.read_text().replace("Blocked calls", "Blocked", 1))
    assert generate.stale_files(tmp_path) == ["dashboards/infinity/security.json"]
    args = type("A", (), {"root": str(tmp_path), "check": True})()
    assert generate.cmd_generate(args) == 1


def test_the_cli_exposes_the_generator():
    from agent_analytics.cli import build_parser

    args = build_parser().parse_args(["dashboards", "generate", "--check"])
    assert args.func is generate.cmd_generate


@pytest.mark.parametrize("variant_key,name,d", all_dashboards(), ids=lambda x: x if isinstance(x, str) else "")
def test_dashboard_basics(variant_key, name, d):
    variant = INFINITY if variant_key == "infinity" else JSON
    key = {"mcp-usage": "mcp", "llm-usage": "llm", "security": "security", "session-timeline": "session",
           "telemetry": "telemetry", "value": "value"}[name]
    assert d["uid"] == variant.uid(UIDS[key])
    assert d["timezone"] == "browser"
    assert d["time"] == {"from": "now-7d", "to": "now"}
    ranges = d["timepicker"]["quick_ranges"]
    assert [r["display"] for r in ranges] == SEED_PRESETS
    assert [(r["display"], r["from"], r["to"]) for r in ranges] == list(QUICK_RANGES)
    assert "agent-analytics" in d["tags"]
    assert d["schemaVersion"] >= 41
    # Every query goes to this variant's data source and names a metric the service knows.
    for p in panels(d):
        if p["type"] == "text":
            continue
        assert p["datasource"] == {"type": variant.plugin_type, "uid": variant.datasource_uid}, p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == variant.datasource_uid
            assert metric_of(variant_key, t) in catalog.BY_ID
    # Panels never overlap.
    cells = set()
    for p in d["panels"]:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps another panel"
                cells.add((x, y))
        assert g["x"] + g["w"] <= 24


@pytest.mark.parametrize("variant_key,name,d", all_dashboards(), ids=lambda x: x if isinstance(x, str) else "")
def test_variables_are_the_tab_filters(variant_key, name, d):
    variables = {v["name"]: v for v in d["templating"]["list"]}
    expected = set(TAB_FILTERS[name]) | ({"order_by"} if name == "llm-usage" else set())
    assert set(variables) == expected
    for fname in TAB_FILTERS[name]:
        v = variables[fname]
        assert v["type"] == "query" and v["refresh"] == 2
        if fname == "session":
            assert v["multi"] is False and v["includeAll"] is False
            continue
        assert v["multi"] is True and v["includeAll"] is True
        assert v["allValue"] == "$__all" and v["current"]["value"] == "$__all"
        if variant_key == "json":
            assert v["query"] == {"query": fname, "format": "string"}
        else:
            q = v["query"]["infinityQuery"]
            assert q["parser"] == "backend" and q["url"].startswith(f"/api/v1/variables/{fname}?")


@pytest.mark.parametrize("variant_key,name,d", all_dashboards(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_query_honours_every_filter_of_its_tab(variant_key, name, d):
    """Infinity sends each filter in the URL; the JSON plugin sends them all in scopedVars."""
    for p in panels(d):
        for t in p.get("targets", []):
            m = catalog.BY_ID[metric_of(variant_key, t)]
            if variant_key == "json":
                # Grafana puts every dashboard variable in scopedVars: the payload carries extras only.
                assert t["editorMode"] == "code"
                assert set(json.loads(t["payload"])) <= set(m.payload_fields)
                for f in m.filters:
                    assert f in TAB_FILTERS[name], (m.id, f)
                continue
            for f in m.filters:
                assert f in TAB_FILTERS[name], (m.id, f)
                assert f"${{{f}:queryparam}}" in t["url"], (p["title"], f)
            assert "from=${__from}&to=${__to}" in t["url"]
            assert t["root_selector"] == "rows" and t["parser"] == "backend"
            assert [c["selector"] for c in t["columns"]] == [c.name for c in m.columns]


def _home(m: catalog.Metric) -> str:
    """The dashboard a metric's tab puts it on: the session drawer's metrics (those taking the
    `session` filter) on the Session timeline, the other Sessions metrics on LLM Usage."""
    if m.tab == "sessions":
        return "session-timeline" if "session" in m.filters else "llm-usage"
    return {"mcp": "mcp-usage", "llm": "llm-usage", "security": "security", "telemetry": "telemetry",
            "value": "value"}[m.tab]


def test_every_seed_element_is_on_its_tab():
    # What the seed asks of each tab: every one of these must be there.
    seed = {
        "mcp-usage": ["mcp_tool_executions", "mcp_unique_tools", "mcp_active_agent_instances", "mcp_active_users",
                      "mcp_executions_over_time", "mcp_hourly_distribution", "mcp_top_tools",
                      "mcp_top_agent_instances", "mcp_top_users", "mcp_top_mcps"],
        "llm-usage": ["llm_status", "llm_total_tokens", "llm_total_cost", "llm_models_used", "llm_tokens_by_type",
                      "llm_tokens_over_time", "llm_cost_over_time", "llm_top_users_by_tokens", "llm_top_users_by_cost",
                      "llm_top_models_by_tokens", "llm_top_models_by_cost", "session_metrics", "sessions_table"],
        "security": ["security_blocked_calls", "security_blocked_over_time", "security_top_blocked_tools",
                     "security_top_blocked_agent_instances", "security_top_blocked_users",
                     "security_top_blocked_mcps", "security_top_policies"],
        "session-timeline": ["session_totals", "session_comparison", "session_models", "session_token_mix",
                             "session_tokens_over_time", "session_cumulative_cost"],
        "telemetry": ["telemetry_sources", "telemetry_senders", "telemetry_records_over_time",
                      "telemetry_rejections"],
    }
    for v in VARIANTS:
        for name, ids in seed.items():
            found = [metric_of(v.key, t) for p in panels(load(v.key, name)) for t in p.get("targets", [])]
            assert set(ids) <= set(found), (v.key, name, sorted(set(ids) - set(found)))
            # Beyond the seed's, exactly the metrics declared for this tab.
            expected = sorted(set(ids) | {m.id for m in catalog.METRICS if _home(m) == name})
            assert sorted(set(found)) == expected, (v.key, name)
    # Every tab metric of the catalog is shown somewhere.
    shown = {metric_of("infinity", t) for n in DASHBOARDS for p in panels(load("infinity", n)) for t in p.get("targets", [])}
    assert shown == set(catalog.BY_ID)


@pytest.mark.parametrize("variant_key,name,d", all_dashboards(), ids=lambda x: x if isinstance(x, str) else "")
def test_panels_by_kind(variant_key, name, d):
    for p in panels(d):
        if p["type"] == "text":
            continue
        m = catalog.BY_ID[metric_of(variant_key, p["targets"][0])]
        if m.kind == "stat":
            assert p["type"] == "stat"
            names = [o["matcher"]["options"] for o in p["fieldConfig"]["overrides"]]
            assert any("previous" in n.lower() for n in names) and any("change" in n.lower() for n in names)
        elif m.kind == "timeseries" and m.tab == "sessions":
            # The drawer's activity: bars whose x axis is the session's own buckets.
            assert p["type"] == "barchart" and p["options"]["xField"] == "time"
        elif m.kind == "timeseries":
            assert p["type"] == "timeseries"
            dashed = [o for o in p["fieldConfig"]["overrides"]
                      if o["matcher"] == {"id": "byRegexp", "options": "/^Previous period.*/"}]
            if any(c.name == "previous" for c in m.columns):
                assert dashed and dashed[0]["properties"][0] == {
                    "id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}
            else:
                assert not dashed
        elif m.kind == "bars":
            assert p["type"] == "barchart"
        elif m.kind == "table" and m.id != "session_comparison":
            assert p["type"] == "table", p["title"]
            assert p["options"]["enablePagination"] is True
            if m.paged:  # the top tables: ten rows per page
                assert p["gridPos"]["h"] == 13
                assert "page=" not in json.dumps(p["targets"])


def test_hourly_distribution_is_bars_by_utc_hour():
    for v in VARIANTS:
        p = next(p for p in panels(load(v.key, "mcp-usage")) if p["title"] == "Hourly distribution (UTC)")
        assert p["type"] == "barchart" and "UTC" in p["title"]
        hour = v.field_name(catalog.BY_ID["mcp_hourly_distribution"].columns[0])
        assert p["options"]["xField"] == hour
        convert = next(t for t in p["transformations"] if t["id"] == "convertFieldType")
        assert convert["options"]["conversions"][0]["targetField"] == hour


def test_sessions_table_ranks_by_the_order_variable():
    for v in VARIANTS:
        d = load(v.key, "llm-usage")
        order = next(x for x in d["templating"]["list"] if x["name"] == "order_by")
        assert order["type"] == "custom" and order["query"] == "cost,tokens,recency"
        p = next(p for p in panels(d) if p["targets"][0].get("target") == "sessions_table"
                 or "sessions_table" in p["targets"][0].get("url", ""))
        t = p["targets"][0]
        if v.key == "json":
            assert json.loads(t["payload"]) == {"order_by": "$order_by", "tz": "${__timezone}"}
        else:
            assert "order_by=${order_by}" in t["url"]


def test_comparison_chips_hide_without_a_baseline():
    for v in VARIANTS:
        chips = [p for p in panels(load(v.key, "session-timeline")) if "session_comparison" in json.dumps(p.get("targets"))]
        assert len(chips) == 2
        for p in chips:
            f = next(t for t in p["transformations"] if t["id"] == "filterByValue")
            assert f["options"]["type"] == "exclude"
            assert f["options"]["filters"][0]["config"]["id"] == "isNull"
        ratio = v.field_name(next(c for c in catalog.BY_ID["session_comparison"].columns if c.name == "ratio"))
        props = {pr["id"]: pr["value"] for o in chips[0]["fieldConfig"]["overrides"]
                 if o["matcher"] == {"id": "byName", "options": ratio} for pr in o["properties"]}
        # On the field, not as defaults: the JSON face's frame gives the field its own name and unit.
        assert props["unit"] == "suffix:× median" and props["displayName"].startswith("${__data.fields.")
        assert chips[1]["fieldConfig"]["defaults"]["mappings"][0]["options"]["true"]["text"] == "top 5%"


def test_llm_usage_empty_state_links_to_the_guide_and_the_telemetry_page():
    for v in VARIANTS:
        p = panels(load(v.key, "llm-usage"))[0]
        assert "llm_status" in json.dumps(p["targets"])
        links = p["fieldConfig"]["defaults"]["links"]
        assert any("setup_url" in l["url"] for l in links)
        assert any(l["url"].endswith("docs/opentelemetry.md") for l in links)
        assert any(l["url"] == f"/d/{v.uid(UIDS['telemetry'])}/telemetry" for l in links)
        assert "OpenTelemetry guide" in p["fieldConfig"]["defaults"]["noValue"]
        assert "Telemetry page" in p["fieldConfig"]["defaults"]["noValue"]


def test_the_telemetry_dashboard_shows_the_setup_snippets():
    """What `agent-analytics setup` prints (agent_analytics/setup_guide.py), for the receiver's
    port with the host and token to fill in, is on the Telemetry dashboard, one panel per target."""
    from agent_analytics.config import Config
    from agent_analytics.setup_guide import TARGETS, TITLES, TOKEN_PLACEHOLDER, snippets

    texts = snippets(f"http://<receiver host>:{Config().ingest_port}", TOKEN_PLACEHOLDER)
    # Each target's panel is titled with its name (a new agent's too: no list here to extend).
    assert {t: TITLES[t] for t in ("claude-code", "codex", "gateway")} == {
        "claude-code": "Claude Code", "codex": "Codex", "gateway": "MCP gateway"}
    for v in VARIANTS:
        shown = {p["title"]: p["options"]["content"] for p in panels(load(v.key, "telemetry")) if p["type"] == "text"}
        for target in TARGETS:
            for snippet in texts[target]:
                title = TITLES[target]
                assert snippet.text in shown[title] and snippet.title in shown[title], (target, snippet.title)
        assert "agent-analytics setup" in shown["How to connect"]


def test_every_tab_links_to_the_telemetry_dashboard():
    """The tabs' "Analytics" link lists the dashboards carrying the variant's tab tag:
    Telemetry is among them, and links back to the tabs the same way."""
    for v in VARIANTS:
        telemetry = load(v.key, "telemetry")
        assert v.tab_tag in telemetry["tags"]
        for name in ("mcp-usage", "llm-usage", "security", "telemetry"):
            links = load(v.key, name)["links"]
            assert any(l["type"] == "dashboards" and l["tags"] == [v.tab_tag] for l in links), name


def _dashboard_by_uid() -> dict[str, dict]:
    return {d["uid"]: d for _, _, d in all_dashboards()}


def _variables(d: dict) -> set[str]:
    return {v["name"] for v in d["templating"]["list"]}


def _links(d: dict):
    for link in d.get("links", []):
        yield None, link
    for p in d["panels"]:
        fc = p.get("fieldConfig", {})
        for link in fc.get("defaults", {}).get("links", []):
            yield p, link
        for o in fc.get("overrides", []):
            for prop in o["properties"]:
                if prop["id"] == "links":
                    for link in prop["value"]:
                        yield p, link


def test_every_data_link_points_at_an_existing_dashboard_and_variable():
    by_uid = _dashboard_by_uid()
    checked = 0
    for variant_key, name, d in all_dashboards():
        for panel, link in _links(d):
            if link.get("type") == "dashboards":
                # Tab links: every dashboard with the tag exists and shares the time range and variables.
                tagged = [x for x in by_uid.values() if set(link["tags"]) <= set(x["tags"])]
                assert len(tagged) == 5 and link["keepTime"] and link["includeVars"]
                assert all(x["uid"].endswith("-json") == (variant_key == "json") for x in tagged)
                checked += 1
                continue
            url = link["url"]
            if not url.startswith("/d/"):
                assert url.startswith("https://") or url.startswith("${__data.fields")
                continue
            parts = urlsplit(url)
            uid = parts.path.split("/")[2]
            assert uid in by_uid, url
            target = by_uid[uid]
            assert target["uid"].endswith("-json") == (variant_key == "json")
            for key, _ in parse_qsl(parts.query.replace("${__url_time_range}", "from=x&to=y")
                                    .replace("${__all_variables}", "")):
                if key.startswith("var-"):
                    assert key[4:] in _variables(target), (url, key)
            if "${__all_variables}" in url:
                # Carried variables must exist on the target (the sessions' extra order_by aside, and
                # the attribution filters, which a session's own rows do not answer).
                assert _variables(d) - {"order_by"} - set(ATTRIBUTION_COLUMNS) <= _variables(target)
            if panel is not None and "__data.fields" in url:
                field = re.search(r'__data\.fields\["([^"]+)"\]', url).group(1)
                m = catalog.BY_ID[metric_of(variant_key, panel["targets"][0])]
                variant = INFINITY if variant_key == "infinity" else JSON
                assert field in {variant.field_name(c) for c in m.columns}
            checked += 1
    assert checked >= 8


def test_alert_rules_file():
    doc = yaml.safe_load((ROOT / "provisioning/alerting/agent-analytics.yaml").read_text())
    group = doc["groups"][0]
    rule = group["rules"][0]
    assert rule["title"] == "Blocked tool calls surge"
    refs = {d["refId"]: d for d in rule["data"]}
    assert rule["condition"] in refs
    for ref in ("A", "B"):
        q = refs[ref]
        assert q["datasourceUid"] == INFINITY.datasource_uid
        m = q["model"]
        assert m["parser"] == "backend" and m["type"] == "json" and m["source"] == "url"
        assert "${__timeFrom}" in m["url"] and "${__timeTo}" in m["url"]
        assert "${__from}" not in m["url"] and ":queryparam" not in m["url"]
        assert q["relativeTimeRange"] == {"from": 3600, "to": 0}
        assert len(m["columns"]) == 1
    assert [refs[r]["model"]["expression"] for r in ("C", "D")] == ["A", "B"]
    assert {refs[r]["model"]["type"] for r in ("C", "D")} == {"reduce"}
    assert refs["E"]["model"]["type"] == "math" and "$C" in refs["E"]["model"]["expression"]
    assert "$D" in refs["E"]["model"]["expression"]
    assert refs["F"]["model"]["type"] == "threshold" and rule["condition"] == "F"
    assert {r["datasourceUid"] for r in refs.values()} <= {"__expr__", INFINITY.datasource_uid}
    # Linked to the Security dashboard's panel that shows blocked calls (both annotations, as
    # Grafana requires), the panel id taken from the generated dashboard.
    security = load("infinity", "security")
    panel = next(p for p in security["panels"] if p["id"] == int(rule["annotations"]["__panelId__"]))
    assert rule["annotations"]["__dashboardUid__"] == security["uid"]
    assert metric_of("infinity", panel["targets"][0]) == "security_blocked_calls"


def test_datasource_provisioning():
    doc = yaml.safe_load((ROOT / "provisioning/datasources/agent-analytics.yaml").read_text())
    by_type = {d["type"]: d for d in doc["datasources"]}
    inf, js = by_type[INFINITY.plugin_type], by_type[JSON.plugin_type]
    assert inf["uid"] == INFINITY.datasource_uid and inf["isDefault"] is True
    assert js["uid"] == JSON.datasource_uid and js["url"].endswith("/grafana")
    for ds in (inf, js):
        assert ds["jsonData"]["httpHeaderName1"] == "Authorization"
        assert ds["secureJsonData"]["httpHeaderValue1"] == "Bearer ${AA_GRAFANA_QUERY_TOKEN}"
        assert ds["access"] == "proxy"
    assert inf["url"] in inf["jsonData"]["allowedHosts"]


def test_dashboard_providers_point_at_the_mounted_files():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = {m.split(":")[1]: m.split(":")[0] for m in compose["services"]["grafana"]["volumes"]}
    for path, variant in ((ROOT / "provisioning/dashboards/agent-analytics.yaml", "infinity"),
                          (ROOT / "provisioning/optional/json-plugin-dashboards.yaml", "json")):
        provider = yaml.safe_load(path.read_text())["providers"][0]
        assert provider["type"] == "file"
        assert mounts[provider["options"]["path"]] == f"./dashboards/{variant}"
        assert (ROOT / "dashboards" / variant).is_dir()


def test_docker_compose_structure():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"timescaledb", "service", "grafana"}
    for name, s in services.items():
        assert "healthcheck" in s and s["healthcheck"]["test"], name
    # Pinned images: a version tag, never latest.
    assert re.fullmatch(r"timescale/timescaledb:\d+\.\d+\.\d+-pg\d+", services["timescaledb"]["image"])
    assert re.fullmatch(r"grafana/grafana:13\.\d+\.\d+", services["grafana"]["image"])
    assert services["service"]["build"] == "." and (ROOT / "Dockerfile").is_file()
    assert services["service"]["depends_on"]["timescaledb"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["service"]["condition"] == "service_healthy"
    env = services["grafana"]["environment"]
    plugins = dict(p.split("@") for p in env["GF_PLUGINS_PREINSTALL_SYNC"].split(","))
    assert set(plugins) == {INFINITY.plugin_type, JSON.plugin_type}
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in plugins.values())
    assert env["AA_SERVICE_URL"] == "http://service:8080"
    mounts = {m.split(":")[0]: m.split(":")[1] for m in services["grafana"]["volumes"] if m.startswith("./")}
    for src in ("./provisioning/datasources", "./provisioning/dashboards", "./provisioning/alerting"):
        assert mounts[src].startswith("/etc/grafana/provisioning/") and (ROOT / src).is_dir()
    svc_env = services["service"]["environment"]
    assert svc_env["DATABASE_URL"].startswith("postgresql://") and "@timescaledb:5432/" in svc_env["DATABASE_URL"]
    # The token Grafana sends is one the service grants the llm-analytics permission.
    assert "AA_GRAFANA_QUERY_TOKEN" in svc_env["AA_LLM_QUERY_TOKENS"]
    assert {"4318:4318", "8080:8080"} <= set(services["service"]["ports"])
    # Every environment setting the service gets is one it knows.
    from agent_analytics.config import SETTINGS

    known = {s.env for s in SETTINGS}
    assert set(svc_env) <= known


def test_dockerfile_runs_the_service():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:\d+\.\d+\.\d+-slim", text, re.M)
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert "agent-analytics serve" in text and "agent-analytics migrate" in text
    for folder in ("agent_analytics", "ingest", "sql", "datasource", "dashboards"):
        assert f"COPY {folder} ./{folder}" in text


@pytest.mark.parametrize("doc", ["opentelemetry.md", "dashboards.md", "operations.md"])
def test_guides_link_to_things_that_exist(doc):
    """Relative links (and their #anchors) in the guides resolve; the guides name every tab."""
    text = (ROOT / "docs" / doc).read_text()

    def anchors(md: str) -> set[str]:
        out = set()
        for line in md.splitlines():
            if line.startswith("#"):
                title = line.lstrip("#").strip().lower()
                out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
        return out

    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        file = (ROOT / "docs" / path) if path else (ROOT / "docs" / doc)
        assert file.is_file(), target
        if anchor:
            assert anchor in anchors(file.read_text()), target
    if doc == "dashboards.md":
        # Every panel is explained, under the title it has on the dashboard.
        for name in DASHBOARDS:
            for p in load("infinity", name)["panels"]:
                assert p["title"] in text, p["title"]


@pytest.mark.parametrize("variant_key,name,d", all_dashboards(), ids=lambda x: x if isinstance(x, str) else "")
def test_dashboards_round_trip_through_the_sdk_models(variant_key, name, d):
    """The pinned SDK's typed models (generated from Grafana's schemas, panel options included)
    read every key back: nothing unknown, nothing mistyped away. The one exception is Grafana
    12.2's table option `enablePagination`, newer than the SDK's schema and set on purpose."""
    from grafana_foundation_sdk.cog import plugins
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import dashboard as dm

    plugins.register_default_plugins()
    back = json.loads(json.dumps(dm.Dashboard.from_json(d), cls=JSONEncoder))
    lost: list[str] = []

    def compare(a, b, path: str) -> None:
        if isinstance(a, dict):
            for k, v in a.items():
                if not isinstance(b, dict) or k not in b:
                    lost.append(f"{path}/{k}")
                else:
                    compare(v, b[k], f"{path}/{k}")
        elif isinstance(a, list):
            assert isinstance(b, list) and len(a) == len(b), path
            for i, (x, y) in enumerate(zip(a, b)):
                compare(x, y, f"{path}[{i}]")
        else:
            assert a == b, f"{path}: {a!r} became {b!r}"

    compare(d, back, "")
    tables = [i for i, p in enumerate(d["panels"]) if p["type"] == "table"]
    assert sorted(lost) == sorted(f"/panels[{i}]/options/enablePagination" for i in tables)
    assert [p["id"] for p in d["panels"]] == list(range(1, len(d["panels"]) + 1))


def test_alert_rules_are_available_without_the_sdk():
    """`grafana install` provisions the alert rules from the generator where provisioning/ is not
    shipped; an installation without the dashboards extra must still have them."""
    import subprocess
    import sys

    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.startswith('grafana_foundation_sdk'): raise ImportError('SDK not installed')\n"
            "sys.meta_path.insert(0, Block())\n"
            "from agent_analytics.dashboards.alerts import alert_rules\n"
            "print(alert_rules()['groups'][0]['rules'][0]['uid'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "aa-blocked-calls-surge"


def test_every_variable_the_stack_needs_is_in_the_env_example():
    compose = (ROOT / "docker-compose.yml").read_text()
    needed = set(re.findall(r"\$\{(\w+)", compose))
    example = {line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    # AA_QUERY_TOKEN is optional (a token without the llm-analytics permission).
    assert needed - {"AA_QUERY_TOKEN"} <= example
    assert "AA_GRAFANA_QUERY_TOKEN" in example and "AA_INGEST_TOKEN" in example


def test_sessions_table_says_it_shows_the_first_rows_and_the_picker_lists_newest_first():
    from agent_analytics.datasource.query import MAX_ROWS

    for v in VARIANTS:
        d = load(v.key, "llm-usage")
        p = next(p for p in panels(d) if metric_of(v.key, p["targets"][0]) == "sessions_table")
        # The service answers at most MAX_ROWS rows to a panel: the title and description say so.
        assert f"the first {MAX_ROWS:,}" in p["title"] and f"first {MAX_ROWS:,} sessions" in p["description"]
        if v.key == "infinity":
            assert f"page_size={MAX_ROWS}" in p["targets"][0]["url"]
        timeline = load(v.key, "session-timeline")
        sorts = {x["name"]: x.get("sort", 0) for x in timeline["templating"]["list"]}
        # Grafana keeps the service's order (newest first) only when the variable does not sort.
        assert sorts.pop("session") == 0
        assert sorts and all(s != 0 for s in sorts.values())


def test_every_data_panel_organizes_its_fields_first():
    """Infinity's backend parser sorts fields by name: every panel with a query first orders them as
    the catalog declares its columns (Grafana's "Organize fields", keyed by the displayed name)."""
    for v in VARIANTS:
        for name in DASHBOARDS:
            for p in panels(load(v.key, name)):
                if p["type"] == "text":
                    continue
                m = catalog.BY_ID[metric_of(v.key, p["targets"][0])]
                first = p["transformations"][0]
                assert first["id"] == "organize", (v.key, name, p["title"])
                assert first["options"]["indexByName"] == {(c.title or c.name): i for i, c in enumerate(m.columns)}
