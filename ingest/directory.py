"""The directory: users, groups and their current members, agents, agent instances, MCP servers,
tools, tags, policies and budgets (ingest/budgets.py), curated in bulk (API or `agent-analytics
directory load FILE`).

Every operation is idempotent: applying a document twice leaves the same rows. Upserts change
only the fields a document gives; `members` and `tags`, when given, replace the current set.
Rows that a document refers to but does not define (a member's user, a tool's server, a
budget's user or group) are created with their id as their name. A budget is given whole.
No Flask here: the API and the CLI both call these.
"""
from __future__ import annotations

from typing import Any, Mapping

import psycopg
from marshmallow import Schema, ValidationError, fields, validate
from psycopg import sql

from agent_analytics.config import ATTRIBUTION_COLUMNS
from agent_analytics.errors import Permanent
from agent_analytics.ingest.budgets import LIST_SQL as BUDGETS_LIST_SQL
from agent_analytics.ingest.budgets import BudgetSchema
from agent_analytics.text import StorableSchema, find_flaw

# Field options shared by the schemas (Any: they are spread into fields of several kinds).
ID: dict[str, Any] = dict(required=True, validate=validate.Length(min=1, max=500))
TEXT: dict[str, Any] = dict(allow_none=True, validate=validate.Length(max=2000))
TAGS: dict[str, Any] = dict(cls_or_instance=fields.String(validate=validate.Length(min=1, max=200)))


class DirectoryError(Permanent):
    def __init__(self, message: str, status: int = 400, details: Any = None) -> None:
        super().__init__(message, status)
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "details": self.details}


class _Strict(StorableSchema):
    pass


class UserSchema(_Strict):
    id = fields.String(**ID)
    email = fields.String(**TEXT)
    display_name = fields.String(**TEXT)


class GroupSchema(_Strict):
    id = fields.String(**ID)
    name = fields.String(validate=validate.Length(min=1, max=500))
    members = fields.List(fields.String(validate=validate.Length(min=1, max=500)))
    # The mapping rule: usage attributed to these values (per dimension, config.ATTRIBUTION)
    # counts under the group's filter beside its members' own. Replaces the current rule when given.
    attribution = fields.Dict(keys=fields.String(validate=validate.OneOf(ATTRIBUTION_COLUMNS)),
                              values=fields.List(fields.String(validate=validate.Length(min=1, max=1024))))


class MembershipSchema(_Strict):
    group_id = fields.String(**ID)
    user_id = fields.String(**ID)


class AgentSchema(_Strict):
    id = fields.String(**ID)
    name = fields.String(validate=validate.Length(min=1, max=500))
    tags = fields.List(**TAGS)


class AgentInstanceSchema(_Strict):
    id = fields.String(**ID)
    agent_id = fields.String(allow_none=True)
    user_id = fields.String(allow_none=True)
    name = fields.String(**TEXT)


class McpServerSchema(_Strict):
    id = fields.String(**ID)
    name = fields.String(validate=validate.Length(min=1, max=500))
    # The resource `service.name` of the server's own telemetry (its spans are stored under `id`).
    service_name = fields.String(allow_none=True, validate=validate.Length(min=1, max=500))
    tags = fields.List(**TAGS)


class ToolSchema(_Strict):
    mcp_server_id = fields.String(**ID)
    name = fields.String(**ID)
    description = fields.String(**TEXT)
    tags = fields.List(**TAGS)


class PolicySchema(_Strict):
    id = fields.String(**ID)
    name = fields.String(validate=validate.Length(min=1, max=500))
    description = fields.String(**TEXT)


class DocumentSchema(_Strict):
    users = fields.List(fields.Nested(UserSchema), load_default=list)
    groups = fields.List(fields.Nested(GroupSchema), load_default=list)
    memberships = fields.List(fields.Nested(MembershipSchema), load_default=list)
    agents = fields.List(fields.Nested(AgentSchema), load_default=list)
    agent_instances = fields.List(fields.Nested(AgentInstanceSchema), load_default=list)
    mcp_servers = fields.List(fields.Nested(McpServerSchema), load_default=list)
    tools = fields.List(fields.Nested(ToolSchema), load_default=list)
    policies = fields.List(fields.Nested(PolicySchema), load_default=list)
    budgets = fields.List(fields.Nested(BudgetSchema), load_default=list)


