"""The filters: each declared once, here, with everything the rest derives from it: the catalog's
filter tuples per tab (and so the dashboards' variables), the request schemas' fields, the
predicates, the variables' values and permissions, the columns the "choose aggregate" stage
requires of a rollup, and the indexes of plain PostgreSQL's rollups.

Every relation the engine reads exposes the same column names (user_id, agent_id, ...), so one
predicate fits the aggregate and the raw table alike. Values are always bound parameters.
Within a filter values are alternatives (OR); filters combine (AND).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Sequence

from psycopg import sql

from agent_analytics.auth import Permission
from agent_analytics.config import ATTRIBUTION, ATTRIBUTION_COLUMNS
from agent_analytics.sql import rollups

# What a filter may apply to: the datasets of a tab, as the catalog's filter tuples name them.
SCOPES = {
    "mcp": "tool calls (MCP Usage, Security)",
    "llm": "LLM usage (LLM Usage, its sessions list)",
    "session": "one session (Session timeline)",
    "value": "what the spend bought (Value)",
}


@dataclass(frozen=True)
class Filter:
    """One filter's declaration (see the module's docstring for what derives from it)."""
    name: str  # the payload field, JSON API parameter, dashboard variable and ad hoc key: never rename
    label: str  # the dashboard variable's label
    permission: Permission  # who may list its values
    # Our own SQL over the dataset's columns, one bound list of the values per %s. Directory-resolved
    # filters (group, tags) are subqueries on the directory, evaluated as it stands now.
    predicate: str
    # The columns the predicate reads: a rollup answers under the filter only if it holds them wholly.
    columns: frozenset[str]
    scopes: frozenset[str]  # keys of SCOPES: every metric of those datasets honours the filter
    # Our own SQL listing the variable's (value, text) pairs: the directory where it knows them, else
    # the smallest aggregate that names every value. It may read the dashboard's range as
    # %(start)s and %(end)s (NULL when the request names none); a literal % is written %%.
    values: str
    multi: bool = True  # the variable takes several values and All; else one (the dashboard's subject)
    sort_values: bool = True  # the dashboard sorts the values alphabetically; else in the service's order
    indexed: bool = False  # plain PostgreSQL's rollups index its columns (TimescaleDB indexes every key)
    # On the datasets that hold the attribution columns (LLM Usage's, MCP Usage's): another
    # predicate, reading those columns too (the group's mapping rule); None: the same one.
    attributed: str | None = None

    def predicate_for(self, attributed: bool) -> str:
        return self.attributed if attributed and self.attributed else self.predicate

    def columns_for(self, attributed: bool) -> frozenset[str]:
        return self.columns | ATTRIBUTION_SET if attributed and self.attributed else self.columns


def _f(name: str, label: str, permission: Permission, predicate: str, columns: set[str], scopes: set[str],
       values: str, **settings: Any) -> Filter:
    return Filter(name, label, permission, predicate, frozenset(columns), frozenset(scopes), values, **settings)


ATTRIBUTION_SET = frozenset(ATTRIBUTION_COLUMNS)


class _GroupLink(NamedTuple):
    """One way a row belongs to a group: the directory relation pairing a value of the row's
    `column` (its `value` column) with a group (its `group` column), under `conditions`."""
    column: str
    relation: str
    value: str
    group: str
    conditions: tuple[str, ...] = ()

    def predicate(self) -> str:
        """The row belongs, this way, to one of the groups the parameter lists."""
        where = " AND ".join((*self.conditions, f"{self.group} = ANY(%s)"))
        return f"{self.column} IN (SELECT {self.value} FROM {self.relation} WHERE {where})"

    def groups_of_row(self) -> str:
        """The groups the row named `src` belongs to this way."""
        where = " AND ".join((*self.conditions, f"{self.value} = src.{self.column}"))
        return f"SELECT {self.group} FROM {self.relation} WHERE {where}"


# A row belongs to a group through its user (the group's members as they stand now), and on
# the rows that hold the attribution columns also through a dimension's value the group's rule
# maps onto it. The group filter keeps the rows that belong to one of its groups; what measures
# several groups in one pass (budgets) counts each row once in each group it belongs to.
_MEMBERSHIP = _GroupLink("user_id", "group_members gm", "gm.user_id", "gm.group_id")
_MAPPED = tuple(_GroupLink(d, "attribution_groups ag", "ag.value", "ag.group_id", (f"ag.dimension = '{d}'",))
                for d in ATTRIBUTION_COLUMNS)
_MEMBERS = _MEMBERSHIP.predicate()
_MEMBERS_OR_MAPPED = "(" + " OR ".join(link.predicate() for link in (_MEMBERSHIP, *_MAPPED)) + ")"
MEMBERS_OF_ROW = _MEMBERSHIP.groups_of_row()
GROUPS_OF_ROW = " UNION ".join(link.groups_of_row() for link in (_MEMBERSHIP, *_MAPPED))


# The smallest daily aggregates holding the dimensions of the tool calls, requests and metric
# points (the same rows as the attributed ones: every value those hold).
_BY_ATTRIBUTION = tuple(x.at(rollups.DAY).name for x in (rollups.TOOL_CALLS_BY_ATTRIBUTION,
                                                          rollups.LLM_USAGE_BY_ATTRIBUTION,
                                                          rollups.LLM_METRIC_USAGE_BY_ATTRIBUTION))


def _attribution_values(dimension: str) -> str:
    """Every value of the dimension the attributed aggregates and the groups' rules name."""
    return ("SELECT v, v FROM ("
            + " UNION ".join(f"SELECT {dimension} AS v FROM {daily}" for daily in _BY_ATTRIBUTION)
            + f" UNION SELECT value FROM attribution_groups WHERE dimension = '{dimension}') t"
            " WHERE v IS NOT NULL ORDER BY 1")


