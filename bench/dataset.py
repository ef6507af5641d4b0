"""A large, reproducible dataset for the benchmarks, written straight into the raw tables
with COPY (the practical ingest limit), then the aggregates refreshed.

    python -m bench.dataset --database-url URL --tool-calls 10000000 --llm-requests 5000000 --days 90

Same seed, same rows. The directory (users, groups, agents and tags, instances, MCP servers,
tools and tags, policies) is created to match, so every filter has something to select.

    python -m bench.dataset --database-url URL --only agent_enforcement   # one table's rows only

`--only` writes the named raw tables' rows (and refreshes the aggregates over them) into a database
generated before those tables existed, after `agent-analytics migrate` added them; the directory
(budgets included) is written each time, missing entries only.
"""
from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import random
import time
from datetime import datetime, timedelta, timezone

import psycopg

N_USERS, N_GROUPS, N_INSTANCES, N_MCPS, TOOLS_PER_MCP, N_POLICIES = 200, 10, 400, 20, 8, 12
AGENTS = [("claude-code", "Claude Code", ["coding"]), ("codex", "Codex", ["coding", "openai"]),
          ("support-bot", "Support bot", ["production"])]
MODELS = [("anthropic", "claude-sonnet-4-5", 3e-6, 15e-6), ("anthropic", "claude-haiku-4-5", 1e-6, 5e-6),
          ("anthropic", "claude-opus-4-1", 15e-6, 75e-6), ("openai", "gpt-5", 1.25e-6, 10e-6),
          ("openai", "gpt-5-mini", 0.25e-6, 2e-6), ("openai", "unknown-model", None, None)]
CHUNK = 100_000


def users() -> list[str]:
    return [f"user{i:03d}@example.com" for i in range(N_USERS)]


