"""Each telemetry source is declared once (ingest/sources.py, each agent's `AGENT`): what is
derived from the declarations agrees with them, and the docs name every source as declared."""
from __future__ import annotations

import re
from pathlib import Path

from agent_analytics.connect import TARGET_TITLES
from agent_analytics.ingest import sources
from agent_analytics.setup_guide import TARGETS, TITLES
from tests.walkthrough_support import run_in_child

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_agent_is_declared_consistently():
    ids = [a.source for a in sources.AGENTS]
    assert len(set(ids)) == len(ids) and len({a.agent_id for a in sources.AGENTS}) == len(ids)
    assert len(set(sources.SOURCES.values())) == len(sources.SOURCES)
    for a in sources.AGENTS:
        assert sources.SOURCES[a.source] == a.name
        assert a.prefix.endswith(".") and a.events, a.source
        assert all(name.startswith(a.prefix) for name in (*a.events, *a.metrics)), a.source
        assert (a.metric_point is None) == (not a.metrics), a.source
        # Records no normaliser takes are counted under the agent only if it names its service.
        assert a.scopes or a.service or a.service_prefix, a.source


def test_every_agent_has_set_up_snippets_titled_with_its_name():
    for a in sources.AGENTS:
        assert a.agent_id in TARGETS, f"{a.name}: no snippets in agent_analytics/setup_guide.py"
        assert TITLES[a.agent_id] == TARGET_TITLES[a.agent_id] == a.name


def test_the_dashboards_doc_lists_the_sources_as_declared():
    text = (DOCS / "dashboards.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| Sources | per source ("))
    listed = row[len("| Sources | per source ("):row.index(")")].split(", ")
    assert listed == list(sources.SOURCES.values())


def test_the_ingest_doc_has_a_row_per_source_with_its_agent_id():
    text = (DOCS / "ingest.md").read_text()
    section = text[text.index("## Sources"):]
    section = section[:section.index("\n\n", section.index("|---"))]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| `")]
    rows = {re.fullmatch(r"`(\w+)`", row[0])[1]: row for row in cells}  # source -> its cells
    assert set(rows) == set(sources.SOURCES) - {sources.OTHER}
    for a in sources.AGENTS:
        assert rows[a.source][2] == f"`{a.agent_id}`", a.source


def test_a_new_agent_is_its_module_its_place_in_agents_and_its_snippets():
    """docs/contributing.md's walk-through: a Gemini CLI module, its AGENT added to
    sources.AGENTS and its snippets to the set-up guide, and nothing else edited: its events are
    dispatched and counted under it, the directory, the Telemetry dashboard, `agent-analytics
    setup` and status name it (tests/walkthrough_support.py)."""
    run_in_child("new_agent_in_child")


def test_a_new_user_attribute_is_read_wherever_users_are():
    """The agent walk-through's fourth file, when its agent names users by an attribute of its
    own: identity.USER_KEYS, which ingest/stats.py reads too."""
    run_in_child("new_user_key_in_child")


def _or_list(text: str) -> list[str]:
    """The targets a guide's "`agent-analytics setup a` (or `b`, `c`)" names, in order."""
    flat = " ".join(text.split())
    m = re.search(r"agent-analytics setup ([\w-]+)` \(or ((?:`[\w-]+`(?:, )?)+)\)", flat)
    assert m, "no `agent-analytics setup ...` (or ...) sentence"
    return [m[1], *re.findall(r"`([\w-]+)`", m[2])]


def test_the_guides_name_every_agent_and_set_up_target():
    """A new agent's docs (docs/contributing.md): beyond the sources tables above, its section in
    the OpenTelemetry guide and its row in the table there, its *What to set* panel in the
    dashboards guide, and its `setup` target wherever the guides list them."""
    otel = (DOCS / "opentelemetry.md").read_text()
    intro = otel[:otel.index("\n## ")]
    for a in sources.AGENTS:
        assert re.search(rf"^## {re.escape(a.name)}\b", otel, re.M), f"opentelemetry.md: no section for {a.name}"
        assert re.search(rf"^\| {re.escape(a.name)}\b", intro, re.M), f"opentelemetry.md: no row for {a.name}"
    readme = (DOCS.parent / "README.md").read_text()
    assert _or_list(otel) == _or_list(readme) == list(TARGETS)
    command = re.search(r"`agent-analytics setup ([\w\\|-]+)`", readme)
    assert command and command[1].split("\\|") == list(TARGETS)
    row = next(line for line in (DOCS / "dashboards.md").read_text().splitlines()
               if line.startswith("| What to set: "))
    title, what = row.strip("|").split("|")[:2]
    assert title.strip().removeprefix("What to set: ").split(", ") == list(TITLES.values())
    assert set(re.findall(r"`(?:agent-analytics setup )?([\w-]+)`", what)) >= set(TARGETS)