_ALL_TABS = {"mcp", "llm", "session", "value"}
_MCP = {"mcp"}
_LLM = {"llm", "session"}
_Q = Permission.QUERY
_LLM_DATA = Permission.LLM_ANALYTICS

# In the order the faces list them.
DECLARED: tuple[Filter, ...] = (
    _f("user", "User", _Q, "user_id = ANY(%s)", {"user_id"}, _ALL_TABS,
       "SELECT id, coalesce(display_name, email, id) FROM users ORDER BY 2, 1", indexed=True),
    # The group's members as of now; on LLM Usage and MCP Usage also the usage its rule maps.
    _f("group", "Group", _Q, _MEMBERS, {"user_id"}, _ALL_TABS, "SELECT id, name FROM groups ORDER BY 2, 1",
       attributed=_MEMBERS_OR_MAPPED),
    _f("agent_instance", "Agent instance", _Q, "agent_instance_id = ANY(%s)", {"agent_instance_id"}, _MCP,
       "SELECT id, coalesce(name, id) FROM agent_instances ORDER BY 2, 1"),
    _f("agent", "Agent", _Q, "agent_id = ANY(%s)", {"agent_id"}, _MCP,
       "SELECT id, name FROM agents ORDER BY 2, 1", indexed=True),
    _f("mcp", "MCP", _Q, "mcp_server_id = ANY(%s)", {"mcp_server_id"}, _MCP,
       "SELECT id, name FROM mcp_servers ORDER BY 2, 1", indexed=True),
    _f("agent_tag", "Agent tag", _Q,
       "agent_id IN (SELECT agt.agent_id FROM agent_tags agt WHERE agt.tag = ANY(%s))", {"agent_id"}, _MCP,
       "SELECT DISTINCT tag, tag FROM agent_tags ORDER BY 1"),
    # The MCP server carries the tag, or the tool itself does.
    _f("resource_tag", "Resource tag", _Q,
       "(mcp_server_id IN (SELECT st.mcp_server_id FROM mcp_server_tags st WHERE st.tag = ANY(%s))"
       " OR (mcp_server_id, tool_name) IN (SELECT tt.mcp_server_id, tt.tool_name FROM tool_tags tt"
       " WHERE tt.tag = ANY(%s)))", {"mcp_server_id", "tool_name"}, _MCP,
       "SELECT tag, tag FROM (SELECT tag FROM mcp_server_tags UNION SELECT tag FROM tool_tags) t ORDER BY 1"),
    # Values: the smallest rollups that name every provider and model LLM Usage can show.
    _f("provider", "Provider", _LLM_DATA, "provider = ANY(%s)", {"provider"}, _LLM,
       "SELECT p, p FROM (SELECT provider AS p FROM llm_usage_by_model_daily UNION"
       " SELECT provider FROM llm_metric_usage_by_model_daily) t ORDER BY 1", indexed=True),
    _f("model", "Model", _LLM_DATA, "model = ANY(%s)", {"model"}, _LLM,
       "SELECT m, m FROM (SELECT model AS m FROM llm_usage_by_model_daily UNION"
       " SELECT model FROM llm_metric_usage_by_model_daily) t ORDER BY 1", indexed=True),
    # The attribution dimensions (config.ATTRIBUTION): LLM Usage's and MCP Usage's rows hold them.
    *(_f(d.name, d.title, _Q, f"{d.name} = ANY(%s)", {d.name}, {"mcp", "llm"}, _attribution_values(d.name))
      for d in ATTRIBUTION),
    # The most recent sessions overlapping the range (the session table is the directory of sessions).
    _f("session", "Session", _LLM_DATA, "session_id = ANY(%s)", {"session_id"}, {"session"},
       "SELECT s.id, s.id || ' (' || coalesce(u.display_name, u.email, s.user_id, '?') || ')'"
       " FROM sessions s LEFT JOIN users u ON u.id = s.user_id"
       " WHERE (%(start)s::timestamptz IS NULL OR s.last_seen >= %(start)s)"
       " AND (%(end)s::timestamptz IS NULL OR s.first_seen < %(end)s)"
       " ORDER BY s.last_seen DESC, s.id LIMIT 1000", multi=False, sort_values=False),
)
FILTERS: dict[str, Filter] = {f.name: f for f in DECLARED}
assert len(FILTERS) == len(DECLARED), "duplicate filter name"
assert all(f.scopes <= set(SCOPES) and f.predicate.count("%s") >= 1 for f in DECLARED)


