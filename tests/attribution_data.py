"""Team attribution in the generated data source dataset (tests/datasource_dataset.py): the
resource attributes of each process, as the oracle sees them. Attributes are per process: a tool
call's are its agent instance's, an LLM request's and a metric point's their session's (so a
session's events and its metric points carry the same ones, and still count once). Some
processes set none (unattributed), and so does every row without an instance or a session.
Derived from the rows' own ids: the dataset's random draws stay what they were."""
from __future__ import annotations

from typing import Any

DIMENSIONS = ("department", "team", "cost_center")
# Process number modulo 5 -> (department, team, cost_center).
_PROCESSES = {0: ("eng", "t-red", "cc-1"), 1: ("eng", "t-blue", "cc-1"), 2: ("ops", "t-green", "cc-2"),
              3: (None, None, None), 4: ("eng", "t-red", None)}
NONE = (None, None, None)
# The directory's mapping rules: group -> dimension -> values whose usage counts under the group.
RULES: dict[str, dict[str, list[str]]] = {"g-ops": {"team": ["t-red"]}, "g-eng": {"cost_center": ["cc-2"]}}


def _of(process: str | None) -> tuple[str | None, ...]:
    if process is None:
        return NONE
    digits = "".join(c for c in process if c.isdigit())
    return _PROCESSES[int(digits) % 5] if digits else ("eng", "t-blue", "cc-1")


def attribute(tool_calls: list[dict[str, Any]], llm: list[dict[str, Any]], points: list[dict[str, Any]]) -> None:
    for r in tool_calls:
        r.update(zip(DIMENSIONS, _of(r["agent_instance_id"])))
    for r in (*llm, *points):
        r.update(zip(DIMENSIONS, _of(r["session_id"])))


def in_group(r: dict[str, Any], groups: list[str], members: dict[str, set[str]], attributed: bool) -> bool:
    """The group filter: the row's user is a member, or (on LLM Usage and MCP Usage, whose rows
    are attributed) one of its dimensions has a value a group's rule maps."""
    for g in groups:
        if r.get("user_id") in members.get(g, set()):
            return True
        if attributed and any(r.get(dim) in values for dim, values in RULES.get(g, {}).items()):
            return True
    return False


def top(rows: list[dict[str, Any]], dimension: str, measures) -> list[dict[str, Any]]:
    """Rows grouped by `dimension` (None: the "(unattributed)" row), each with `measures(rows)`."""
    groups: dict[Any, list] = {}
    for r in rows:
        groups.setdefault(r.get(dimension), []).append(r)
    return [{dimension: k if k is not None else "(unattributed)", "attributed": k is not None, **measures(v)}
            for k, v in groups.items()]
