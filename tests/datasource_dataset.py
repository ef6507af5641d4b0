"""A seeded, generated dataset for the data source tests (written with COPY into the raw tables and
the directory), and an oracle that answers every metric from the generated Python rows on its
own: no SQL, no import from the engine, so a wrong query cannot agree with a wrong expectation."""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable
from zoneinfo import ZoneInfo

import psycopg

from tests import attribution_data as attribution
from tests.harness_support import disable_refresh_jobs, refresh_aggregates

UTC = timezone.utc
ANCHOR = datetime(2026, 11, 20, 14, 37, 25, tzinfo=UTC)   # "now" of the dataset
RENAME_AT = datetime(2026, 11, 10, 6, 0, tzinfo=UTC)       # policy p2 renamed here (an hour boundary)
TOKEN_TYPES = ("input", "output", "cache_read", "cache_write")


@dataclass
class Dataset:
    users: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)   # id -> (email, display)
    groups: dict[str, str] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)
    agents: dict[str, str] = field(default_factory=dict)
    agent_tags: dict[str, set[str]] = field(default_factory=dict)
    instances: dict[str, tuple[str, str, str]] = field(default_factory=dict)          # id -> (agent, user, name)
    servers: dict[str, str] = field(default_factory=dict)
    server_tags: dict[str, set[str]] = field(default_factory=dict)
    tools: list[tuple[str, str]] = field(default_factory=list)
    tool_tags: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    policies: dict[str, tuple[str, str]] = field(default_factory=dict)                # today's (name, description)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    llm: list[dict[str, Any]] = field(default_factory=list)
    points: list[dict[str, Any]] = field(default_factory=list)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)


def _when(rng: random.Random, dense_days: float = 9, span_days: float = 60) -> datetime:
    """70% in the last nine days (hourly questions), the rest over two months; some on the hour."""
    days = dense_days if rng.random() < 0.7 else span_days
    t = ANCHOR - timedelta(seconds=rng.randrange(int(days * 86400)))
    if rng.random() < 0.05:
        t = t.replace(minute=0, second=0, microsecond=0)
    return t


