"""The ordinary changes of docs/contributing.md, made in a child Python process: one module's
source is edited as the walk-through says (a declaration added), then everything said to derive
from it is imported fresh and checked. A child process, because the derivations happen at import
(the catalog's tuples, the request schemas, the dashboards) and the test process has imported
them already; nothing is written to disk.

Each `*_in_child` function is what the child runs; it must import agent_analytics only after the
edit (this module imports none of it at the top)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_in_child(function: str) -> None:
    """Run this module's `function` in a fresh interpreter; its failure is this one's."""
    code = f"from tests.walkthrough_support import {function}; {function}()"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:] or done.stdout[-4000:]


def edit_module(name: str, anchor: str, insertion: str) -> None:
    """Import module `name` from its source with `insertion` placed just before `anchor` (which
    must occur once): the module every later import gets."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None and spec.origin is not None, name
    source = spec.loader.get_source(name)  # type: ignore[attr-defined]
    assert source is not None and source.count(anchor) == 1, (name, anchor)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: dataclasses look their module up there
    exec(compile(source.replace(anchor, insertion + anchor), spec.origin, "exec"), module.__dict__)


def new_module(name: str, source: str) -> None:
    """A new module `name` (a file the walk-through adds) from its source text."""
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = name.rpartition(".")[0]
    sys.modules[name] = module
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)


# --- a new filter: the guide's `tool` (by the tool's name) on MCP Usage and Security, under a name
# of its own so that the real one, once declared, does not clash with it --------------------------

TOOL_FILTER = '''    _f("example_tool", "Example tool", _Q, "tool_name = ANY(%s)", {"tool_name"}, _MCP,
       "SELECT DISTINCT tool_name, tool_name FROM tool_calls_by_tool_daily ORDER BY 1"),
'''


def new_filter_in_child() -> None:
    # The walk-through's one edit: a declaration at the end of filters.DECLARED.
    edit_module("agent_analytics.datasource.filters", ")\nFILTERS: dict[str, Filter]", TOOL_FILTER)

    from agent_analytics.auth import Permission
    from agent_analytics.dashboards.generate import dashboard_json
    from agent_analytics.datasource import catalog, filters, openapi, params, relations

    # The catalog: the scope's tuple, so every MCP Usage and Security metric taking it; the
    # faces' filter names; who may list its values.
    assert catalog.MCP_FILTERS[-1] == "example_tool" and "example_tool" not in catalog.LLM_FILTERS
    for mid in ("mcp_tool_executions", "mcp_top_tools", "security_blocked_calls", "security_top_policies"):
        assert "example_tool" in catalog.BY_ID[mid].filters, mid
        assert "example_tool" in catalog.describe(catalog.BY_ID[mid])["filters"], mid
    assert "example_tool" not in catalog.BY_ID["llm_total_tokens"].filters
    assert "example_tool" in catalog.ALL_FILTERS and catalog.VARIABLES["example_tool"] == Permission.QUERY

    # The request schemas of both faces, and the predicate over the loaded values.
    loaded = params.load(params.JsonApiSchema, {"example_tool": "search,merge".split(",")})
    assert loaded["example_tool"] == ("search", "merge"), loaded
    assert params.load(params.OptionsSchema, {"example_tool": "$__all"})["example_tool"] is None
    text, values = filters.predicate_text({"example_tool": ("search",)}, catalog.MCP_FILTERS)
    assert text == "TRUE AND tool_name = ANY(%s)" and values == [["search"]]

    # The OpenAPI document: a query parameter, and a variable name.
    doc = openapi.document()
    query = {p["name"] for p in doc["paths"]["/api/v1/query/{metric_id}"]["get"]["parameters"]}
    assert "example_tool" in query, sorted(query)
    [name] = doc["paths"]["/api/v1/variables/{name}"]["get"]["parameters"]
    assert "example_tool" in name["schema"]["enum"]

    # The "choose aggregate" stage: a rollup holding tool_name, never the totals.
    executions = catalog.BY_ID["mcp_tool_executions"].reads
    assert executions is not None
    assert relations.choose_aggregate(executions.dataset, executions.needs, [], executions.rows)[0] \
        == "tool_calls_totals_hourly"
    assert relations.choose_aggregate(executions.dataset, executions.needs, ["example_tool"], executions.rows)[0] \
        == "tool_calls_by_tool_hourly"

    # The dashboards: a multi-value variable on MCP Usage and Security, in both variants, which
    # every Infinity query passes on; none on LLM Usage.
    for variant in ("json", "infinity"):
        for name, has in (("mcp-usage", True), ("security", True), ("llm-usage", False)):
            d = dashboard_json(variant, name)
            tool = [v for v in d["templating"]["list"] if v["name"] == "example_tool"]
            assert bool(tool) == has, (variant, name)
            if has:
                assert tool[0]["label"] == "Example tool" and tool[0]["multi"] and tool[0]["includeAll"], tool
            if variant == "infinity" and name == "mcp-usage":
                urls = [t["url"] for p in d["panels"] for t in p.get("targets", []) if "url" in t]
                assert urls and all("${example_tool:queryparam}" in u for u in urls), urls[:1]
    print(json.dumps({"checked": "filter"}))


