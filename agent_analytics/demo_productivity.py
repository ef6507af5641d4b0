"""What each demo Claude Code session bought, sent as Claude Code sends it: lines of code added
and removed (by model), commits, pull requests, edit decisions (by language and tool) and active
time, as delta sums (the Value dashboard's figures). Deterministic per plan seed and session, so
the plan itself stays what it was."""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

LANGUAGES = (("Python", 0.5), ("TypeScript", 0.3), ("Go", 0.15), ("Markdown", 0.05))
EDIT_TOOLS = (("Edit", 0.7), ("Write", 0.25), ("NotebookEdit", 0.05))
# Claude Code's metric names, units and descriptions as it sends them.
METRICS = {
    "claude_code.lines_of_code.count": ("", "Count of lines of code modified"),
    "claude_code.commit.count": ("", "Number of git commits created"),
    "claude_code.pull_request.count": ("", "Number of pull requests created"),
    "claude_code.code_edit_tool.decision": ("", "Count of code editing tool permission decisions"),
    "claude_code.active_time.total": ("s", "Total active time in seconds"),
}


@dataclass
class Work:
    model: str                       # lines of code name the model that wrote them
    lines_added: int
    lines_removed: int
    commits: int
    pull_requests: int
    active_seconds: float
    edits: Counter = field(default_factory=Counter)  # (decision, language, tool) -> decisions


def _pick(rng: random.Random, pairs: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def work(seed: int, session: Any) -> Work:
    """What a Claude Code session of the plan bought: an edit decision every few requests, most
    accepted; a commit in half the sessions, a pull request after some commits."""
    if not session.requests:  # a session that made no request wrote nothing
        return Work(model="", lines_added=0, lines_removed=0, commits=0, pull_requests=0, active_seconds=0.0)
    rng = random.Random(f"{seed}:{session.id}")
    models = Counter(r.model for r in session.requests)
    w = Work(model=models.most_common(1)[0][0], lines_added=0, lines_removed=0, commits=0, pull_requests=0,
             active_seconds=round(min((session.end - session.start).total_seconds(),
                                      len(session.requests) * rng.uniform(20, 90)), 3))
    for _ in range(max(1, len(session.requests) // 3)):
        decision = "accept" if rng.random() < 0.85 else "reject"
        w.edits[(decision, _pick(rng, LANGUAGES), _pick(rng, EDIT_TOOLS))] += 1
        if decision == "accept":
            w.lines_added += rng.randint(2, 60)
            w.lines_removed += rng.randint(0, 25)
    w.commits = rng.choice((0, 0, 1, 1, 2)) if w.lines_added else 0
    w.pull_requests = 1 if w.commits and rng.random() < 0.4 else 0
    return w


def points(w: Work, base: dict[str, Any], start_ns: int, end_ns: int,
           point: Callable[[dict[str, Any], int, int, float], Any]) -> dict[str, list[Any]]:
    """The session's points per metric name, as `point(attributes, start, end, value)` builds
    them (the SDK's NumberDataPoint); counts that are 0 are not sent, as Claude Code does not."""
    out: dict[str, list[Any]] = {name: [] for name in METRICS}
    lines = out["claude_code.lines_of_code.count"]
    for kind, n in (("added", w.lines_added), ("removed", w.lines_removed)):
        if n:
            lines.append(point({**base, "type": kind, "model": w.model}, start_ns, end_ns, n))
    for name, n in (("claude_code.commit.count", w.commits), ("claude_code.pull_request.count", w.pull_requests)):
        if n:
            out[name].append(point(dict(base), start_ns, end_ns, n))
    for (decision, language, tool), n in sorted(w.edits.items()):
        out["claude_code.code_edit_tool.decision"].append(point(
            {**base, "decision": decision, "source": "config" if decision == "accept" else "user_reject",
             "tool_name": tool, "language": language}, start_ns, end_ns, n))
    if w.active_seconds:
        out["claude_code.active_time.total"].append(point({**base, "type": "cli"}, start_ns, end_ns, w.active_seconds))
    return out