def directory(conn: psycopg.Connection, seed: int) -> None:
    rng = random.Random(seed)
    us = users()
    with conn.transaction():
        conn.cursor().executemany("INSERT INTO users (id, email, display_name) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                                  [(u, u, u.split("@")[0].title()) for u in us])
        conn.cursor().executemany("INSERT INTO groups (id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                                  [(f"team-{g}", f"Team {g}") for g in range(N_GROUPS)])
        conn.cursor().executemany("INSERT INTO group_members VALUES (%s, %s) ON CONFLICT DO NOTHING",
                                  [(f"team-{i % N_GROUPS}", u) for i, u in enumerate(us)])
        for aid, name, tags in AGENTS:
            conn.execute("INSERT INTO agents (id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING", (aid, name))
            for t in tags:
                conn.execute("INSERT INTO agent_tags VALUES (%s, %s) ON CONFLICT DO NOTHING", (aid, t))
        conn.cursor().executemany(
            "INSERT INTO agent_instances (id, agent_id, user_id, name) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [(f"inst-{i:04d}", AGENTS[i % len(AGENTS)][0], us[i % N_USERS], f"laptop-{i}") for i in range(N_INSTANCES)])
        for m in range(N_MCPS):
            conn.execute("INSERT INTO mcp_servers (id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                         (f"mcp-{m:02d}", f"MCP {m}"))
            conn.execute("INSERT INTO mcp_server_tags VALUES (%s, %s) ON CONFLICT DO NOTHING",
                         (f"mcp-{m:02d}", rng.choice(["internal", "external", "prod-data"])))
            for t in range(TOOLS_PER_MCP):
                conn.execute("INSERT INTO tools (mcp_server_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                             (f"mcp-{m:02d}", f"tool_{t}"))
                if t % 3 == 0:
                    conn.execute("INSERT INTO tool_tags VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                                 (f"mcp-{m:02d}", f"tool_{t}", "writes"))
        conn.cursor().executemany("INSERT INTO policies (id, name, description) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                                  [(f"pol-{p}", f"Policy {p}", f"Blocks category {p}") for p in range(N_POLICIES)])
        # Budgets (migration 0016): the organisation's month, each group's week, 20 users' days
        # and months; each is measured against its scope's LLM usage at query time.
        conn.cursor().executemany(
            "INSERT INTO budgets (id, name, scope, target, period, amount_usd, owner)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [("org-month", "Organisation", "organisation", None, "month", 200_000, us[0])]
            + [(f"team-{g}-week", f"Team {g}", "group", f"team-{g}", "week", 5_000, us[g]) for g in range(N_GROUPS)]
            + [(f"user-{i:03d}-{period}", f"User {i}", "user", us[i], period, amount, us[0])
               for i in range(0, N_USERS, 10) for period, amount in (("day", 40), ("month", 800))])


def _when(rng: random.Random, start: float, span: float) -> str:
    # Diurnal shape: office hours are busier.
    while True:
        t = start + rng.random() * span
        hour = int(t // 3600) % 24
        if rng.random() < (1.0 if 8 <= hour <= 18 else 0.35):
            return datetime.fromtimestamp(t, timezone.utc).isoformat()


def _tool_call_rows(args) -> int:
    url, seed, part, count, start, span = args
    rng = random.Random(seed * 1000 + part)
    us = users()
    n = 0
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY tool_calls (time, source_key, source, user_id, agent_id, agent_instance_id,"
                      " mcp_server_id, tool_name, outcome, duration_ms, policy_id, policy_name,"
                      " policy_description) FROM STDIN") as cp:
            for i in range(count):
                inst = rng.randrange(N_INSTANCES)
                r = rng.random()
                outcome = "ok" if r < 0.85 else "error" if r < 0.95 else "blocked"
                pol = rng.randrange(N_POLICIES) if outcome == "blocked" else None
                key = hashlib.sha256(f"{seed}:{part}:tc:{i}".encode()).hexdigest()
                cp.write("\t".join((
                    _when(rng, start, span), "\\\\x" + key, "gateway", us[inst % N_USERS],
                    AGENTS[inst % len(AGENTS)][0], f"inst-{inst:04d}", f"mcp-{rng.randrange(N_MCPS):02d}",
                    f"tool_{min(int(rng.expovariate(0.5)), TOOLS_PER_MCP - 1)}", outcome,
                    "\\N" if outcome == "blocked" else f"{rng.expovariate(1 / 250):.3f}",
                    "\\N" if pol is None else f"pol-{pol}", "\\N" if pol is None else f"Policy {pol}",
                    "\\N" if pol is None else f"Blocks category {pol}")) + "\n")
                n += 1
        conn.commit()
    return n


def _llm_rows(args) -> int:
    """LLM request events in sessions. Claude Code sessions also send what Claude Code sends:
    per-minute token.usage (per type) and cost.usage metric points, so their events do not
    count (`counted` false, as the receiver decides) and their metric points do."""
    url, seed, part, count, start, span = args
    rng = random.Random(seed * 2000 + part)
    us = users()
    n = 0
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        points: list[str] = []
        sessions: list[str] = []
        errors: list[str] = []
        with cur.copy("COPY llm_requests (time, source_key, source, session_id, user_id, agent_id, provider, model,"
                      " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reported_cost_usd,"
                      " estimated_cost_usd, cost_basis, latency_ms, counted, ttft_ms, query_source, agent_name,"
                      " effort, speed) FROM STDIN") as cp:
            while n < count:
                # A session: one user, one agent, 5-40 requests within a couple of hours.
                u = rng.randrange(N_USERS)
                provider, model, pin, pout = MODELS[rng.randrange(len(MODELS))]
                agent = "codex" if provider == "openai" else "claude-code"
                session = f"sess-{seed}-{part}-{n}"
                t0 = start + rng.random() * (span - 7200)
                first = t0
                # (minute, thread, subagent, effort) -> input, output, cache read, cache write, cost
                minutes: dict[tuple, list[float]] = {}
                for _ in range(min(rng.randint(5, 40), count - n)):
                    t0 += rng.expovariate(1 / 120)
                    inp, out = rng.randint(10, 5000), rng.randint(10, 3000)
                    cr, cw = rng.randint(0, 60000), rng.randint(0, 4000)
                    cost = None if pin is None else (inp + cw) * pin + cr * pin / 10 + out * pout
                    if pin is None:
                        est, basis = "\\N", "unpriced"
                    else:
                        est, basis = f"{cost:.12f}", "list-price"
                    key = hashlib.sha256(f"{seed}:{part}:llm:{n}".encode()).hexdigest()
                    latency = rng.uniform(300, 20000)
                    origin = _origin(agent, bytes.fromhex(key[:12]))
                    when = datetime.fromtimestamp(t0, timezone.utc).isoformat()
                    cp.write("\t".join((
                        when, "\\\\x" + key,
                        agent.replace("-", "_"), session, us[u], agent, provider, model, str(inp), str(out),
                        str(cr), str(cw), est if agent == "claude-code" else "\\N", est, basis,
                        f"{latency:.1f}", "f" if agent == "claude-code" else "t",
                        *_health(origin, latency))) + "\n")
                    if int(key[12:16], 16) % 33 == 0:  # about 3% of requests meet an API error
                        errors.append(_error(key, when, agent, session, us[u], provider, model, origin))
                    if agent == "claude-code":
                        m = minutes.setdefault((int(t0 // 60), *origin[1:4]), [0, 0, 0, 0, 0.0])
                        for i, v in enumerate((inp, out, cr, cw, cost or 0.0)):
                            m[i] += v
                    n += 1
                sessions.append("\t".join((session, agent, us[u], datetime.fromtimestamp(first, timezone.utc).isoformat(),
                                           datetime.fromtimestamp(t0, timezone.utc).isoformat(),
                                           "t" if minutes else "f")) + "\n")
                for (minute, *labels), sums in minutes.items():
                    t_end = datetime.fromtimestamp((minute + 1) * 60, timezone.utc).isoformat()
                    t_start = datetime.fromtimestamp(minute * 60, timezone.utc).isoformat()
                    for metric, token_type, value, est in (
                            ("tokens", "input", sums[0], sums[0] * pin), ("tokens", "output", sums[1], sums[1] * pout),
                            ("tokens", "cache_read", sums[2], sums[2] * pin / 10),
                            ("tokens", "cache_write", sums[3], sums[3] * pin), ("cost", "", sums[4], None)):
                        key = hashlib.sha256(f"{session}:{minute}:{metric}:{token_type}:{labels}".encode()).hexdigest()
                        points.append("\t".join((
                            t_end, t_start, "\\\\x" + key, "claude_code", session, us[u], agent, provider, model,
                            metric, token_type, f"{value}", "\\N" if est is None else f"{est:.12f}",
                            *(v or "\\N" for v in labels))) + "\n")
        with cur.copy("COPY metric_points (time, start_time, source_key, source, session_id, user_id, agent_id,"
                      " provider, model, metric, token_type, value, estimated_cost_usd, query_source, agent_name,"
                      " effort) FROM STDIN") as cp:
            for line in points:
                cp.write(line)
        with cur.copy("COPY llm_errors (time, source_key, source, session_id, user_id, agent_id, provider, model,"
                      " error, status_code, kind, attempt, query_source, agent_name) FROM STDIN") as cp:
            for line in errors:
                cp.write(line)
        with cur.copy("COPY sessions (id, agent_id, user_id, first_seen, last_seen, has_metrics) FROM STDIN") as cp:
            for line in sessions:
                cp.write(line)
        conn.commit()
    return n


SUBAGENTS = ("Explore", "general-purpose", "reviewer")


def _origin(agent: str, h: bytes) -> tuple:
    """(claude, thread, subagent, effort, speed) of a request, from bytes of its key (so the
    seeded sequence of everything else stays as it was): Claude Code says, Codex does not."""
    if agent != "claude-code":
        return (False, None, None, None, None)
    sub = SUBAGENTS[h[2] % 3] if h[1] % 10 < 3 else None
    return (True, "subagent" if sub else "main", sub, (None, "low", "medium", "high")[h[3] % 4],
            "fast" if h[4] % 4 == 0 else "normal")


def _health(origin: tuple, latency: float) -> tuple[str, ...]:
    """ttft_ms, query_source, agent_name, effort, speed columns (COPY text)."""
    claude, thread, sub, effort, speed = origin
    ttft = f"{round(latency * 0.15)}" if claude else "\\N"
    return (ttft, *(v or "\\N" for v in (thread, sub, effort, speed)))


def _error(key: str, when: str, agent: str, session: str, user: str, provider: str, model: str,
           origin: tuple) -> str:
    """An API error of the request's session, at its time (COPY text)."""
    status = (529, 500, 429)[int(key[16:18], 16) % 3]
    kind = "retries_exhausted" if int(key[18:20], 16) % 4 == 0 else "error"
    return "\t".join((when, "\\\\x" + hashlib.sha256(f"err:{key}".encode()).hexdigest(), agent.replace("-", "_"),
                      session, user, agent, provider, model, "Overloaded", str(status), kind, "4",
                      origin[1] or "\\N", origin[2] or "\\N")) + "\n"


# The agents' own enforcement (agent_enforcement, migration 0012), in the receiver's shapes
# (ingest/normalise_enforcement.py): Claude Code's permission decisions (per session, its permission
# mode), Codex's decisions and sandbox outcomes, Claude Code's MCP server connections.
BUILTIN_TOOLS = ("Bash", "Edit", "Read", "Write", "Grep", "WebFetch")
HOOKS = ("PreToolUse:Bash", "PreToolUse:Write", "PreToolUse:mcp__.*", "PreToolUse")
CLAUDE_POLICY = {"config": ("claude_code:config", "Claude Code permission rule or not allowed (config)"),
                 "user_reject": ("claude_code:user_reject", "Claude Code user rejected")}
CODEX_POLICY = {"config": ("codex:config", "Codex approval policy"), "user": ("codex:user", "Codex user denied"),
                "sandbox": ("codex:sandbox", "Codex sandbox")}
MCP_ERRORS = ("ECONNREFUSED", "ETIMEDOUT", "401", "-32000")


def _claude_decision(rng: random.Random) -> tuple[str, str, tuple[str, str] | None]:
    """(outcome, decision source, the policy of a block or None)."""
    r = rng.random()
    if r < 0.92:
        return "accept", rng.choice(("config", "config", "config", "user_temporary", "user_permanent")), None
    if r < 0.98:
        source = rng.choice(("config", "hook", "hook", "user_reject"))
        if source == "hook":
            hook = rng.choice(HOOKS)
            return "reject", source, (f"claude_code:hook:{hook}", f"Claude Code hook {hook}")
        return "reject", source, CLAUDE_POLICY[source]
    return "abort", "user_abort", None


def _enforcement_rows(args) -> int:
    url, seed, part, count, start, span = args
    rng = random.Random(seed * 3000 + part)
    us = users()
    n = 0
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY agent_enforcement (time, source_key, source, kind, user_id, agent_id, agent_instance_id,"
                      " session_id, mcp_server_id, tool_name, outcome, decision_source, permission_mode, error_code,"
                      " blocked, policy_id, policy_name) FROM STDIN") as cp:
            while n < count:
                # A session's events: one instance, within a couple of hours.
                inst = rng.randrange(N_INSTANCES)
                codex = rng.random() < 0.15
                agent = "codex" if codex else "claude-code"
                session = f"enf-{seed}-{part}-{n}"
                mode = None if codex else rng.choices(("default", "acceptEdits", "bypassPermissions", "plan"),
                                                      (70, 18, 8, 4))[0]
                t0 = start + rng.random() * (span - 7200)
                for _ in range(min(rng.randint(5, 40), count - n)):
                    t0 += rng.expovariate(1 / 150)
                    server = tool = error = policy = None
                    r = rng.random()
                    if not codex and r < 0.06:
                        kind, server = "mcp_connection", f"mcp-{rng.randrange(N_MCPS):02d}"
                        s = rng.random()
                        outcome = "connected" if s < 0.85 else "failed" if s < 0.95 else "disconnected"
                        error = rng.choice(MCP_ERRORS) if outcome == "failed" else None
                        source = None
                    elif codex and r < 0.2:
                        kind, tool, source = "sandbox", "shell", "sandbox"
                        outcome = "denied" if rng.random() < 0.3 else "success"
                        policy = CODEX_POLICY["sandbox"] if outcome == "denied" else None
                    else:
                        kind = "decision"
                        if rng.random() < 0.2:
                            server, tool = f"mcp-{rng.randrange(N_MCPS):02d}", f"tool_{rng.randrange(TOOLS_PER_MCP)}"
                        else:
                            tool = rng.choice(BUILTIN_TOOLS)
                        if codex:
                            s = rng.random()
                            outcome, source = (("accept", "config") if s < 0.9
                                               else ("reject", rng.choice(("config", "user"))))
                            policy = CODEX_POLICY[source] if outcome == "reject" else None
                        else:
                            outcome, source, policy = _claude_decision(rng)
                    key = hashlib.sha256(f"{seed}:{part}:enf:{n}".encode()).hexdigest()
                    cp.write("\t".join((
                        datetime.fromtimestamp(t0, timezone.utc).isoformat(), "\\\\x" + key, agent.replace("-", "_"),
                        kind, us[inst % N_USERS], agent, f"inst-{inst:04d}", session, server or "\\N",
                        tool or "\\N", outcome, source or "\\N",
                        (mode if kind == "decision" else None) or "\\N", error or "\\N",
                        "t" if policy else "f", policy[0] if policy else "\\N",
                        policy[1] if policy else "\\N")) + "\n")
                    n += 1
        conn.commit()
    return n


def _enforcement_policies(conn: psycopg.Connection) -> None:
    """The policies the enforcement rows name, as the receiver records them in the directory."""
    named = [*CLAUDE_POLICY.values(), *CODEX_POLICY.values(),
             *((f"claude_code:hook:{h}", f"Claude Code hook {h}") for h in HOOKS)]
    conn.cursor().executemany("INSERT INTO policies (id, name, description) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                              [(i, name, name) for i, name in named])


RAW_TABLES = ("tool_calls", "llm_requests", "agent_enforcement")


def generate(url: str, tool_calls: int, llm_requests: int, days: int, seed: int = 42,
             workers: int = 2, end: datetime | None = None, enforcement: int = 2_000_000,
             only: tuple[str, ...] = RAW_TABLES) -> dict[str, float]:
    end = end or datetime.now(timezone.utc)
    start = (end - timedelta(days=days)).timestamp()
    span = days * 86400.0
    with psycopg.connect(url, autocommit=True) as conn:
        directory(conn, seed)
        _enforcement_policies(conn)
    timings: dict[str, float] = {}
    jobs = [(fn, total, name) for fn, total, name in (
        (_tool_call_rows, tool_calls, "tool_calls"), (_llm_rows, llm_requests, "llm_requests"),
        (_enforcement_rows, enforcement, "agent_enforcement")) if name in only]
    with mp.get_context("spawn").Pool(workers) as pool:
        for fn, total, name in jobs:
            t = time.perf_counter()
            parts = [(url, seed, p, min(CHUNK * 10, total - p * CHUNK * 10), start, span)
                     for p in range((total + CHUNK * 10 - 1) // (CHUNK * 10))]
            done = sum(pool.map(fn, parts))
            timings[f"{name}_rows"] = done
            timings[f"{name}_copy_s"] = time.perf_counter() - t
    t = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        if "llm_requests" not in only:
            timings["refresh_s"] = _refresh(conn, only)
            conn.execute("ANALYZE")
            return timings
        # What the receiver keeps per session (migration 0005), for rows loaded by COPY; then
        # in the order a receiver would have written them, as sessions appeared (the workers
        # above wrote them in interleaved chunks of random times).
        conn.execute("SELECT aa_rebuild_session_totals()")
        conn.execute("CLUSTER sessions USING sessions_first_seen_idx")
    timings["session_totals_s"] = time.perf_counter() - t
    with psycopg.connect(url, autocommit=True) as conn:
        timings["refresh_s"] = _refresh(conn, only)
        conn.execute("ANALYZE")
    return timings


def _refresh(conn: psycopg.Connection, only: tuple[str, ...]) -> float:
    """Refresh the aggregates over the raw tables written (all of them for a whole dataset)."""
    from agent_analytics.sql.migrate import refresh_aggregates
    from agent_analytics.sql.rollups import AGGREGATES

    t = time.perf_counter()
    refresh_aggregates(conn, AGGREGATES if set(only) == set(RAW_TABLES)
                       else [n for n, a in AGGREGATES.items() if a.raw in only])
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--tool-calls", type=int, default=10_000_000)
    ap.add_argument("--llm-requests", type=int, default=5_000_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--enforcement-events", type=int, default=2_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--only", action="append", choices=(*RAW_TABLES, "directory"),
                    help="write only this raw table's rows (repeat for several; 'directory': none, the directory"
                         " is always written); default: all")
    a = ap.parse_args()
    for k, v in generate(a.database_url, a.tool_calls, a.llm_requests, a.days, a.seed,
                         enforcement=a.enforcement_events, only=tuple(t for t in a.only or RAW_TABLES if t != "directory")).items():
        print(f"{k}: {v:,.1f}" if isinstance(v, float) else f"{k}: {v:,}")


if __name__ == "__main__":
    main()