# --- a new agent: the guide's Gemini CLI, under names of its own (the real one may come) --------

AGENT_MODULE = '''"""Example CLI (the walk-through's example): `example_cli.api_response` carries a request's tokens."""
from __future__ import annotations

from .agent import Agent
from .identity import user_id
from .records import LogEvent
from .rows import MAX_TOKENS, Batch, Context, LlmRequest
from .values import count, stored, text

SOURCE = "example_cli"
EXAMPLE_CLI = "example-cli"
PROVIDER = "gcp.gemini"


def api_response(ev: LogEvent, batch: Batch, ctx: Context) -> bool:
    a = ev.attrs
    batch.agents[EXAMPLE_CLI] = AGENT.name
    cached = count(a, "cached_content_token_count", maximum=MAX_TOKENS) or 0
    batch.llm_requests.append(LlmRequest(
        time_ns=ctx.check_time(ev.time_ns), source=SOURCE, session_id=text(a, "session.id"), user_id=user_id(a),
        agent_id=EXAMPLE_CLI, provider=PROVIDER, model=text(a, "model") or "unknown",
        input_tokens=(count(a, "input_token_count", maximum=MAX_TOKENS) or 0) - cached,
        output_tokens=count(a, "output_token_count", maximum=MAX_TOKENS) or 0, cache_read_tokens=cached,
        cache_write_tokens=0, reported_cost_usd=None, latency_ms=None, attributes=stored(a)))
    return True


EVENTS = {"example_cli.api_response": api_response}
AGENT = Agent(source=SOURCE, agent_id=EXAMPLE_CLI, name="Example CLI", prefix="example_cli.", events=EVENTS,
              service="example-cli")
'''
# Its snippets in the set-up guide, entered under its agent id before the gateway's.
EXAMPLE_SNIPPETS = ('"example-cli": lambda endpoint, token: [Snippet("Example CLI: ~/.example/settings.json", "json",'
                   ' json.dumps({"telemetry": {"enabled": True, "otlpEndpoint": endpoint}}))], ')


