"""Figures shared by the panels of one dashboard refresh (datasource/shared.py): computed once
for panels asking at the same moment with the same range, never served to another range, never
kept after a failure or past their time."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from agent_analytics.datasource.shared import Shared
from tests.datasource_dataset import ANCHOR
from tests.datasource_support import api


def test_concurrent_askers_wait_for_one_computation():
    shared = Shared()
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow():
        calls.append(1)
        started.set()
        release.wait(5)
        return {"n": 42}

    results = []
    threads = [threading.Thread(target=lambda: results.append(shared.get("k", slow))) for _ in range(4)]
    threads[0].start()
    started.wait(5)
    for t in threads[1:]:
        t.start()
    time.sleep(0.05)
    release.set()
    for t in threads:
        t.join(5)
    assert results == [{"n": 42}] * 4 and len(calls) == 1 and shared.computed == 1
    assert shared.get("other", lambda: 7) == 7 and shared.computed == 2


def test_a_failure_is_not_kept_and_entries_expire():
    shared = Shared(ttl_s=0.2)

    def boom():
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError):
        shared.get("k", boom)
    assert shared.get("k", lambda: 1) == 1  # computed afresh
    assert shared.get("k", lambda: 2) == 1  # shared while it lives
    time.sleep(0.25)
    assert shared.get("k", lambda: 3) == 3  # then gone


def test_session_panels_of_one_refresh_share_their_statistics(ds_app, ds_client):
    start, end = ANCHOR - timedelta(days=9), ANCHOR
    metrics = api(ds_client, "session_metrics", start, end)["rows"][0]
    shared = ds_app.extensions["aa_datasource_shared"]
    before = shared.computed
    table = api(ds_client, "sessions_table", start, end, page_size=1000)
    assert shared.computed == before  # the table's chips used the panel's statistics
    assert table["total"] == metrics["sessions"]
    # Another refresh (the range moved on) computes its own; so does another filter set.
    api(ds_client, "sessions_table", start, end - timedelta(milliseconds=1))
    api(ds_client, "session_metrics", start, end, provider="anthropic")
    assert shared.computed == before + 2


def test_llm_panels_of_one_refresh_share_their_queries(ds_app, ds_client):
    """Totals, token mix, cache hit ratio, the error rate's requests, the three series, both
    pairs of top lists and the cache hit ratio by user: the panels asking the same question of
    the same rows run it once per refresh (answers are checked against the raw rows in
    test_datasource_metrics)."""
    shared = ds_app.extensions["aa_datasource_shared"]
    start, end = ANCHOR - timedelta(days=7, minutes=3), ANCHOR - timedelta(minutes=1)

    def computed(metric: str, **f) -> int:
        before = shared.computed
        api(ds_client, metric, start, end, **f)
        return shared.computed - before

    assert computed("llm_total_tokens") == 2  # this range and the previous one
    # The totals, and (this data has unpriced models) the models' groups to name them.
    assert computed("llm_total_cost") == 1
    assert computed("llm_tokens_by_type") == 0
    assert computed("llm_tokens_over_time") == 2
    assert computed("llm_cost_over_time") == 0
    assert computed("llm_top_users_by_tokens") == 1
    assert computed("llm_top_users_by_cost") == 0
    assert computed("llm_cache_hit_ratio_by_user") == 0  # the users' groups hold their cache reads
    assert computed("llm_models_used") == 1  # from the models' groups: the previous range's
    assert computed("llm_top_models_by_cost") == 0
    assert computed("llm_top_models_by_tokens", page=2, page_size=2) == 0
    assert computed("llm_top_models_by_tokens", provider="anthropic") == 1  # another filter set
    # The cache hit ratio by user first: it computes the users' groups the top users then read.
    assert computed("llm_cache_hit_ratio_by_user", provider="anthropic") == 1
    assert computed("llm_top_users_by_tokens", provider="anthropic") == 0


def test_an_entry_lives_from_when_it_is_ready():
    shared = Shared(ttl_s=0.3)

    def slow():
        time.sleep(0.4)  # longer than the time to live
        return "ready"

    assert shared.get("k", slow) == "ready"
    assert shared.get("k", lambda: "again") == "ready"  # still shared right after
