"""SQL text shared by the query builders: our own constant fragments (relation and column names
from relations.py, values always as placeholders), never anything built from user input."""
from __future__ import annotations

import re

from agent_analytics.ingest.normalise_gateway import SERVER_SIDE

TOKEN_TYPES = ("input", "output", "cache_read", "cache_write")
C = 'COLLATE "C"'

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def ident(name: str) -> str:
    """A relation or column name of our own, quoted as sql.Identifier would."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not one of our identifiers: {name!r}")
    return f'"{name}"'


# `<> ALL` of an empty array is true: with no gateway in the window every agent report counts.
# The MCP servers' own spans count as the gateway's do (they too see every call to the server).
SERVER_SIDE_SQL = "source IN (" + ", ".join(f"'{s}'" for s in SERVER_SIDE) + ")"
GATEWAY_FIRST = f"({SERVER_SIDE_SQL} OR mcp_server_id IS NULL OR mcp_server_id <> ALL(%s))"
GATEWAY_SERVERS = (f"SELECT DISTINCT mcp_server_id FROM {{relation}} WHERE {SERVER_SIDE_SQL}"
                    " AND mcp_server_id IS NOT NULL AND {column} >= %s AND {column} < %s")
TOKENS = "input_tokens + output_tokens + cache_read_tokens + cache_write_tokens + other_tokens"
# The cost of a set of rows: null when some usage but none of it could be priced (unknown is
# not 0), 0 when there is no usage to price. With some priced, the priced sum; the unpriced
# tokens go alongside.
COST_SUM = "coalesce(sum(cost), CASE WHEN sum(unpriced_tokens) > 0 THEN NULL ELSE 0 END)"

# Cache reads against all input (input, cache reads, cache writes), in percent; no input: unknown.
ALL_INPUT = "input_tokens + cache_read_tokens + cache_write_tokens"
CACHE_RATIO = f"(100 * sum(cache_read_tokens) / nullif(sum({ALL_INPUT}), 0))::float8"

# The LLM usage totals and the sums per bucket: one body each, so that the stats (tokens, cost,
# token mix, cache hit ratio, the error rate's requests) and the series (tokens, cost, cache hit
# ratio) of a refresh run one statement per window between them (Engine.fetch, shared).
LLM_TOTALS = ("SELECT " + ", ".join(f"coalesce(sum({t}_tokens), 0) AS {t}" for t in TOKEN_TYPES)
              + f", coalesce(sum({TOKENS}), 0) AS tokens, {COST_SUM} AS cost,"
              " coalesce(sum(unpriced_tokens), 0) AS unpriced_tokens,"
              f" coalesce(sum(requests), 0) AS requests, {CACHE_RATIO} AS cache_hit_ratio FROM src")
LLM_BUCKET_SUMS = (f"sum({TOKENS}) AS tokens, {COST_SUM} AS cost,"
                   f" coalesce(sum(unpriced_tokens), 0)::float8 AS unpriced_tokens, {CACHE_RATIO} AS ratio")


def literal(text: str) -> str:
    """One of our own labels as an SQL string literal."""
    if "'" in text or "\\" in text:
        raise ValueError(f"not a plain label: {text!r}")
    return f"'{text}'"



# How the directory names a row of its tables (what a top list shows beside the id).
_NAMES = {"users": "coalesce(n.display_name, n.email)", "mcp_servers": "n.name", "agent_instances": "n.name"}


def name_of(table: str, key: str, unnamed: str) -> str:
    """The directory's name for the group column `g.<key>`, else the id, else `unnamed`. A scalar
    subquery rather than a join: with ORDER BY ... LIMIT, PostgreSQL evaluates it after the sort,
    for the page's rows only, where a join names every group (77,000 of them for decisions by
    tool and user on a month of the benchmark's dataset)."""
    return (f"coalesce((SELECT {_NAMES[table]} FROM {ident(table)} n WHERE n.id = g.{ident(key)}), g.{ident(key)},"
            f" {literal(unnamed)})")
