"""Filters -> parameterised SQL predicates over a relation's own columns.

Every relation the engine reads exposes the same column names (user_id, agent_id, ...), so one
predicate fits the aggregate and the raw table alike. Values are always bound parameters.
Within a filter values are alternatives (OR); filters combine (AND).
"""
from __future__ import annotations

from typing import Mapping, Sequence

from psycopg import sql

ALL_MARKERS = frozenset({"$__all", "All", ""})

# Directory-resolved filters: a subquery on the directory, evaluated as it stands now.
_PREDICATES: dict[str, str] = {
    "user": "user_id = ANY(%s)",
    # The group's members as of now.
    "group": "user_id IN (SELECT gm.user_id FROM group_members gm WHERE gm.group_id = ANY(%s))",
    "agent_instance": "agent_instance_id = ANY(%s)",
    "agent": "agent_id = ANY(%s)",
    "mcp": "mcp_server_id = ANY(%s)",
    "agent_tag": "agent_id IN (SELECT agt.agent_id FROM agent_tags agt WHERE agt.tag = ANY(%s))",
    # The MCP server carries the tag, or the tool itself does.
    "resource_tag": ("(mcp_server_id IN (SELECT st.mcp_server_id FROM mcp_server_tags st WHERE st.tag = ANY(%s))"
                     " OR (mcp_server_id, tool_name) IN (SELECT tt.mcp_server_id, tt.tool_name FROM tool_tags tt"
                     " WHERE tt.tag = ANY(%s)))"),
    "provider": "provider = ANY(%s)",
    "model": "model = ANY(%s)",
    "session": "session_id = ANY(%s)",
}


def normalise(values: object) -> tuple[str, ...] | None:
    """One value or a list -> a tuple of values; None when it means "no filter" (All, empty)."""
    if values is None:
        return None
    if isinstance(values, (list, tuple)):
        items = [str(v) for v in values if v is not None]
    else:
        items = [str(values)]
    if not items or any(v in ALL_MARKERS for v in items):
        return None
    # Keep order, drop duplicates.
    return tuple(dict.fromkeys(items))


def predicate_text(filters: Mapping[str, Sequence[str]], applicable: Sequence[str]) -> tuple[str, list]:
    """`TRUE AND ...` for the filters that apply (our own constant SQL, values as placeholders);
    the list of parameters in order."""
    parts = ["TRUE"]
    params: list = []
    for name in applicable:
        values = filters.get(name)
        if not values:
            continue
        text = _PREDICATES[name]
        parts.append(text)
        params.extend([list(values)] * text.count("%s"))
    return " AND ".join(parts), params


def predicate(filters: Mapping[str, Sequence[str]], applicable: Sequence[str]) -> tuple[sql.Composable, list]:
    """predicate_text as SQL."""
    text, params = predicate_text(filters, applicable)
    return sql.SQL(text), params
