"""Raw fact rows written straight into the tables (COPY), for schema and operations tests."""
from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg

from tests.harness_support import refresh_aggregates


def raw_rows(seed: int = 7, t0: datetime = datetime(2026, 3, 1, tzinfo=timezone.utc), days: int = 3):
    """A few hundred facts over three days, spread across every grouping column."""
    rng = random.Random(seed)
    tool_calls, llm, points = [], [], []
    for i in range(400):
        t = t0 + timedelta(seconds=rng.randrange(days * 86400))
        outcome = rng.choice(["ok", "ok", "error", "blocked"])
        pol = rng.choice(["p1", "p2"]) if outcome == "blocked" else None
        tool_calls.append((t, hashlib.sha256(f"tc{i}".encode()).digest(), rng.choice(["gateway", "claude_code"]),
                           rng.choice(["ann@x", "bob@x", None]), rng.choice(["claude-code", "codex"]),
                           rng.choice(["i1", "i2", "i3"]), rng.choice(["github", "jira"]),
                           rng.choice(["search", "create", "list"]), outcome, rng.choice([None, rng.uniform(1, 900)]),
                           pol, f"name-{pol}" if pol else None, f"desc-{pol}" if pol else None))
        cost = Decimal(rng.randrange(0, 10**6)) / Decimal(10**8)
        llm.append((t, hashlib.sha256(f"llm{i}".encode()).digest(), "claude_code", f"s{i % 17}",
                    rng.choice(["ann@x", "bob@x"]), "claude-code", "anthropic",
                    rng.choice(["claude-sonnet-4-5", "claude-haiku-4-5"]), rng.randrange(5000), rng.randrange(3000),
                    rng.randrange(90000), rng.randrange(4000), cost, rng.choice([cost, None]),
                    rng.uniform(100, 9000)))
        points.append((t, t - timedelta(minutes=1), hashlib.sha256(f"mp{i}".encode()).digest(), "claude_code",
                       f"s{i % 17}", "ann@x", "claude-code", "anthropic", "claude-sonnet-4-5",
                       rng.choice(["tokens", "cost"]), float(rng.randrange(1, 10000))))
    return tool_calls, llm, points


def enforcement_rows(tool_calls: list[tuple]) -> list[tuple]:
    """One agent enforcement fact (migration 0012) at the time of each of raw_rows' tool calls,
    keyed by the call's key: decisions, sandbox outcomes and MCP server connections across every
    grouping column, as many and over the same days as the calls."""
    out = []
    for call in tool_calls:
        t, key = call[0], hashlib.sha256(b"ae" + call[1]).digest()
        rng = random.Random(key)
        kind = rng.choice(["decision", "decision", "sandbox", "mcp_connection"])
        source = "codex" if kind == "sandbox" else rng.choice(["claude_code", "codex"])
        user, instance = rng.choice(["ann@x", "bob@x", None]), rng.choice(["i1", "i2", None])
        session = f"s{rng.randrange(11)}"
        if kind == "mcp_connection":
            outcome = rng.choice(["connected", "failed", "disconnected"])
            out.append((t, key, source, kind, user, instance, session, rng.choice(["github", "broken"]), None,
                        outcome, None, None, rng.choice(["ENOENT", "ECONNREFUSED"]) if outcome == "failed" else None,
                        False, None, None))
            continue
        outcome = "denied" if kind == "sandbox" else rng.choice(["accept", "accept", "reject"])
        dsource = "sandbox" if kind == "sandbox" else rng.choice(["config", "hook", "user_temporary", "user_abort"])
        blocked = outcome == "denied" or (outcome == "reject" and dsource != "user_abort")
        pol = f"pol-{dsource}" if blocked else None
        out.append((t, key, source, kind, user, instance, session, rng.choice([None, "github"]),
                    rng.choice(["Bash", "Write", "exec_command"]), outcome, dsource,
                    rng.choice(["default", "acceptEdits", "bypassPermissions", None]), None, blocked, pol,
                    f"name-{pol}" if pol else None))
    return out


PRODUCTIVITY_METRICS = ("lines_added", "lines_removed", "commits", "pull_requests", "edits_accepted",
                        "edits_rejected", "active_seconds")


def productivity_rows(llm: list[tuple]) -> list[tuple]:
    """One productivity point (migration 0015) at the time of each of raw_rows' LLM requests, in
    its session and of its user, keyed by the request's key: every metric, with the attributes its
    kind carries (lines a model, edit decisions a language, tool and decider)."""
    out = []
    for r in llm:
        key = hashlib.sha256(b"pp" + r[1]).digest()
        rng = random.Random(key)
        metric = rng.choice(PRODUCTIVITY_METRICS)
        lines, edit = metric.startswith("lines"), metric.startswith("edits")
        out.append((r[0], r[0] - timedelta(minutes=1), key, "claude_code", r[3], rng.choice([r[4], None]), r[5],
                    r[7] if lines else "unknown", metric, rng.choice(["Python", "TypeScript"]) if edit else "",
                    rng.choice(["Edit", "Write"]) if edit else "", rng.choice(["config", "user_reject"]) if edit else "",
                    "cli" if metric == "active_seconds" else "", float(rng.randrange(1, 200))))
    return out