def generate(seed: int = 20261120) -> Dataset:
    rng = random.Random(seed)
    d = Dataset()
    for i in range(1, 10):
        uid = f"user{i}@example.com"
        d.users[uid] = (uid, f"User {i:02d}" if i % 3 else None)
    d.groups = {"g-eng": "Engineering", "g-ops": "Operations", "g-empty": "Nobody"}
    d.members = {"g-eng": {"user1@example.com", "user2@example.com", "user3@example.com"},
                 "g-ops": {"user4@example.com", "user5@example.com", "user9@example.com"}, "g-empty": set()}
    d.agents = {"claude-code": "Claude Code", "codex": "Codex", "cursor": "Cursor"}
    d.agent_tags = {"claude-code": {"prod", "cli"}, "codex": {"cli"}, "cursor": set()}
    users = list(d.users)
    agents = list(d.agents)
    for i in range(1, 13):
        d.instances[f"inst-{i:02d}"] = (agents[i % 3], users[i % len(users)], f"laptop {i}")
    d.servers = {"github": "GitHub", "jira": "Jira", "fs": "Filesystem", "db": "Database"}
    d.server_tags = {"github": {"external"}, "jira": {"external", "tickets"}, "fs": {"internal"}, "db": set()}
    for server, names in {"github": ["search", "create_pr", "merge"], "jira": ["search", "create_issue"],
                          "fs": ["read", "write", "delete"], "db": ["query", "drop_table"]}.items():
        d.tools += [(server, n) for n in names]
    d.tool_tags = {("fs", "delete"): {"dangerous"}, ("db", "drop_table"): {"dangerous", "internal"},
                   ("github", "merge"): {"internal"}}
    d.policies = {"p1": ("No deletes", "Blocks destructive file operations"),
                  "p2": ("Block writes (strict) v3", "Today's description"),
                  "p3": ("Prod DB guard", "No DDL against production")}
    instances = list(d.instances)

    # Tool calls.
    for i in range(3000):
        inst = rng.choice(instances)
        agent, owner, _ = d.instances[inst]
        server, tool = rng.choice(d.tools)
        if rng.random() < 0.05:
            server, tool = None, "local_shell"
        user = owner if rng.random() < 0.9 else rng.choice(users + [None])
        outcome = rng.choices(["ok", "error", "blocked"], [70, 15, 15])[0]
        t = _when(rng)
        pol = pname = pdesc = None
        if outcome == "blocked":
            pol = rng.choice(["p1", "p2", "p3", "p-gone"])
            if pol == "p2":
                pname, pdesc = (("Block writes", "Blocks writes") if t < RENAME_AT
                                else ("Block writes (strict)", "Blocks all writes"))
            elif pol == "p-gone":
                pname, pdesc = "Deleted policy", "No longer in the directory"
            else:
                pname, pdesc = d.policies[pol]
        d.tool_calls.append({
            "time": t, "source_key": hashlib.sha256(f"tc{i}".encode()).digest(), "source": "gateway",
            "user_id": user, "agent_id": agent if rng.random() < 0.97 else None,
            "agent_instance_id": inst if rng.random() < 0.95 else None, "mcp_server_id": server,
            "tool_name": tool, "outcome": outcome, "duration_ms": rng.choice([None, rng.uniform(1, 500)]),
            "policy_id": pol, "policy_name": pname, "policy_description": pdesc})

    # Agents report MCP calls too: some of servers behind the gateway (the same calls again),
    # some of a server only agents reach, and agent-side blocks the gateway never saw.
    d.servers["notes"] = "Notes"
    d.server_tags["notes"] = {"internal"}
    d.tools += [("notes", "search"), ("notes", "append")]
    for i in range(800):
        inst = rng.choice(instances)
        agent, owner, _ = d.instances[inst]
        kind = rng.choices(["duplicate", "direct", "blocked"], [45, 40, 15])[0]
        server, tool = rng.choice([t for t in d.tools if (t[0] == "notes") == (kind == "direct")])
        outcome = "blocked" if kind == "blocked" else rng.choice(["ok", "ok", "error"])
        d.tool_calls.append({
            "time": _when(rng), "source_key": hashlib.sha256(f"agent-tc{i}".encode()).digest(),
            "source": agent.replace("-", "_"), "user_id": owner, "agent_id": agent, "agent_instance_id": inst,
            "mcp_server_id": server, "tool_name": tool, "outcome": outcome, "duration_ms": None,
            "policy_id": f"{agent}:config" if outcome == "blocked" else None,
            "policy_name": "Agent permission rule" if outcome == "blocked" else None,
            "policy_description": None})

    # LLM sessions: events (llm_requests) and, for some, metric points.
    models = {"anthropic": ["claude-sonnet-4-5", "claude-haiku-4-5"], "openai": ["gpt-5", "gpt-5-mini"],
              "local": ["llama-unpriced"]}
    n = 0
    for s in range(70):
        sid = f"sess-{s:03d}"
        user = rng.choice(users)
        agent = rng.choice(["claude-code", "codex"])
        start = _when(rng)
        length = timedelta(seconds=rng.randrange(60, 4 * 3600))
        kind = "metrics+events" if agent == "claude-code" else "events"
        if s % 23 == 5:
            kind = "metrics"  # sends metrics only: totals but no activity
        d.sessions[sid] = {"user": user, "agent": agent, "start": start, "end": start + length, "kind": kind}
        provs = rng.sample(list(models), k=rng.choice([1, 1, 2]))
        if kind != "metrics":
            for _ in range(rng.randrange(1, 40)):
                prov = rng.choice(provs)
                model = rng.choice(models[prov])
                t = start + timedelta(seconds=rng.randrange(int(length.total_seconds()) + 1))
                tok = {tt: rng.randrange(0, 5000) for tt in TOKEN_TYPES}
                est = None if prov == "local" else Decimal(rng.randrange(1, 10**7)) / Decimal(10**9)
                d.llm.append({"time": t, "source_key": hashlib.sha256(f"llm{n}".encode()).digest(),
                              "source": agent.replace("-", "_"), "session_id": sid if rng.random() < 0.95 else None,
                              "user_id": user, "agent_id": agent, "provider": prov, "model": model,
                              **{f"{tt}_tokens": v for tt, v in tok.items()},
                              "reported_cost_usd": None if rng.random() < 0.3 else Decimal(rng.randrange(1, 10**7))
                              / Decimal(10**9), "estimated_cost_usd": est,
                              "latency_ms": None if rng.random() < 0.1 else float(rng.randrange(100, 20000))})
                n += 1
        if kind != "events":
            for _ in range(rng.randrange(1, 12)):
                prov = rng.choice(provs)
                model = rng.choice(models[prov])
                t = start + timedelta(seconds=rng.randrange(int(length.total_seconds()) + 1))
                metric = rng.choice(["tokens", "tokens", "cost"])
                tt = rng.choice(TOKEN_TYPES) if metric == "tokens" else ""
                est = (None if prov == "local" or metric == "cost"
                       else Decimal(rng.randrange(1, 10**7)) / Decimal(10**9))
                d.points.append({"time": t, "start_time": t - timedelta(seconds=rng.randrange(1, 120)),
                                 "source_key": hashlib.sha256(f"mp{n}".encode()).digest(), "source": "claude_code",
                                 "session_id": sid, "user_id": user, "agent_id": agent, "provider": prov,
                                 "model": model, "metric": metric, "token_type": tt,
                                 "value": float(rng.randrange(1, 20000)) if metric == "tokens"
                                 else rng.randrange(1, 10**6) / 10**6,
                                 "estimated_cost_usd": est})
                n += 1
    _shared_session(d, random.Random(seed + 1))
    attribution.attribute(d.tool_calls, d.llm, d.points)
    return d


