"""Values for dashboard variables and ad hoc filter values: (value, text) pairs from the directory,
or from the aggregates where only the facts know them (providers, models, sessions)."""
from __future__ import annotations

from datetime import datetime

import psycopg

# Our own SQL per variable; the name comes from a fixed whitelist.
_SQL: dict[str, str] = {
    "user": "SELECT id, coalesce(display_name, email, id) FROM users ORDER BY 2, 1",
    "group": "SELECT id, name FROM groups ORDER BY 2, 1",
    "agent_instance": "SELECT id, coalesce(name, id) FROM agent_instances ORDER BY 2, 1",
    "agent": "SELECT id, name FROM agents ORDER BY 2, 1",
    "mcp": "SELECT id, name FROM mcp_servers ORDER BY 2, 1",
    "agent_tag": "SELECT DISTINCT tag, tag FROM agent_tags ORDER BY 1",
    "resource_tag": "SELECT tag, tag FROM (SELECT tag FROM mcp_server_tags UNION SELECT tag FROM tool_tags) t ORDER BY 1",
    # The smallest rollups that name every provider and model LLM Usage can show.
    "provider": ("SELECT p, p FROM (SELECT provider AS p FROM llm_usage_by_model_daily UNION"
                 " SELECT provider FROM llm_metric_usage_by_model_daily) t ORDER BY 1"),
    "model": ("SELECT m, m FROM (SELECT model AS m FROM llm_usage_by_model_daily UNION"
              " SELECT model FROM llm_metric_usage_by_model_daily) t ORDER BY 1"),
}
# Sessions: the most recent ones overlapping the range (the session table is the directory of sessions).
_SESSIONS = ("SELECT s.id, s.id || ' (' || coalesce(u.display_name, u.email, s.user_id, '?') || ')'"
             " FROM sessions s LEFT JOIN users u ON u.id = s.user_id"
             " WHERE (%s::timestamptz IS NULL OR s.last_seen >= %s) AND (%s::timestamptz IS NULL OR s.first_seen < %s)"
             " ORDER BY s.last_seen DESC, s.id LIMIT 1000")


def values(conn: psycopg.Connection, name: str, start: datetime | None = None,
           end: datetime | None = None) -> list[tuple[str, str]]:
    if name == "session":
        rows = conn.execute(_SESSIONS, (start, start, end, end)).fetchall()
    else:
        rows = conn.execute(_SQL[name]).fetchall()
    return [(str(v), str(t)) for v, t in rows if v is not None]