_IDS = fields.List(fields.String(validate=validate.Length(min=1)), load_default=list)


class ToolKeySchema(_Strict):
    mcp_server_id = fields.String(**ID)
    name = fields.String(**ID)


class DeleteSchema(_Strict):
    users = _IDS
    groups = fields.List(fields.String(validate=validate.Length(min=1)), load_default=list)
    memberships = fields.List(fields.Nested(MembershipSchema), load_default=list)
    agents = fields.List(fields.String(validate=validate.Length(min=1)), load_default=list)
    agent_instances = fields.List(fields.String(validate=validate.Length(min=1)), load_default=list)
    mcp_servers = fields.List(fields.String(validate=validate.Length(min=1)), load_default=list)
    tools = fields.List(fields.Nested(ToolKeySchema), load_default=list)
    policies = fields.List(fields.String(validate=validate.Length(min=1)), load_default=list)
    budgets = fields.List(fields.String(validate=validate.Length(min=1)), load_default=list)


# kind -> (table, key columns, editable columns, tag table and its key columns, schema)
KINDS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, tuple[str, ...]] | None, type[Schema]]] = {
    "users": ("users", ("id",), ("email", "display_name"), None, UserSchema),
    "groups": ("groups", ("id",), ("name",), None, GroupSchema),
    "agents": ("agents", ("id",), ("name",), ("agent_tags", ("agent_id",)), AgentSchema),
    "agent_instances": ("agent_instances", ("id",), ("agent_id", "user_id", "name"), None, AgentInstanceSchema),
    "mcp_servers": ("mcp_servers", ("id",), ("name", "service_name"), ("mcp_server_tags", ("mcp_server_id",)), McpServerSchema),
    "tools": ("tools", ("mcp_server_id", "name"), ("description",), ("tool_tags", ("mcp_server_id", "tool_name")),
              ToolSchema),
    "policies": ("policies", ("id",), ("name", "description"), None, PolicySchema),
    "budgets": ("budgets", ("id",), ("name", "scope", "attribute", "target", "period", "amount_usd", "owner"), None,
                BudgetSchema),
}
# Tables whose NOT NULL name defaults to the id when a document leaves it out.
NAMED = {"groups", "agents", "mcp_servers", "policies", "budgets"}
# Tables with an updated_at, set on every change.
STAMPED = {"users", "policies", "budgets"}
ORDER = ("users", "groups", "agents", "agent_instances", "mcp_servers", "tools", "policies", "budgets")


def _storable(**path_values: str) -> None:
    """Keys taken from a URL path, checked as a document's strings are (StorableSchema)."""
    found = find_flaw(path_values)
    if found is not None:
        raise DirectoryError(f"invalid key: {found[1]}", details={found[0]: [found[1]]})


def _load(schema: Schema, data: Any) -> dict:
    if not isinstance(data, Mapping):
        raise DirectoryError("the document must be an object")
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise DirectoryError("invalid directory document", details=exc.messages) from None


def _ensure(conn: psycopg.Connection, kind: str, key: tuple[str, ...]) -> None:
    """A row referred to but not defined: created with its id as its name."""
    table, keys, _, _, _ = KINDS[kind]
    cols = list(keys) + (["name"] if kind in NAMED else [])
    vals = list(key) + ([key[0]] if kind in NAMED else [])
    conn.execute(sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, cols)),
        sql.SQL(", ").join(sql.Placeholder() * len(vals))), vals)


