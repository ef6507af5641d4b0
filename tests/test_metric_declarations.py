"""Each metric is one declaration in its tab's module (no database): the catalog collects them,
every one carries its builder and, when it reads a dataset, what the "choose aggregate" stage
needs to know. Forgetting a part fails at import, not silently at query time."""
from __future__ import annotations

import pytest

from agent_analytics.datasource import catalog, declare, engine, llm, mcp, security, sessions, telemetry, value
from agent_analytics.datasource.catalog import COUNT, MCP_FILTERS, Metric
from agent_analytics.datasource.relations import (EXECUTED, GATEWAY_DEDUPE, LLM_USAGE, TOOL_CALLS, Reads,
                                                  choose_aggregate, reads)

BODY = "SELECT coalesce(sum(calls), 0) AS v FROM src"


def test_the_catalog_is_the_tab_modules_declarations():
    modules = {"mcp": mcp, "llm": llm, "sessions": sessions, "security": security, "telemetry": telemetry,
               "value": value}
    collected = [m for tab in ("mcp", "llm", "sessions", "security", "telemetry", "value") for m in modules[tab].METRICS]
    assert list(catalog.METRICS) == collected
    for tab, module in modules.items():
        assert {m.tab for m in module.METRICS} == {tab}, module.__name__
    assert len(catalog.BY_ID) == len(catalog.METRICS)
    assert engine.HANDLERS == {m.id: m.build for m in catalog.METRICS}
    assert all(callable(m.build) for m in catalog.METRICS)


def test_what_each_metric_reads_is_checked_against_its_dataset():
    for m in catalog.METRICS:
        if m.reads is None:
            continue
        assert isinstance(m.reads, Reads), m.id
        keys = m.reads.dataset.keys | {GATEWAY_DEDUPE}
        assert (m.reads.needs or frozenset()) <= keys and m.reads.rows.needs <= keys, m.id
        if m.kind == "timeseries":
            assert m.reads.time, f"{m.id}: a series looks at the time"


def test_a_declaration_without_needs_fails_at_import():
    with pytest.raises(TypeError, match="needs"):
        declare.stat("mcp_tool_errors", "mcp", "Tool errors", COUNT, MCP_FILTERS, "", TOOL_CALLS, EXECUTED,
                     body=BODY)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="needs"):
        declare.top("mcp_top_x", "mcp", "Top", (), catalog.col("n"), MCP_FILTERS, "", TOOL_CALLS, EXECUTED,
                    body=BODY)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="time"):
        reads(TOOL_CALLS, EXECUTED, ())  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="reads"):
        Metric("mcp_x", "mcp", "bars", "X", COUNT, (), MCP_FILTERS, "", build=lambda e, q: None)  # type: ignore[call-arg]


def test_needs_naming_a_column_the_dataset_lacks_fail_at_import():
    with pytest.raises(ValueError, match="user"):
        reads(TOOL_CALLS, EXECUTED, ("user",), time=False)  # the filter's name, not its column
    with pytest.raises(ValueError, match="tool_name"):
        reads(LLM_USAGE, EXECUTED, ("tool_name",), time=False)  # a condition on another dataset's columns


def test_a_new_stat_picks_its_rollup_and_daily_twin_from_its_declaration():
    """The walk-through's example (docs/contributing.md), declared as a tab module would."""
    errors = declare.stat("mcp_tool_errors", "mcp", "Tool errors", COUNT, MCP_FILTERS, "Tool calls that failed.",
                          TOOL_CALLS, EXECUTED, needs=(),
                          body="SELECT coalesce(sum(calls) FILTER (WHERE outcome = 'error'), 0) AS v FROM src")
    assert errors.reads is not None and errors.reads.time is False
    assert choose_aggregate(TOOL_CALLS, errors.reads.needs, [], EXECUTED)[0] == "tool_calls_totals_hourly"
    assert choose_aggregate(TOOL_CALLS, errors.reads.needs, ["user"], EXECUTED)[0] == "tool_calls_by_user_hourly"
    assert [c.name for c in errors.columns] == ["value", "previous", "change_pct"]
    assert catalog.describe(errors)["permission"] == "query"