def _example_logs(now_ns: int) -> bytes:
    """An OTLP logs request from Example CLI's service: one api_response, one prompt event no
    normaliser takes, each under the service's scope."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    from tests.ingest_support import add_attributes

    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    add_attributes(rl.resource.attributes, (("service.name", "example-cli"), ("service.version", "0.9.0")))
    sl = rl.scope_logs.add()
    sl.scope.name = "example-cli"
    for attrs in ({"event.name": "example_cli.api_response", "session.id": "s-1", "user.email": "gina@example.com",
                   "model": "gemini-2.5-pro", "input_token_count": 1200, "output_token_count": 300,
                   "cached_content_token_count": 200},
                  {"event.name": "example_cli.user_prompt", "session.id": "s-1", "prompt_length": 5}):
        rec = sl.log_records.add()
        rec.time_unix_nano = now_ns
        add_attributes(rec.attributes, attrs)
    return req.SerializeToString()


def new_agent_in_child() -> None:
    # The walk-through's three files: the agent's module, its place in sources.AGENTS, its
    # snippets in the set-up guide.
    new_module("agent_analytics.ingest.normalise_example_cli", AGENT_MODULE)
    edit_module("agent_analytics.ingest.sources", "\nOTHER = ",
                "\nfrom . import normalise_example_cli as example_cli\nAGENTS = (*AGENTS, example_cli.AGENT)\n")
    edit_module("agent_analytics.setup_guide", "gateway.SOURCE: _gateway,", EXAMPLE_SNIPPETS)

    import time

    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    from agent_analytics import connect, setup_guide
    from agent_analytics.cli import build_parser
    from agent_analytics.dashboards.generate import dashboard_json
    from agent_analytics.datasource import telemetry
    from agent_analytics.ingest import normalise, sources, stats
    from agent_analytics.ingest.rows import Context

    # What a source is called: the Telemetry dashboard's source list, `agent-analytics status`.
    assert sources.SOURCES["example_cli"] == "Example CLI" and telemetry.SOURCES["example_cli"] == "Example CLI"
    assert list(sources.SOURCES).index("example_cli") == len(sources.AGENTS) - 1  # after the other agents

    # Dispatch and counting: its event becomes its fact under its source and agent id, and the
    # directory learns its name; its other records are counted under it, not `other`.
    now = time.time_ns()
    batch = normalise.normalise("logs", ExportLogsServiceRequest.FromString(_example_logs(now)), Context(now_ns=now))
    [request] = batch.llm_requests
    assert (request.source, request.agent_id, request.provider, request.model) == \
        ("example_cli", "example-cli", "gcp.gemini", "gemini-2.5-pro")
    assert (request.input_tokens, request.cache_read_tokens, request.output_tokens) == (1000, 200, 300)
    assert batch.agents == {"example-cli": "Example CLI"}
    counted = {(key[0], outcome) for key, outcome, _ in batch.tally}
    assert counted == {("example_cli", "ignored")}, batch.tally  # the stored one is counted on storing
    assert {key[0] for key in batch.origins} <= {"example_cli"}, batch.origins
    assert stats.key("example_cli", "logs", ("example-cli", "0.9.0"), {"user.email": "g@example.com"})[5] \
        == "g@example.com"

    # The set-up guide: a target titled with the agent's name, which `agent-analytics setup` takes.
    assert setup_guide.TITLES["example-cli"] == connect.TARGET_TITLES["example-cli"] == "Example CLI"
    assert list(setup_guide.TARGETS)[-2:] == ["example-cli", "gateway"]
    assert build_parser().parse_args(["setup", "example-cli"]).target == "example-cli"

    # The Telemetry dashboard (both variants): its "What to set" panel, with the snippet's text.
    text = setup_guide.snippets(connect.endpoint(connect.Config()), setup_guide.TOKEN_PLACEHOLDER)["example-cli"]
    for variant in ("json", "infinity"):
        shown = {p["title"]: p["options"]["content"] for p in _panels(dashboard_json(variant, "telemetry"))
                 if p["type"] == "text"}
        assert "Example CLI" in shown and text[0].text in shown["Example CLI"], (variant, sorted(shown))
    print(json.dumps({"checked": "agent"}))


def new_user_key_in_child() -> None:
    """An agent naming its users by an attribute identity.USER_KEYS lacks: that one edit, and the
    facts and the Telemetry dashboard's counts (ignored metric points too) read it."""
    edit_module("agent_analytics.ingest.identity", "\n\n\ndef merged(",
                '\nUSER_KEYS = (*USER_KEYS, "example.user_id")')

    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    from agent_analytics.ingest import identity, stats

    attrs = {"example.user_id": "u-7"}
    assert identity.user_id(attrs) == "u-7"
    assert stats.key("other", "logs", (None, None), attrs)[5] == "u-7"
    kv = KeyValue(key="example.user_id")
    kv.value.string_value = "u-7"
    ignored_point = stats.identity_attributes({"service.name": "example-cli"}, [kv])
    assert stats.key("other", "metrics", (None, None), ignored_point)[5] == "u-7", ignored_point
    print(json.dumps({"checked": "user key"}))


def _panels(d: dict) -> list[dict]:
    out = []
    for p in d.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))
    return out