def _upsert(conn: psycopg.Connection, kind: str, item: dict) -> None:
    table, keys, editable, tags, _ = KINDS[kind]
    if kind == "agent_instances":
        if item.get("agent_id"):
            _ensure(conn, "agents", (item["agent_id"],))
        if item.get("user_id"):
            _ensure(conn, "users", (item["user_id"],))
    if kind == "tools":
        _ensure(conn, "mcp_servers", (item["mcp_server_id"],))
    if kind == "budgets" and item["scope"] in ("user", "group"):
        _ensure(conn, item["scope"] + "s", (item["target"],))
    given = [c for c in editable if c in item]
    row = {k: item[k] for k in keys}
    row.update({c: item[c] for c in given})
    if kind in NAMED and "name" not in row:
        row["name"] = item["id"]
    cols = list(row)
    update = [c for c in given] + (["updated_at"] if table in STAMPED else [])
    conflict = sql.SQL("DO NOTHING") if not update else sql.SQL("DO UPDATE SET {}").format(
        sql.SQL(", ").join(
            sql.SQL("{} = now()").format(sql.Identifier(c)) if c == "updated_at"
            else sql.SQL("{} = excluded.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in update))
    conn.execute(sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) {}").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, cols)),
        sql.SQL(", ").join(sql.Placeholder() * len(cols)),
        sql.SQL(", ").join(map(sql.Identifier, keys)), conflict), [row[c] for c in cols])
    if tags and "tags" in item:
        tag_table, tag_keys = tags
        key_vals = [item[k] for k in keys]
        where = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in tag_keys)
        conn.execute(sql.SQL("DELETE FROM {} WHERE {}").format(sql.Identifier(tag_table), where), key_vals)
        with conn.cursor() as cur:
            cur.executemany(sql.SQL("INSERT INTO {} ({}, tag) VALUES ({}, %s) ON CONFLICT DO NOTHING").format(
                sql.Identifier(tag_table), sql.SQL(", ").join(map(sql.Identifier, tag_keys)),
                sql.SQL(", ").join(sql.Placeholder() * len(tag_keys))),
                [(*key_vals, t) for t in sorted(set(item["tags"]))])
    if kind == "groups" and "members" in item:
        for user in item["members"]:
            _ensure(conn, "users", (user,))
        conn.execute("DELETE FROM group_members WHERE group_id = %s AND NOT (user_id = ANY(%s))",
                     (item["id"], list(item["members"])))
        for user in sorted(set(item["members"])):
            conn.execute("INSERT INTO group_members (group_id, user_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                         (item["id"], user))
    if kind == "groups" and "attribution" in item:
        conn.execute("DELETE FROM attribution_groups WHERE group_id = %s", (item["id"],))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO attribution_groups (dimension, value, group_id) VALUES (%s, %s, %s)",
                            [(dim, value, item["id"]) for dim, values in sorted(item["attribution"].items())
                             for value in sorted(set(values))])


def apply(conn: psycopg.Connection, document: Any) -> dict[str, int]:
    """Upsert everything in `document`, in one transaction; returns how many of each it held."""
    doc = _load(DocumentSchema(), document)
    with conn.transaction():
        for kind in ORDER:
            for item in doc[kind]:
                _upsert(conn, kind, item)
            if kind == "groups":
                for m in doc["memberships"]:
                    _add_member(conn, m["group_id"], m["user_id"])
    return {k: len(doc[k]) for k in (*ORDER, "memberships")}


def _add_member(conn: psycopg.Connection, group_id: str, user_id: str) -> None:
    _ensure(conn, "groups", (group_id,))
    _ensure(conn, "users", (user_id,))
    conn.execute("INSERT INTO group_members (group_id, user_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                 (group_id, user_id))


def add_member(conn: psycopg.Connection, group_id: str, user_id: str) -> dict:
    _storable(group_id=group_id, user_id=user_id)
    with conn.transaction():
        _add_member(conn, group_id, user_id)
    return {"group_id": group_id, "user_id": user_id}


def remove_member(conn: psycopg.Connection, group_id: str, user_id: str) -> dict:
    _storable(group_id=group_id, user_id=user_id)
    with conn.transaction():
        n = conn.execute("DELETE FROM group_members WHERE group_id = %s AND user_id = %s",
                         (group_id, user_id)).rowcount
    return {"deleted": n}


def _delete_key(conn: psycopg.Connection, kind: str, key: tuple[str, ...]) -> int:
    table, keys, _, _, _ = KINDS[kind]
    where = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in keys)
    return conn.execute(sql.SQL("DELETE FROM {} WHERE {}").format(sql.Identifier(table), where), key).rowcount


def delete(conn: psycopg.Connection, document: Any) -> dict[str, int]:
    """Delete what `document` names; absent rows are not an error (idempotent)."""
    doc = _load(DeleteSchema(), document)
    deleted: dict[str, int] = {}
    with conn.transaction():
        deleted["memberships"] = sum(
            conn.execute("DELETE FROM group_members WHERE group_id = %s AND user_id = %s",
                         (m["group_id"], m["user_id"])).rowcount for m in doc["memberships"])
        for kind in reversed(ORDER):
            keys = [(t["mcp_server_id"], t["name"]) if kind == "tools" else (t,) for t in doc[kind]]
            deleted[kind] = sum(_delete_key(conn, kind, k) for k in keys)
    return deleted


