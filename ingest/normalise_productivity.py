"""What the spend bought: Claude Code's productivity metrics as productivity points (migration 0015).

| metric                                | attributes read                       | stored as                          |
|---------------------------------------|---------------------------------------|------------------------------------|
| `claude_code.lines_of_code.count`     | `type` added / removed, `model`       | lines_added, lines_removed         |
| `claude_code.commit.count`            | (none of its own)                     | commits                            |
| `claude_code.pull_request.count`      | (none of its own)                     | pull_requests                      |
| `claude_code.code_edit_tool.decision` | `decision`, `language`, `tool_name`, `source` | edits_accepted, edits_rejected |
| `claude_code.active_time.total`       | `type` cli / user                     | active_seconds                     |

Every point also carries the session, the user and the agent as token points do. Only lines of
code name a model (the captures of 2.1.332 show it); commits, pull requests and edit decisions
name none, so they are stored under model 'unknown' and cannot be told apart by model.
Codex sends none of these (its metrics count tool calls, turns and tokens: tests/fixtures/otlp/
INVENTORY.md), nor does any other agent this receiver knows.
"""
from __future__ import annotations

from .content_keys import content_key
from .identity import user_id
from .pricing import priced_model
from .records import Point
from .rows import MAX_TOKENS, Batch, Context, MetricPoint
from .values import BadValue, number, text

LINES = "claude_code.lines_of_code.count"
DECISIONS = "claude_code.code_edit_tool.decision"
ACTIVE_TIME = "claude_code.active_time.total"
# A metric, the attribute naming what a point counts ("": none) and what each value of it counts.
METRICS: dict[str, tuple[str, dict[str, str]]] = {
    LINES: ("type", {"added": "lines_added", "removed": "lines_removed"}),
    "claude_code.commit.count": ("", {"": "commits"}),
    "claude_code.pull_request.count": ("", {"": "pull_requests"}),
    DECISIONS: ("decision", {"accept": "edits_accepted", "reject": "edits_rejected"}),
    ACTIVE_TIME: ("", {"": "active_seconds"}),
}
# Above this a count (lines, commits, seconds) in one point is not telemetry but a bug.
MAX_COUNT = float(MAX_TOKENS)
_NAMES = 200  # longest language, tool, decider or activity name kept


def _name(attrs: dict, key: str) -> str:
    return (text(attrs, key) or "")[:_NAMES]


def metric_point(p: Point, batch: Batch, ctx: Context, source: str, agent_id: str) -> bool:
    """One productivity point of the agent `agent_id` (its facts' `source`); a point whose `type`
    or `decision` names nothing it counts is rejected with the value it carried."""
    if p.kind != "sum":
        raise BadValue(f"{p.metric} must be a sum, got a {p.kind or 'metric without data'}")
    if p.value is None:
        raise BadValue(f"{p.metric} point without a value")
    a = p.attrs
    key, names = METRICS[p.metric]
    raw = (text(a, key) or "").lower() if key else ""
    if raw not in names:
        raise BadValue(f"{p.metric} point with unknown {key} {raw[:40]!r}")
    metric = names[raw]
    time_ns = ctx.check_time(p.time_ns)
    value = number({"value": p.value}, "value", maximum=MAX_COUNT)
    decision = p.metric == DECISIONS
    series = content_key("series", raw=True, m=p.metric, r=p.resource, a=p.record)
    batch.productivity_points.append(MetricPoint(
        time_ns=time_ns, start_time_ns=p.start_time_ns or None, source=source,
        session_id=text(a, "session.id"), user_id=user_id(a), agent_id=agent_id, provider="",
        # As token points name it, so that lines and cost meet on one model.
        model=priced_model(text(a, "model") or "unknown") if p.metric == LINES else "unknown",
        metric=metric, token_type="", value=value or 0.0, cumulative=p.cumulative, series_key=series,
        language=_name(a, "language") if decision else "", tool_name=_name(a, "tool_name") if decision else "",
        decided_by=_name(a, "source") if decision else "",
        activity=_name(a, "type") if p.metric == ACTIVE_TIME else ""))
    return True