def load_raw_rows(url: str, rows=None, refresh: bool = True, health: bool = False) -> None:
    """`rows` (raw_rows' three lists, by default raw_rows()), and enforcement_rows of its calls and
    productivity_rows of its requests where the schema has their tables; `health`: API errors and
    the requests' health columns too (_health_rows)."""
    tool_calls, llm, points = rows or raw_rows()
    with psycopg.connect(url, autocommit=True) as c:
        with c.cursor().copy("COPY tool_calls (time, source_key, source, user_id, agent_id, agent_instance_id,"
                             " mcp_server_id, tool_name, outcome, duration_ms, policy_id, policy_name,"
                             " policy_description) FROM STDIN") as cp:
            for r in tool_calls:
                cp.write_row(r)
        with c.cursor().copy("COPY llm_requests (time, source_key, source, session_id, user_id, agent_id, provider,"
                             " model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,"
                             " reported_cost_usd, estimated_cost_usd, latency_ms) FROM STDIN") as cp:
            for r in llm:
                cp.write_row(r)
        with c.cursor().copy("COPY metric_points (time, start_time, source_key, source, session_id, user_id,"
                             " agent_id, provider, model, metric, value) FROM STDIN") as cp:
            for r in points:
                cp.write_row(r)
        if c.execute("SELECT to_regclass('agent_enforcement') IS NOT NULL").fetchone()[0]:  # (migration 0012)
            with c.cursor().copy("COPY agent_enforcement (time, source_key, source, kind, user_id, agent_instance_id,"
                                 " session_id, mcp_server_id, tool_name, outcome, decision_source, permission_mode,"
                                 " error_code, blocked, policy_id, policy_name) FROM STDIN") as cp:
                for r in enforcement_rows(tool_calls):
                    cp.write_row(r)
        if c.execute("SELECT to_regclass('productivity_points') IS NOT NULL").fetchone()[0]:  # (migration 0015)
            with c.cursor().copy("COPY productivity_points (time, start_time, source_key, source, session_id,"
                                 " user_id, agent_id, model, metric, language, tool_name, decided_by, activity,"
                                 " value) FROM STDIN") as cp:
                for r in productivity_rows(llm):
                    cp.write_row(r)
        if health:
            _health_rows(c)
        if refresh:  # the schema is complete: what the receiver would keep, then the aggregates
            c.execute("SELECT aa_rebuild_session_totals()")
            refresh_aggregates(c)


def _health_rows(c) -> None:
    """API errors, and the requests' time to first token, main thread or subagent, effort and
    speed (migration 0013), derived from each row's key so that both backends hold the same;
    left out on a schema from before 0013 (the upgrade tests)."""
    if not c.execute("SELECT 1 FROM information_schema.columns WHERE table_name = 'llm_requests'"
                     " AND column_name = 'ttft_ms'").fetchone():
        return
    c.execute("""UPDATE llm_requests SET
        ttft_ms = CASE WHEN get_byte(source_key, 1) % 4 <> 0 THEN 10 + get_byte(source_key, 2) END,
        query_source = CASE WHEN get_byte(source_key, 3) % 3 = 0 THEN 'subagent' ELSE 'main' END,
        agent_name = CASE WHEN get_byte(source_key, 3) % 3 = 0
                          THEN (ARRAY['Explore', 'reviewer'])[get_byte(source_key, 4) % 2 + 1] END,
        effort = (ARRAY['high', 'medium', NULL])[get_byte(source_key, 5) % 3 + 1],
        speed = (ARRAY['normal', 'fast'])[get_byte(source_key, 6) % 2 + 1]""")
    c.execute("""UPDATE metric_points SET
        query_source = CASE WHEN get_byte(source_key, 3) % 3 = 0 THEN 'subagent' ELSE 'main' END,
        agent_name = CASE WHEN get_byte(source_key, 3) % 3 = 0 THEN 'Explore' END,
        effort = (ARRAY['high', NULL])[get_byte(source_key, 5) % 2 + 1]""")
    c.execute("""INSERT INTO llm_errors (time, source_key, source, session_id, user_id, agent_id, provider, model,
                                         error, status_code, kind, attempt)
        SELECT time, sha256(source_key), source, session_id, user_id, agent_id, provider, model, 'Overloaded',
               (ARRAY[529, 500, 429])[get_byte(source_key, 7) % 3 + 1],
               CASE WHEN get_byte(source_key, 8) % 4 = 0 THEN 'retries_exhausted' ELSE 'error' END,
               1 + get_byte(source_key, 9) % 4
        FROM llm_requests WHERE get_byte(source_key, 10) % 3 = 0
        ON CONFLICT DO NOTHING""")
