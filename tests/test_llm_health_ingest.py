"""LLM health from the real captures, on both backends: API errors and retries given up, request
durations and times to first token, who made each request (main thread or subagent) and how
(effort, speed), stored and rolled up exactly as the events, metric points and the stand-in API's
ledgers say (tests/llm_health_support.py reads those independently of the receiver)."""
from __future__ import annotations

from collections import Counter
from decimal import Decimal

from tests.llm_health_support import CLAUDE, CODEX, expected, ledger, post_scenarios

from tests.harness_support import refresh_aggregates


def _rollup(conn, relation: str, keys: str, measures: str) -> list[tuple]:
    return conn.execute(f"SELECT {keys}, {measures} FROM {relation} GROUP BY {keys} ORDER BY {keys}").fetchall()


def test_errors_and_retries_given_up_by_status_and_model(client, conn):
    post_scenarios(client)
    refresh_aggregates(conn)
    want = expected()
    assert want.errors, "the captures hold api errors"
    for relation in ("llm_errors", "llm_errors_hourly", "llm_errors_by_model_hourly", "llm_errors_by_model_daily",
                     "llm_errors_by_user_daily"):
        counted = "count(*)" if relation == "llm_errors" else "sum(errors)"
        got = conn.execute(f"SELECT model, kind, status_code, {counted} FROM {relation}"
                           " GROUP BY model, kind, status_code").fetchall()
        assert Counter({(m, k, s): n for m, k, s, n in got}) == Counter(
            {(m, k, s): n for (_, m, k, s), n in want.errors.items()}), relation
    for relation in ("llm_errors_totals_hourly", "llm_errors_totals_daily"):
        got = conn.execute(f"SELECT kind, sum(errors) FROM {relation} GROUP BY kind").fetchall()
        assert Counter({(kind,): n for kind, n in got}) == _by(want.errors, (2,)), relation
    by_source = Counter({(src, kind): n for src, kind, n in conn.execute(
        "SELECT source, kind, sum(errors) FROM llm_errors_hourly GROUP BY source, kind")})
    assert by_source == _by(want.errors, (0, 2))

    # Against the stand-in's ledger. Always failing: the one api_error is the last of the
    # ledger's attempts, and Claude Code then gives up (api_retries_exhausted, total_attempts).
    for scenario in ("api-always-500", "api-always-529"):
        session = want.sessions[CLAUDE + scenario]
        failed = [r for r in ledger(CLAUDE + scenario) if r["status"] >= 400]
        rows = conn.execute("SELECT kind, attempt, status_code FROM llm_errors WHERE session_id = %s ORDER BY kind",
                            (session,)).fetchall()
        status = {r["status"] for r in failed}
        assert len(status) == 1
        assert rows == [("error", len(failed), *status), ("retries_exhausted", len(failed), *status)]
    # Failures retried into a success send nothing: the ledger's two failures leave no row.
    session = want.sessions[CLAUDE + "api-529-500-then-ok"]
    assert [r["status"] for r in ledger(CLAUDE + "api-529-500-then-ok")][:2] == [529, 500]
    assert conn.execute("SELECT count(*) FROM llm_errors WHERE session_id = %s", (session,)).fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM llm_requests WHERE session_id = %s", (session,)).fetchone()[0] == sum(
        1 for r in ledger(CLAUDE + "api-529-500-then-ok") if r["status"] == 200)
    # Codex sends every failed attempt (counted from 1 here, as Claude Code counts).
    session = want.sessions[CODEX + "retries-exhausted"]
    attempts = [a for (a,) in conn.execute("SELECT attempt FROM llm_errors WHERE session_id = %s ORDER BY time",
                                           (session,))]
    assert attempts == want.attempts[session]
    assert min(attempts) == 1 and len(attempts) <= len(ledger(CODEX + "retries-exhausted"))


def _by(counter: Counter, positions: tuple[int, ...]) -> Counter:
    out: Counter = Counter()
    for key, n in counter.items():
        out[tuple(key[i] for i in positions)] += n
    return out


def test_durations_and_time_to_first_token_kept_to_the_millisecond(client, conn):
    post_scenarios(client)
    refresh_aggregates(conn)
    want = expected()
    assert want.durations and want.ttfts
    for column, values in (("latency_ms", want.durations), ("ttft_ms", want.ttfts)):
        rollup = "llm_latency" if column == "latency_ms" else "llm_ttft"
        oracle = {(model, v): n for model, vs in values.items() for v, n in Counter(vs).items()}
        for relation in (f"{rollup}_hourly", f"{rollup}_daily", f"{rollup}_by_model_hourly", f"{rollup}_by_model_daily"):
            got = {(m, v): n for m, v, n in _rollup(conn, relation + " WHERE provider = 'anthropic'",
                                                    f"model, {column}", "sum(requests)")}
            assert got == oracle, relation


