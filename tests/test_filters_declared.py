"""The filter declarations (datasource/filters.py) are coherent with the relations they filter:
each filter's predicate names the columns it declares, and every dataset a filter applies to has
those columns under the same name in its aggregate and its raw projections (otherwise the filter
would fail as SQL on one path, or, with a column missing from FILTER_COLUMNS, read a rollup that
does not hold it)."""
from __future__ import annotations

import re

import pytest

from agent_analytics.datasource import relations
from agent_analytics.datasource.filters import DECLARED, FILTERS, SCOPES, applying_to
from agent_analytics.datasource.params import FilterValues, JsonApiSchema, OptionsSchema
from tests.walkthrough_support import run_in_child

DATASETS = {name: ds for name, ds in vars(relations).items() if isinstance(ds, relations.Dataset)}


def _split_top_level(columns: str) -> list[str]:
    """A SELECT list split at the commas outside parentheses."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(columns):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            items.append(columns[start:i].strip())
            start = i + 1
    items.append(columns[start:].strip())
    return items


def output_names(columns: str) -> set[str]:
    """The names a SELECT list gives its columns: the alias, or the bare column."""
    names = set()
    for item in _split_top_level(columns):
        alias = re.search(r"\sAS\s+(\w+)$", item)
        names.add(alias.group(1) if alias else item)
    return names


def test_the_column_parser_reads_aliases_and_bare_columns():
    assert output_names("bucket AS time, user_id, coalesce(start_time, time) AS first_time, "
                        "CASE WHEN a = 'x' THEN v END AS x_tokens") == {"time", "user_id", "first_time", "x_tokens"}


def test_datasets_are_found():
    assert {"TOOL_CALLS", "LLM_USAGE", "LLM_METRIC_USAGE", "LLM_SESSIONS", "SESSION_METRICS"} <= set(DATASETS)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_filter_of_a_dataset_reads_columns_it_has(name):
    ds = DATASETS[name]
    assert ds.filterable
    for projection in (ds.agg_columns, ds.raw_columns):
        have = output_names(projection)
        for f in ds.filterable:
            assert FILTERS[f].columns <= have, (name, f, FILTERS[f].columns - have)


@pytest.mark.parametrize("f", DECLARED, ids=lambda f: f.name)
def test_a_predicate_reads_the_columns_it_declares(f):
    # Placeholders only: values are always bound, never written into the text.
    assert f.predicate.count("%s") >= 1 and "%(" not in f.predicate
    for column in f.columns:
        assert re.search(rf"\b{column}\b", f.predicate), (f.name, column)
    assert f.scopes and f.scopes <= set(SCOPES)


def test_each_filter_is_a_request_field_of_both_faces():
    for schema in (OptionsSchema, JsonApiSchema):
        declared = {k for k, v in schema._declared_fields.items() if isinstance(v, FilterValues)}
        assert declared == set(FILTERS)


def test_the_filter_tuples_keep_the_declaration_order():
    order = list(FILTERS)
    for scope in SCOPES:
        names = applying_to(scope)
        assert names and [order.index(n) for n in names] == sorted(order.index(n) for n in names)


def test_the_query_editor_labels_filter_fields_as_declared():
    """POST /grafana/metrics (no database needed): each filter payload field carries its label."""
    from agent_analytics.app import create_app
    from agent_analytics.config import Config
    from tests.harness_support import QUERY_TOKEN

    app = create_app(Config(database_url="postgresql://nobody@127.0.0.1:9/none", query_tokens=(QUERY_TOKEN,),
                            db_timeout_s=1, db_pool_size=1), role="query")
    try:
        metrics = app.test_client().post("/grafana/metrics", json={},
                                         headers={"Authorization": f"Bearer {QUERY_TOKEN}"}).get_json()
    finally:
        app.extensions["aa_db"].close()
    top_tools = next(m for m in metrics if m["value"] == "mcp_top_tools")
    labels = {p["name"]: p["label"] for p in top_tools["payloads"] if p["type"] == "multi-select"}
    assert set(labels) == set(applying_to("mcp"))
    assert labels == {name: FILTERS[name].label for name in labels}
    assert (labels["mcp"], labels["agent_instance"]) == ("MCP", "Agent instance")


# The dashboards each scope's filters are on, as the guide names them.
_TAB_NAMES = {"mcp": {"MCP Usage", "Security"}, "llm": {"LLM Usage"}, "session": {"Session timeline"}}


def _documented_filters() -> list[tuple[list[str], str]]:
    """docs/dashboards.md's filter table: per row, the labels it names and the tabs it says."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "dashboards.md").read_text()
    table = text.split("**Filters** are the dashboard variables", 1)[1].split("\n\n", 2)[1]
    rows = [line.strip("|").split("|") for line in table.splitlines()[2:]]
    return [([label.strip() for label in cells[0].split(",")], cells[1].strip()) for cells in rows]


def test_the_dashboards_guide_lists_exactly_the_declared_multi_value_filters_with_their_tabs():
    documented = _documented_filters()
    labels = [label for row, _ in documented for label in row]
    assert sorted(labels) == sorted(f.label for f in DECLARED if f.multi)
    by_label = {f.label: f for f in DECLARED}
    for row, tabs in documented:
        scopes = {by_label[label].scopes for label in row}
        assert len(scopes) == 1, row  # one row, one set of tabs
        scope = scopes.pop()
        if scope == frozenset(SCOPES):
            assert tabs == "all tabs", row
        else:
            named = {name for names in _TAB_NAMES.values() for name in names if name in tabs}
            assert named == set().union(*(_TAB_NAMES[key] for key in scope)), (row, tabs)


def test_a_new_filter_is_one_declaration_and_everything_else_derives_from_it():
    """docs/contributing.md's walk-through: the `tool` filter declared in filters.DECLARED, and
    nothing else edited, reaches the catalog, both faces' request schemas, the OpenAPI document,
    the "choose aggregate" stage and both variants of the dashboards (tests/walkthrough_support.py)."""
    run_in_child("new_filter_in_child")