def applying_to(*scopes: str) -> tuple[str, ...]:
    """The names of the filters that apply to every one of these scopes, in declaration order."""
    return tuple(f.name for f in DECLARED if set(scopes) <= f.scopes)


# The columns plain PostgreSQL's rollups index with the bucket, as TimescaleDB indexes a
# continuous aggregate's grouping columns.
INDEXED_COLUMNS: frozenset[str] = frozenset().union(*(f.columns for f in DECLARED if f.indexed))

ALL_MARKERS = frozenset({"$__all", "All", ""})


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


def predicate_text(filters: Mapping[str, Sequence[str]], applicable: Sequence[str],
                   attributed: bool = False) -> tuple[str, list]:
    """`TRUE AND ...` for the filters that apply (our own constant SQL, values as placeholders);
    the list of parameters in order. `attributed`: the relation holds the attribution columns."""
    parts = ["TRUE"]
    params: list = []
    for name in applicable:
        values = filters.get(name)
        if not values:
            continue
        text = FILTERS[name].predicate_for(attributed)
        parts.append(text)
        params.extend([list(values)] * text.count("%s"))
    return " AND ".join(parts), params


def predicate(filters: Mapping[str, Sequence[str]], applicable: Sequence[str],
              attributed: bool = False) -> tuple[sql.Composable, list]:
    """predicate_text as SQL."""
    text, params = predicate_text(filters, applicable, attributed)
    return sql.SQL(text), params