def test_tokens_and_cost_by_main_thread_subagent_effort_and_speed(client, conn):
    post_scenarios(client)
    refresh_aggregates(conn)
    want = expected()
    assert {k[0] for k in want.by_origin} == {"main", "subagent"}
    assert {k[1] for k in want.by_origin} >= {"general-purpose", "Explore", "reviewer"}
    tokens = ("sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0) + coalesce(cache_read_tokens, 0)"
              " + coalesce(cache_write_tokens, 0))")
    keys = "query_source, agent_name, effort, speed"
    for relation in ("llm_usage_by_origin_hourly", "llm_usage_by_origin_daily"):
        got = {(q, n, e, s): [t, c] for q, n, e, s, t, c in _rollup(
            conn, relation + " WHERE provider = 'anthropic'", keys, f"{tokens}, sum(reported_cost_usd)")}
        assert got == {k: list(v) for k, v in want.by_origin.items()}, relation
    # The same from the metric points (query_source main | subagent, agent.name, effort).
    keys = "query_source, agent_name, effort"
    for relation in ("llm_metric_usage_by_origin_hourly", "llm_metric_usage_by_origin_daily"):
        got = {(q, n, e): [t, c] for q, n, e, t, c in _rollup(
            conn, relation, keys, f"{tokens}, sum(reported_cost_usd)")}
        oracle = {k: v for k, v in want.points_by_origin.items()}
        assert got.keys() == oracle.keys(), relation
        for k, (t, c) in oracle.items():
            assert got[k][0] == t, (relation, k)
            # The subagents session sent events: its points' cost does not count (its events' does).
            assert got[k][1] is None, (relation, k)
    # Against the ledger: the stand-in saw the main thread's and the subagents' requests apart,
    # and both the events and the metric points split the same tokens the same way.
    by_ctx = Counter()
    for r in ledger(CLAUDE + "subagents"):
        by_ctx["main" if r["ctx"] == "main" else "subagent"] += (
            r["input"] + r["cache_read"] + r["cache_write"] + r["output"])
    session = want.sessions[CLAUDE + "subagents"]
    for relation in ("llm_session_agents_hourly", "session_metric_agents_hourly"):
        got = Counter({q: int(t) for q, t in conn.execute(
            f"SELECT query_source, {tokens} FROM {relation} WHERE session_id = %s GROUP BY query_source",
            (session,))})
        assert got == by_ctx, relation


def test_existing_rows_gain_the_new_columns_on_upgrade(client, conn):
    """Rows stored before migration 0013 take their values from their attributes, as new rows do."""
    post_scenarios(client, (CLAUDE + "subagents", CLAUDE + "api-always-529", CODEX + "retries-exhausted"))
    fresh = conn.execute("SELECT source_key, ttft_ms, query_source, agent_name, effort, speed FROM llm_requests"
                         " ORDER BY source_key").fetchall()
    # (api_retries_exhausted were not stored before 0013: only errors were.)
    errors = conn.execute("SELECT source_key, attempt, query_source, agent_name FROM llm_errors"
                          " WHERE kind = 'error' ORDER BY source_key").fetchall()
    assert {r[1] for r in errors} >= {1, 4}
    assert any(r[3] for r in fresh) and any(r[4] for r in fresh)
    conn.execute("UPDATE llm_requests SET ttft_ms = NULL, query_source = NULL, agent_name = NULL, effort = NULL,"
                 " speed = NULL")
    conn.execute("DELETE FROM llm_errors WHERE kind <> 'error'")
    conn.execute("UPDATE llm_errors SET attempt = NULL, query_source = NULL, agent_name = NULL")
    conn.execute(_migration_updates())
    assert conn.execute("SELECT source_key, ttft_ms, query_source, agent_name, effort, speed FROM llm_requests"
                        " ORDER BY source_key").fetchall() == fresh
    assert conn.execute("SELECT source_key, attempt, query_source, agent_name FROM llm_errors"
                        " ORDER BY source_key").fetchall() == errors


def _migration_updates() -> str:
    from importlib import resources
    text = resources.files("agent_analytics.sql").joinpath("migrations/0013_llm_health.sql").read_text()
    return text[text.index("UPDATE llm_requests"):]


def test_cost_by_origin_is_the_reported_cost(client, conn):
    """The rollup's cost per origin adds up to every api_request's cost_usd (nothing lost)."""
    post_scenarios(client)
    refresh_aggregates(conn)
    want = expected()
    total = conn.execute("SELECT sum(reported_cost_usd) FROM llm_usage_by_origin_daily"
                         " WHERE provider = 'anthropic'").fetchone()[0]
    assert total == sum((v[1] for v in want.by_origin.values()), Decimal(0))


def test_an_attempt_that_is_no_count_leaves_the_error_stored_with_its_attempt_unknown():
    """Bad input loses nothing else: a failed request whose `attempt` is no count is still an error."""
    from agent_analytics.ingest import normalise
    from agent_analytics.ingest.rows import Context
    from tests.ingest_support import log_events, logs_fixture, set_value

    want = []
    for name, bad in ((CODEX + "retries-exhausted-logs-1.pb", "lots"),
                      (CLAUDE + "api-always-529-logs-2.pb", 1e300)):
        req = logs_fixture(name)
        records = [rec for _, rec in log_events(req)]
        for rec in records:
            for kv in rec.attributes:
                if kv.key in ("attempt", "total_attempts"):
                    set_value(kv.value, bad)
        batch = normalise.logs(req, Context.now())
        assert not batch.rejections
        assert batch.llm_errors and all(e.attempt is None for e in batch.llm_errors), name
        want.append(len(batch.llm_errors))
    assert want[0] == 2 and want[1] == 2  # two failed attempts; an api_error and its api_retries_exhausted