def _split_key(kind: str, key: str) -> tuple[str, ...]:
    _storable(key=key)
    if kind not in KINDS:
        raise DirectoryError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}", status=404)
    if kind == "tools":
        server, sep, name = key.partition("/")
        if not sep or not server or not name:
            raise DirectoryError("a tool is addressed as <mcp_server_id>/<tool name>", status=404)
        return server, name
    return (key,)


def put_one(conn: psycopg.Connection, kind: str, key: str, body: dict) -> dict:
    parts = _split_key(kind, key)
    item = dict(body)
    item.update(dict(zip(KINDS[kind][1], parts)))
    apply(conn, {kind: [item]})
    return {kind: 1}


def delete_one(conn: psycopg.Connection, kind: str, key: str) -> dict:
    parts = _split_key(kind, key)
    with conn.transaction():
        return {"deleted": _delete_key(conn, kind, parts)}


LIST_SQL = {
    "users": "SELECT u.id, u.email, u.display_name, coalesce(array_agg(m.group_id ORDER BY m.group_id)"
             " FILTER (WHERE m.group_id IS NOT NULL), '{}') AS groups"
             " FROM users u LEFT JOIN group_members m ON m.user_id = u.id GROUP BY u.id ORDER BY u.id",
    "groups": "SELECT g.id, g.name, coalesce(array_agg(m.user_id ORDER BY m.user_id)"
              " FILTER (WHERE m.user_id IS NOT NULL), '{}') AS members,"
              " (SELECT coalesce(jsonb_object_agg(a.dimension, a.vals), '{}') FROM (SELECT dimension,"
              " jsonb_agg(value ORDER BY value) AS vals FROM attribution_groups WHERE group_id = g.id"
              " GROUP BY dimension) a) AS attribution"
              " FROM groups g LEFT JOIN group_members m ON m.group_id = g.id GROUP BY g.id ORDER BY g.id",
    "agents": "SELECT a.id, a.name, coalesce(array_agg(t.tag ORDER BY t.tag) FILTER (WHERE t.tag IS NOT NULL),"
              " '{}') AS tags FROM agents a LEFT JOIN agent_tags t ON t.agent_id = a.id GROUP BY a.id ORDER BY a.id",
    "agent_instances": "SELECT id, agent_id, user_id, name FROM agent_instances ORDER BY id",
    "mcp_servers": "SELECT s.id, s.name, s.service_name, coalesce(array_agg(t.tag ORDER BY t.tag) FILTER (WHERE t.tag IS NOT NULL),"
                   " '{}') AS tags FROM mcp_servers s LEFT JOIN mcp_server_tags t ON t.mcp_server_id = s.id"
                   " GROUP BY s.id ORDER BY s.id",
    "tools": "SELECT o.mcp_server_id, o.name, o.description, coalesce(array_agg(t.tag ORDER BY t.tag)"
             " FILTER (WHERE t.tag IS NOT NULL), '{}') AS tags FROM tools o LEFT JOIN tool_tags t"
             " ON t.mcp_server_id = o.mcp_server_id AND t.tool_name = o.name"
             " GROUP BY o.mcp_server_id, o.name ORDER BY o.mcp_server_id, o.name",
    "policies": "SELECT id, name, description FROM policies ORDER BY id",
    "budgets": BUDGETS_LIST_SQL,
}


def list_kind(conn: psycopg.Connection, kind: str) -> list[dict]:
    if kind not in LIST_SQL:
        raise DirectoryError(f"unknown kind {kind!r}; one of {', '.join(LIST_SQL)}", status=404)
    with conn.cursor() as cur:
        cur.execute(LIST_SQL[kind])
        names = [d.name for d in cur.description or ()]  # (a SELECT always describes its rows)
        return [dict(zip(names, row)) for row in cur.fetchall()]


def export(conn: psycopg.Connection) -> dict[str, list[dict]]:
    """The whole directory as one document that `apply` accepts back unchanged."""
    return {kind: list_kind(conn, kind) for kind in ORDER}