def _shared_session(d: Dataset, rng: random.Random) -> None:
    """One session whose rows name two users (a shared agent host): a user filter takes only
    its rows of that user (the receiver's kept totals cannot answer it whole)."""
    sid, start = "sess-shared", ANCHOR - timedelta(days=3, hours=5, minutes=7)
    d.sessions[sid] = {"user": "user2@example.com", "agent": "claude-code", "start": start,
                       "end": start + timedelta(hours=3), "kind": "metrics+events"}
    for i in range(24):
        user = ("user2@example.com", "user5@example.com")[i % 2]
        t = start + timedelta(minutes=7 * i + rng.randrange(0, 5))
        d.llm.append({"time": t, "source_key": hashlib.sha256(f"shared-llm{i}".encode()).digest(),
                      "source": "claude_code", "session_id": sid, "user_id": user, "agent_id": "claude-code",
                      "provider": "anthropic", "model": "claude-sonnet-4-5",
                      **{f"{tt}_tokens": rng.randrange(0, 5000) for tt in TOKEN_TYPES},
                      "reported_cost_usd": None, "estimated_cost_usd": Decimal(rng.randrange(1, 10**7)) / Decimal(10**9),
                      "latency_ms": float(rng.randrange(100, 20000))})
        if i % 3 == 0:
            d.points.append({"time": t, "start_time": t - timedelta(seconds=60),
                             "source_key": hashlib.sha256(f"shared-mp{i}".encode()).digest(), "source": "claude_code",
                             "session_id": sid, "user_id": user, "agent_id": "claude-code", "provider": "anthropic",
                             "model": "claude-sonnet-4-5", "metric": "tokens", "token_type": "output",
                             "value": float(rng.randrange(1, 20000)),
                             "estimated_cost_usd": Decimal(rng.randrange(1, 10**7)) / Decimal(10**9)})


_TOOL_COLS = ["time", "source_key", "source", "user_id", "agent_id", "agent_instance_id", "mcp_server_id",
              "tool_name", "outcome", "duration_ms", "policy_id", "policy_name", "policy_description",
              *attribution.DIMENSIONS]
_LLM_COLS = ["time", "source_key", "source", "session_id", "user_id", "agent_id", "provider", "model",
             "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reported_cost_usd",
             "estimated_cost_usd", "latency_ms", *attribution.DIMENSIONS]
_MP_COLS = ["time", "start_time", "source_key", "source", "session_id", "user_id", "agent_id", "provider", "model",
            "metric", "token_type", "value", "estimated_cost_usd", *attribution.DIMENSIONS]


def _copy(conn: psycopg.Connection, table: str, cols: list[str], rows: Iterable[Iterable[Any]]) -> None:
    with conn.cursor() as cur:
        with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(list(r))


def resolve_counted(conn: psycopg.Connection) -> None:
    """For rows loaded by COPY: what the receiver decides per session (ingest/sessions.py
    `record`): a session that sent metric points has its events' tokens not counted, and one
    that sent events its metric points' cost."""
    conn.execute("UPDATE sessions SET has_metrics = true"
                 " WHERE id IN (SELECT session_id FROM metric_points WHERE session_id IS NOT NULL)")
    conn.execute("UPDATE llm_requests SET counted = false"
                 " WHERE session_id IN (SELECT session_id FROM metric_points WHERE session_id IS NOT NULL)")
    conn.execute("UPDATE metric_points SET cost_counted = false"
                 " WHERE session_id IN (SELECT session_id FROM llm_requests WHERE session_id IS NOT NULL)")
    conn.execute("SELECT aa_rebuild_session_totals()")  # and the session totals it keeps


