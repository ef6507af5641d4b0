"""Every metric against the oracle's independent answers from the generated rows: unfiltered, under
each filter and combinations, with pagination totals; through the JSON API (real Flask app,
real database, both backends)."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tests.datasource_dataset import ANCHOR, DATA, TOKEN_TYPES, UTC, Oracle, hour_buckets
from tests.datasource_support import api, assert_rows, ms, same

ORACLE = Oracle(DATA)
W_START = ANCHOR - timedelta(days=7)   # not on an hour: the edges come from the raw tables
W_END = ANCHOR

MCP_FILTER_SETS: list[dict[str, Any]] = [
    {},
    {"user": "user2@example.com"},
    {"user": ["user1@example.com", "user4@example.com"]},
    {"group": "g-eng"},
    {"group": ["g-eng", "g-ops"]},
    {"group": "g-empty"},
    {"agent_instance": ["inst-03", "inst-07"]},
    {"agent": "codex"},
    {"mcp": ["fs", "db"]},
    {"agent_tag": "prod"},
    {"resource_tag": "dangerous"},
    {"resource_tag": ["internal", "tickets"]},
    {"agent_tag": "cli", "mcp": "github", "group": "g-ops"},
    {"user": "$__all", "group": ["$__all"], "resource_tag": "internal"},
    # Attribution: the dimensions, and a group with a rule mapping their values (tests/attribution_data.py).
    {"team": "t-red"},
    {"department": ["ops"], "mcp": "github"},
    {"cost_center": "cc-2", "group": "g-eng"},
]
LLM_FILTER_SETS: list[dict[str, Any]] = [
    {},
    {"user": "user3@example.com"},
    {"group": "g-ops"},
    {"provider": "anthropic"},
    {"model": ["gpt-5", "llama-unpriced"]},
    {"provider": "openai", "group": ["g-eng", "g-ops"]},
    {"model": "All", "user": ["user1@example.com", "user5@example.com", "user6@example.com"]},
    {"team": ["t-red", "t-green"]},
    {"department": "eng", "provider": "anthropic"},
    {"cost_center": "cc-1", "group": "g-ops"},
]

MCP_STATS = ["mcp_tool_executions", "mcp_unique_tools", "mcp_active_agent_instances", "mcp_active_users",
             "security_blocked_calls"]
MCP_TOPS = ["mcp_top_tools", "mcp_top_agent_instances", "mcp_top_users", "mcp_top_mcps",
            "security_top_blocked_tools", "security_top_blocked_agent_instances", "security_top_blocked_users",
            "security_top_blocked_mcps", "security_top_policies", "mcp_executions_by_team"]
LLM_TOPS = ["llm_top_users_by_tokens", "llm_top_users_by_cost", "llm_top_models_by_tokens", "llm_top_models_by_cost",
            "llm_cost_by_department", "llm_cost_by_team", "llm_cost_by_cost_center", "llm_cache_hit_ratio_by_user"]


def test_mcp_and_security_metrics_match_the_raw_rows(ds_client):
    prev = (W_START - (W_END - W_START), W_START)
    for f in MCP_FILTER_SETS:
        for metric in MCP_STATS:
            body = api(ds_client, metric, W_START, W_END, **f)
            assert body["kind"] == "stat"
            [row] = body["rows"]
            want, want_prev = ORACLE.stat(metric, W_START, W_END, f), ORACLE.stat(metric, *prev, f)
            assert (row["value"], row["previous"]) == (want, want_prev), (metric, f)
            expected_change = (want - want_prev) / want_prev * 100 if want_prev else None
            assert same(row["change_pct"], expected_change)
        for metric in MCP_TOPS:
            want = ORACLE.top(metric, W_START, W_END, f)
            body = api(ds_client, metric, W_START, W_END, page_size=1000, **f)
            assert body["total"] == len(want), (metric, f)
            assert_rows(body["rows"], want, (metric, f))
        hourly = api(ds_client, "mcp_hourly_distribution", W_START, W_END, **f)["rows"]
        assert [r["hour"] for r in hourly] == list(range(24))
        assert [r["executions"] for r in hourly] == ORACLE.hourly(W_START, W_END, f), f
    # The whole range (two months): aggregates and raw edges together.
    whole = (ANCHOR - timedelta(days=70), ANCHOR + timedelta(seconds=1))
    assert api(ds_client, "mcp_tool_executions", *whole)["rows"][0]["value"] == ORACLE.stat("mcp_tool_executions", *whole, {})


def test_tops_paginate_ten_per_page_with_their_total(ds_client):
    want = ORACLE.top("mcp_top_tools", W_START, W_END, {})
    assert len(want) > 10
    first = api(ds_client, "mcp_top_tools", W_START, W_END)
    assert (first["page"], first["page_size"], first["total"]) == (1, 10, len(want))
    assert_rows(first["rows"], want[:10], "page 1")
    second = api(ds_client, "mcp_top_tools", W_START, W_END, page=2)
    assert_rows(second["rows"], want[10:20], "page 2")
    beyond = api(ds_client, "mcp_top_tools", W_START, W_END, page=99)
    assert beyond["rows"] == [] and beyond["total"] == len(want)
    small = api(ds_client, "security_top_policies", W_START, W_END, page_size=2, page=2)
    assert_rows(small["rows"], ORACLE.top("security_top_policies", W_START, W_END, {})[2:4], "policies p2")


def test_renamed_policy_keeps_its_recorded_name_and_shows_todays(ds_client):
    before = api(ds_client, "security_top_policies", ANCHOR - timedelta(days=60), datetime(2026, 11, 10, 6, tzinfo=UTC))
    p2 = next(r for r in before["rows"] if r["policy_id"] == "p2")
    assert (p2["policy_name"], p2["current_name"], p2["renamed"]) == ("Block writes", "Block writes (strict) v3", True)
    after = api(ds_client, "security_top_policies", datetime(2026, 11, 10, 6, tzinfo=UTC), ANCHOR)
    p2 = next(r for r in after["rows"] if r["policy_id"] == "p2")
    assert p2["policy_name"] == "Block writes (strict)" and p2["policy_description"] == "Blocks all writes"
    gone = next(r for r in after["rows"] if r["policy_id"] == "p-gone")
    assert gone["current_name"] is None and gone["renamed"] is False


def test_llm_metrics_match_the_raw_rows(ds_client):
    prev = (W_START - (W_END - W_START), W_START)
    for f in LLM_FILTER_SETS:
        for metric in ("llm_total_tokens", "llm_total_cost", "llm_models_used"):
            [row] = api(ds_client, metric, W_START, W_END, **f)["rows"]
            assert same(row["value"], ORACLE.stat(metric, W_START, W_END, f)), (metric, f)
            assert same(row["previous"], ORACLE.stat(metric, *prev, f)), (metric, f)
            if metric == "llm_total_cost":  # what it could not price, never silent
                tokens, models = ORACLE.unpriced(W_START, W_END, f)
                assert (row["unpriced_tokens"], row["unpriced_models"]) == (tokens, models), f
        mix = api(ds_client, "llm_tokens_by_type", W_START, W_END, **f)["rows"]
        want = ORACLE.tokens_by_type(W_START, W_END, f)
        assert [(r["type"], r["tokens"]) for r in mix] == [(t, want[t]) for t in TOKEN_TYPES], f
        for metric in LLM_TOPS:
            want_rows = ORACLE.top(metric, W_START, W_END, f)
            body = api(ds_client, metric, W_START, W_END, page_size=1000, **f)
            assert body["total"] == len(want_rows)
            assert_rows(body["rows"], want_rows, (metric, f))
            # Each list answers its own columns (the user lists share their groups).
            assert all(set(r) == {c for c in want_rows[0]} for r in body["rows"]), metric
        # Hourly series over a 36-hour window (UTC), previous period shifted onto it.
        start, end = ANCHOR - timedelta(hours=36), ANCHOR
        for metric in ("llm_tokens_over_time", "llm_cost_over_time"):
            body = api(ds_client, metric, start, end, **f)
            assert body["meta"]["bucket"] == "hour"
            cur = hour_buckets(start, end)
            prev_b = hour_buckets(start - timedelta(hours=36), start)
            bucket_of = lambda t: t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)  # noqa: E731
            want_cur = ORACLE.series_values(metric, start, end, f, bucket_of)
            want_prev = ORACLE.series_values(metric, start - timedelta(hours=36), start, f, bucket_of)
            assert [r["time"] for r in body["rows"]] == [ms(b) for b in cur]
            for k, r in enumerate(body["rows"]):
                assert same(r["current"], want_cur.get(cur[k], 0)), (metric, f, k)
                assert same(r["previous"], want_prev.get(prev_b[k], 0)), (metric, f, k)


def test_llm_cost_follows_the_configured_cost_source(ds_app, ds_client):
    ds_app.config["AA"] = ds_app.config["AA"].replace(cost_source="reported")
    reported = Oracle(DATA, "reported")
    [row] = api(ds_client, "llm_total_cost", W_START, W_END)["rows"]
    assert same(row["value"], reported.stat("llm_total_cost", W_START, W_END, {}))
    assert not same(row["value"], ORACLE.stat("llm_total_cost", W_START, W_END, {}))
    # Unpriced stays null, never 0.
    ds_app.config["AA"] = ds_app.config["AA"].replace(cost_source="estimated")
    [row] = api(ds_client, "llm_total_cost", W_START, W_END, model="llama-unpriced")["rows"]
    assert ORACLE.llm(W_START, W_END, {"model": ["llama-unpriced"]}) and row["value"] is None


def test_llm_status_signals_the_empty_state(client, conn, ds_client):
    [row] = api(client, "llm_status", W_START, W_END)["rows"]  # an empty database
    assert row["has_data"] is False and row["setup_url"].startswith("http") and row["message"]
    # An LLM request without a session (a GenAI span) is data too.
    conn.execute("INSERT INTO llm_requests (time, source_key, source) VALUES (now(), '\\x01', 'genai')")
    [row] = api(client, "llm_status", W_START, W_END)["rows"]
    assert row["has_data"] is True
    [row] = api(ds_client, "llm_status", W_START, W_END)["rows"]
    assert row["has_data"] is True and row["message"] == ""
