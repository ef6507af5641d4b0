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