def load(conn: psycopg.Connection, d: Dataset) -> None:
    """COPY the directory and the facts, then materialise the aggregates (autocommit connection)."""
    with conn.transaction():
        _copy(conn, "users", ["id", "email", "display_name"], [(k, *v) for k, v in d.users.items()])
        _copy(conn, "groups", ["id", "name"], d.groups.items())
        _copy(conn, "group_members", ["group_id", "user_id"], [(g, u) for g, us in d.members.items() for u in us])
        _copy(conn, "attribution_groups", ["group_id", "dimension", "value"],
              [(g, dim, v) for g, rule in attribution.RULES.items() for dim, vs in rule.items() for v in vs])
        _copy(conn, "agents", ["id", "name"], d.agents.items())
        _copy(conn, "agent_tags", ["agent_id", "tag"], [(a, t) for a, ts in d.agent_tags.items() for t in ts])
        _copy(conn, "agent_instances", ["id", "agent_id", "user_id", "name"], [(k, *v) for k, v in d.instances.items()])
        _copy(conn, "mcp_servers", ["id", "name"], d.servers.items())
        _copy(conn, "mcp_server_tags", ["mcp_server_id", "tag"], [(s, t) for s, ts in d.server_tags.items() for t in ts])
        _copy(conn, "tools", ["mcp_server_id", "name"], d.tools)
        _copy(conn, "tool_tags", ["mcp_server_id", "tool_name", "tag"],
              [(s, n, t) for (s, n), ts in d.tool_tags.items() for t in ts])
        _copy(conn, "policies", ["id", "name", "description"], [(k, *v) for k, v in d.policies.items()])
        _copy(conn, "tool_calls", _TOOL_COLS, ([r[c] for c in _TOOL_COLS] for r in d.tool_calls))
        _copy(conn, "llm_requests", _LLM_COLS, ([r[c] for c in _LLM_COLS] for r in d.llm))
        _copy(conn, "metric_points", _MP_COLS, ([r[c] for c in _MP_COLS] for r in d.points))
        _copy(conn, "sessions", ["id", "agent_id", "user_id", "first_seen", "last_seen"],
              [(k, s["agent"], s["user"], s["start"], s["end"]) for k, s in d.sessions.items()])
        resolve_counted(conn)  # what the receiver decides per session, for rows loaded by COPY
    refresh_aggregates(conn)


# ---------------------------------------------------------------------------------------------
# The oracle.
# ---------------------------------------------------------------------------------------------

def _none_last(v: Any) -> tuple:
    return (v is None, v or "")


def percentile(values: list[float], p: float) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation between closest ranks."""
    vs = sorted(values)
    if not vs:
        return None
    pos = p * (len(vs) - 1)
    lo = int(pos)
    if lo + 1 >= len(vs):
        return vs[lo]
    return vs[lo] + (vs[lo + 1] - vs[lo]) * (pos - lo)


class Oracle:
    def __init__(self, d: Dataset, cost_source: str = "estimated") -> None:
        self.d = d
        self.cost_key = f"{cost_source}_cost_usd"
        self.cost_source = cost_source

    # ---- filters ----
    @staticmethod
    def _values(vals: Any) -> list[str] | None:
        vals = [vals] if isinstance(vals, str) else list(vals or [])
        if not vals or any(v in ("$__all", "All", "") for v in vals):
            return None
        return vals

    def _match(self, r: dict[str, Any], f: dict[str, Any], attributed: bool = True) -> bool:
        d = self.d
        for name, vals in f.items():
            vals = self._values(vals)
            if not vals:
                continue
            if name == "user" and r.get("user_id") not in vals:
                return False
            if name == "group" and not attribution.in_group(r, vals, d.members, attributed):
                return False
            if name in attribution.DIMENSIONS and r.get(name) not in vals:
                return False
            if name == "agent_instance" and r.get("agent_instance_id") not in vals:
                return False
            if name == "agent" and r.get("agent_id") not in vals:
                return False
            if name == "mcp" and r.get("mcp_server_id") not in vals:
                return False
            if name == "agent_tag" and not (d.agent_tags.get(r.get("agent_id"), set()) & set(vals)):
                return False
            if name == "resource_tag":
                tags = d.server_tags.get(r.get("mcp_server_id"), set()) | d.tool_tags.get(
                    (r.get("mcp_server_id"), r.get("tool_name")), set())
                if not tags & set(vals):
                    return False
            if name == "provider" and r.get("provider") not in vals:
                return False
            if name == "model" and r.get("model") not in vals:
                return False
            if name == "session" and r.get("session_id") not in vals:
                return False
        return True

    def calls(self, start, end, f, blocked: bool) -> list[dict]:
        keep = {"blocked"} if blocked else {"ok", "error"}
        fl = {k: v for k, v in f.items() if k in ("user", "group", "agent_instance", "agent", "mcp",
                                                   "agent_tag", "resource_tag", *attribution.DIMENSIONS)}
        rows = [r for r in self.d.tool_calls if start <= r["time"] < end and r["outcome"] in keep
                and self._match(r, fl)]
        if blocked:
            return rows
        # Executions of a server the gateway reports (in the hours the window touches) count from
        # the gateway only; agents' own reports of them are the same calls again.
        hour = lambda t: t.replace(minute=0, second=0, microsecond=0)  # noqa: E731
        gateway = {r["mcp_server_id"] for r in self.d.tool_calls if r["source"] == "gateway"
                   and r["mcp_server_id"] and hour(start) <= hour(r["time"]) < end}
        return [r for r in rows if r["source"] == "gateway" or r["mcp_server_id"] is None
                or r["mcp_server_id"] not in gateway]

    @staticmethod
    def _llm_names(session_filter: bool, attributed: bool) -> tuple[str, ...]:
        return (("user", "group", "provider", "model") + (("session",) if session_filter else ())
                + (attribution.DIMENSIONS if attributed else ()))

    def llm(self, start, end, f, session_filter: bool = False, attributed: bool = True) -> list[dict]:
        """LLM Usage's request rows (`attributed`), or the sessions' (which have no attribution)."""
        fl = {k: v for k, v in f.items() if k in self._llm_names(session_filter, attributed)}
        return [r for r in self.d.llm if start <= r["time"] < end and self._match(r, fl, attributed)]

    def points(self, start, end, f, session_filter: bool = False, attributed: bool = True) -> list[dict]:
        fl = {k: v for k, v in f.items() if k in self._llm_names(session_filter, attributed)}
        return [r for r in self.d.points if start <= r["time"] < end and self._match(r, fl, attributed)]

    @property
    def metric_sessions(self) -> set[str]:
        """Sessions that ever sent a metric point: their tokens and cost come from those."""
        return {p["session_id"] for p in self.d.points if p["session_id"]}

    @property
    def event_sessions(self) -> set[str]:
        """Sessions that ever sent a request event: their cost comes from those, request by request."""
        return {r["session_id"] for r in self.d.llm if r["session_id"]}

    def usage(self, start, end, f) -> list[dict]:
        """LLM Usage rows: every event gives a request and its cost; its tokens count unless its
        session ever sent metric points, whose points count instead. A point's cost counts only
        if its session never sent an event. `unpriced_tokens`: tokens whose cost counts but is
        unknown (the estimate's; for the reported cost, events without one)."""
        points = [p for p in self.points(start, end, f) if p["session_id"]]
        superseded, priced_by_events = self.metric_sessions, self.event_sessions
        rows = []
        for r in self.llm(start, end, f):
            unpriced = self.tokens(r) if r[self.cost_key] is None else 0
            if r["session_id"] in superseded:
                r = {**r, **{f"{t}_tokens": 0 for t in TOKEN_TYPES}}
            rows.append({**r, "requests": 1, "unpriced_tokens": unpriced})
        for p in points:
            row = {"time": p["time"], "user_id": p["user_id"], "provider": p["provider"], "model": p["model"],
                   **{dim: p[dim] for dim in attribution.DIMENSIONS}, "requests": None, **{f"{t}_tokens": 0 for t in TOKEN_TYPES}, "unpriced_tokens": 0}
            if p["metric"] == "tokens":
                row[f"{p['token_type']}_tokens"] = p["value"]
            counted = p["session_id"] not in priced_by_events
            if self.cost_source == "estimated":
                row[self.cost_key] = p["estimated_cost_usd"] if p["metric"] == "tokens" and counted else None
                if counted and p["metric"] == "tokens" and p["estimated_cost_usd"] is None:
                    row["unpriced_tokens"] = p["value"]
            else:
                row[self.cost_key] = Decimal(str(p["value"])) if p["metric"] == "cost" and counted else None
                # Only Claude Code sends a cost metric beside its token points.
                if counted and p["metric"] == "tokens" and p["source"] != "claude_code":
                    row["unpriced_tokens"] = p["value"]
            rows.append(row)
        return rows

    def unpriced(self, start, end, f) -> tuple[float, str]:
        """The tokens a cost figure could not price, and their models (comma-separated)."""
        rows = [r for r in self.usage(start, end, f) if r["unpriced_tokens"]]
        return float(sum(r["unpriced_tokens"] for r in rows)), ", ".join(sorted({r["model"] for r in rows}))

    @staticmethod
    def tokens(r: dict) -> int:
        return sum(r[f"{t}_tokens"] for t in TOKEN_TYPES)

    def cost_sum(self, rows: list[dict]) -> float | None:
        """The priced sum; with nothing priced, None when some tokens are unpriced, else 0."""
        vals = [r[self.cost_key] for r in rows if r[self.cost_key] is not None]
        if vals:
            return float(sum(vals))
        return None if sum(r["unpriced_tokens"] for r in rows) > 0 else 0

    # ---- MCP / Security ----
    def stat(self, metric: str, start, end, f) -> Any:
        if metric in ("mcp_tool_executions", "security_blocked_calls"):
            return len(self.calls(start, end, f, metric.startswith("security")))
        rows = self.calls(start, end, f, False)
        if metric == "mcp_unique_tools":
            return len({(r["mcp_server_id"], r["tool_name"]) for r in rows})
        if metric == "mcp_active_agent_instances":
            return len({r["agent_instance_id"] for r in rows if r["agent_instance_id"]})
        if metric == "mcp_active_users":
            return len({r["user_id"] for r in rows if r["user_id"]})
        lrows = self.usage(start, end, f)
        if metric == "llm_total_tokens":
            return sum(self.tokens(r) for r in lrows)
        if metric == "llm_total_cost":
            return self.cost_sum(lrows)
        if metric == "llm_models_used":
            return len({r["model"] for r in lrows})
        raise KeyError(metric)

    def series_values(self, metric: str, rows_start, rows_end, f, bucket_of) -> dict[datetime, Any]:
        out: dict[datetime, list] = {}
        if metric in ("mcp_executions_over_time", "security_blocked_over_time"):
            for r in self.calls(rows_start, rows_end, f, metric.startswith("security")):
                out.setdefault(bucket_of(r["time"]), []).append(r)
            return {b: len(v) for b, v in out.items()}
        for r in self.usage(rows_start, rows_end, f):
            out.setdefault(bucket_of(r["time"]), []).append(r)
        if metric == "llm_tokens_over_time":
            return {b: sum(self.tokens(r) for r in v) for b, v in out.items()}
        return {b: self.cost_sum(v) for b, v in out.items()}

    def top(self, metric: str, start, end, f) -> list[dict]:
        d = self.d
        if metric.startswith("llm_cost_by_"):
            out = attribution.top(self.usage(start, end, f), metric[len("llm_cost_by_"):], self._llm_measures)
            out.sort(key=lambda x: (x["cost"] is None, -(x["cost"] or 0), -x["tokens"], not x["attributed"],
                                    x[metric[len("llm_cost_by_"):]]))
            return out
        if metric == "mcp_executions_by_team":
            out = attribution.top(self.calls(start, end, f, False), "team", lambda v: {"executions": len(v)})
            out.sort(key=lambda x: (-x["executions"], not x["attributed"], x["team"]))
            return out
        if metric == "llm_cache_hit_ratio_by_user":
            per: dict[Any, list[int]] = {}
            for r in self.usage(start, end, f):  # tokens each counted once (events or points)
                acc = per.setdefault(r["user_id"], [0, 0])
                acc[0] += r["input_tokens"] + r["cache_read_tokens"] + r["cache_write_tokens"]
                acc[1] += r["cache_read_tokens"]
            out = []
            for k, (all_input, reads) in per.items():
                email, disp = d.users.get(k, (None, None))
                out.append({"user_id": k, "user": disp or email or k or "(no user)",
                            "ratio": 100 * reads / all_input if all_input else None,
                            "input_tokens": float(all_input), "cache_read_tokens": float(reads)})
            out.sort(key=lambda x: (-x["input_tokens"], _none_last(x["user_id"])))
            return out
        if metric.startswith("llm_"):
            rows = self.usage(start, end, f)
            by_user = "users" in metric
            groups: dict[Any, list] = {}
            for r in rows:  # usage without a user is the "(no user)" row
                key = r["user_id"] if by_user else (r["provider"], r["model"])
                groups.setdefault(key, []).append(r)
            out = []
            for k, v in groups.items():
                unpriced = float(sum(r["unpriced_tokens"] for r in v))
                row = {"tokens": float(sum(self.tokens(r) for r in v)), "cost": self.cost_sum(v),
                       # Events are requests; metric points alone say nothing of how many.
                       "requests": sum(r["requests"] for r in v if r["requests"] is not None)
                       if any(r["requests"] is not None for r in v) else None, "unpriced_tokens": unpriced,
                       "unpriced": unpriced > 0}
                if by_user:
                    email, disp = d.users.get(k, (None, None))
                    row.update(user_id=k, user=disp or email or k or "(no user)")
                else:
                    row.update(provider=k[0], model=k[1])
                out.append(row)
            keyf = (lambda x: _none_last(x["user_id"])) if by_user else (lambda x: (x["provider"], x["model"]))
            if metric.endswith("by_tokens"):
                out.sort(key=lambda x: (-x["tokens"], keyf(x)))
            else:
                out.sort(key=lambda x: (x["cost"] is None, -(x["cost"] or 0), -x["tokens"], keyf(x)))
            return out
        blocked = metric.startswith("security")
        measure = "blocked" if blocked else "executions"
        rows = self.calls(start, end, f, blocked)
        out = []
        if metric.endswith("tools"):
            c: dict = {}
            for r in rows:
                c[(r["mcp_server_id"], r["tool_name"])] = c.get((r["mcp_server_id"], r["tool_name"]), 0) + 1
            for (s, t), n in c.items():
                out.append({"tool": t, "mcp_server_id": s, "mcp": d.servers.get(s, s) or "(no MCP server)",
                            measure: n})
            out.sort(key=lambda x: (-x[measure], _none_last(x["mcp_server_id"]), x["tool"]))
        elif metric.endswith("agent_instances"):
            c = {}
            for r in rows:
                c[r["agent_instance_id"]] = c.get(r["agent_instance_id"], 0) + 1
            for i, n in c.items():
                if i is None:
                    out.append({"agent_instance_id": None, "agent_instance": "(no agent instance)", "agent_id": None,
                                "agent": None, "user_id": None, "user": None, measure: n})
                    continue
                agent, owner, name = d.instances[i]
                email, disp = d.users[owner]
                out.append({"agent_instance_id": i, "agent_instance": name, "agent_id": agent,
                            "agent": d.agents[agent], "user_id": owner, "user": disp or email, measure: n})
            out.sort(key=lambda x: (-x[measure], _none_last(x["agent_instance_id"])))
        elif metric.endswith("users"):
            c = {}
            for r in rows:
                c[r["user_id"]] = c.get(r["user_id"], 0) + 1
            for u, n in c.items():
                email, disp = d.users[u] if u is not None else (None, None)
                out.append({"user_id": u, "user": disp or email or "(no user)", measure: n})
            out.sort(key=lambda x: (-x[measure], _none_last(x["user_id"])))
        elif metric.endswith("mcps"):
            c = {}
            for r in rows:
                c[r["mcp_server_id"]] = c.get(r["mcp_server_id"], 0) + 1
            for s, n in c.items():
                out.append({"mcp_server_id": s, "mcp": d.servers[s] if s is not None else "(no MCP server)", measure: n})
            out.sort(key=lambda x: (-x[measure], _none_last(x["mcp_server_id"])))
        elif metric.endswith("policies"):
            c = {}
            for r in rows:
                if r["policy_id"]:
                    c.setdefault(r["policy_id"], []).append(r)
            for p, v in c.items():
                latest = max(v, key=lambda r: r["time"])
                current = d.policies.get(p, (None, None))[0]
                out.append({"policy_id": p, "policy_name": latest["policy_name"],
                            "policy_description": latest["policy_description"], "blocked": len(v),
                            "current_name": current,
                            "renamed": current is not None and current != latest["policy_name"]})
            out.sort(key=lambda x: (-x["blocked"], x["policy_id"]))
        return out

    def _llm_measures(self, v: list[dict]) -> dict[str, Any]:
        unpriced = float(sum(r["unpriced_tokens"] for r in v))
        return {"tokens": float(sum(self.tokens(r) for r in v)), "cost": self.cost_sum(v),
                "requests": sum(r["requests"] for r in v if r["requests"] is not None)
                if any(r["requests"] is not None for r in v) else None, "unpriced_tokens": unpriced,
                "unpriced": unpriced > 0}

    def hourly(self, start, end, f) -> list[int]:
        counts = [0] * 24
        for r in self.calls(start, end, f, False):
            counts[r["time"].astimezone(UTC).hour] += 1
        return counts

    def tokens_by_type(self, start, end, f) -> dict[str, int]:
        rows = self.usage(start, end, f)
        return {t: sum(r[f"{t}_tokens"] for r in rows) for t in TOKEN_TYPES}

    # ---- sessions ----
    def sessions(self, start, end, f, with_session_filter: bool = True) -> dict[str, dict]:
        ev = [r for r in self.llm(start, end, f, with_session_filter, attributed=False) if r["session_id"]]
        mp = [r for r in self.points(start, end, f, with_session_filter, attributed=False) if r["session_id"]]
        ids = {r["session_id"] for r in ev} | {r["session_id"] for r in mp}
        superseded, priced_by_events = self.metric_sessions, self.event_sessions
        out = {}
        for sid in ids:
            e = [r for r in ev if r["session_id"] == sid]
            m = [r for r in mp if r["session_id"] == sid]
            if sid in superseded:
                types = {t: float(sum(r["value"] for r in m if r["metric"] == "tokens" and r["token_type"] == t))
                         for t in TOKEN_TYPES}
                tokens = float(sum(r["value"] for r in m if r["metric"] == "tokens"))
                source = "metrics"
            else:
                types = {t: float(sum(r[f"{t}_tokens"] for r in e)) for t in TOKEN_TYPES}
                tokens = float(sum(self.tokens(r) for r in e))
                source = "events"
            # Cost: the events' (request by request), the metric points' only without any event.
            if sid in priced_by_events:
                cs = [r[self.cost_key] for r in e if r[self.cost_key] is not None]
            elif self.cost_source == "estimated":
                cs = [r["estimated_cost_usd"] for r in m if r["metric"] == "tokens" and r["estimated_cost_usd"] is not None]
            else:
                cs = [r["value"] for r in m if r["metric"] == "cost"]
            cost = float(sum(cs)) if cs else None
            # The tokens of that cost without a price: every event's (its cost always counts), and
            # the token points' of a session without events.
            unpriced = float(sum(self.tokens(r) for r in e if r[self.cost_key] is None))
            if sid not in priced_by_events:
                unpriced += float(sum(r["value"] for r in m if r["metric"] == "tokens" and (
                    r["estimated_cost_usd"] is None if self.cost_source == "estimated"
                    else r["source"] != "claude_code")))
            firsts = [r["time"] for r in e] + [r["start_time"] for r in m]
            lasts = [r["time"] for r in e] + [r["time"] for r in m]
            user = max([r["user_id"] for r in e if r["user_id"]] or [None]) or max(
                [r["user_id"] for r in m if r["user_id"]] or [None])
            agent = max([r["agent_id"] for r in e if r["agent_id"]] or [None]) or max(
                [r["agent_id"] for r in m if r["agent_id"]] or [None])
            out[sid] = {"session_id": sid, "user_id": user, "agent_id": agent,
                        "models": ", ".join(sorted({r["model"] for r in e + m})),
                        "start": min(firsts), "end": max(lasts),
                        "duration": (max(lasts) - min(firsts)).total_seconds(),
                        # No request events: the number of requests is unknown, not 0.
                        "requests": float(len(e)) if e else None, "tokens": tokens, "cost": cost,
                        "unpriced_tokens": unpriced, "unpriced": unpriced > 0, "totals_source": source,
                        **{f"{t}_tokens": v for t, v in types.items()},
                        "events": e}
        return out

    def session_stats(self, sessions: dict[str, dict]) -> dict[str, Any]:
        stats: dict[str, Any] = {"sessions": len(sessions)}
        for dim in ("cost", "tokens", "duration", "requests"):
            vals = [s[dim] for s in sessions.values() if s[dim] is not None]
            stats[f"{dim}_n"] = len(vals)
            stats[f"{dim}_p50"] = percentile(vals, 0.5)
            stats[f"{dim}_avg"] = sum(vals) / len(vals) if vals else None
            stats[f"{dim}_p95"] = percentile(vals, 0.95)
        return stats

    @staticmethod
    def compare(value, stats, dim) -> tuple[float | None, bool]:
        if value is None or stats[f"{dim}_n"] < 2:
            return None, False
        med = stats[f"{dim}_p50"]
        return (value / med if med else None), value >= stats[f"{dim}_p95"]


def day_buckets(start: datetime, end: datetime, tz: ZoneInfo) -> list[datetime]:
    """Local midnights from the day containing start, computed with zoneinfo only."""
    out = []
    day: date = start.astimezone(tz).date()
    while True:
        t = datetime.combine(day, time(), tzinfo=tz)
        if t >= end:
            return out
        out.append(t)
        day += timedelta(days=1)


def hour_buckets(start: datetime, end: datetime) -> list[datetime]:
    t = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    out = []
    while t < end:
        out.append(t)
        t += timedelta(hours=1)
    return out


# ---------------------------------------------------------------------------------------------
# One loaded database per backend for the whole run (the tests only read it).
# ---------------------------------------------------------------------------------------------

DATA = generate()
_LOADED: dict[str, str] = {}


def loaded_database(cluster, backend: str) -> str:
    if backend not in _LOADED:
        from agent_analytics.sql.migrate import migrate

        url = cluster.create_database(f"aa_datasource_{backend}")
        migrate(url, timescaledb="on" if backend == "timescaledb" else "off", retention_days=0,
                compress_after_days=0)
        with psycopg.connect(url, autocommit=True) as c:
            if backend == "timescaledb":
                disable_refresh_jobs(c)
            load(c, DATA)
        _LOADED[backend] = url
    return _LOADED[backend]


# The query app's fixtures (ds_app, ds_client) live in conftest.py; modules that import them
# from here get the same ones.
from tests.conftest import ds_app, ds_client  # noqa: E402, F401
