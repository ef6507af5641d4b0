"""The keys several raw tables share (each raw table's own keys are in its module)."""
from __future__ import annotations

from agent_analytics.config import ATTRIBUTION_COLUMNS
from agent_analytics.sql.rollup_shapes import Key

# The attribution dimensions (config.ATTRIBUTION): keys of every user-keyed LLM Usage rollup, so
# that LLM Usage's attribution filters narrow each of its panels, and of the productivity rollups
# the Value figures per team read (a process's attributes are the same for all its requests and
# points: the rows barely multiply).
ATTRIBUTION = tuple(Key(c) for c in ATTRIBUTION_COLUMNS)

# Who and what a fact is about (the tool-call and enforcement tables hold the agent's instance,
# the MCP server and the tool; the LLM tables the session, provider and model too).
SOURCE, OUTCOME, USER, AGENT, AGENT_INSTANCE, MCP_SERVER, TOOL = (
    Key(n) for n in ("source", "outcome", "user_id", "agent_id", "agent_instance_id", "mcp_server_id", "tool_name"))
SESSION, PROVIDER, MODEL = (Key(n) for n in ("session_id", "provider", "model"))
# An enforcement event's kind (decision, sandbox, mcp_connection), an API error's (error,
# retries_exhausted).
KIND = Key("kind")
# Who made a request (query_source: 'main' or 'subagent'; agent_name: the subagent) and how
# (effort; the requests' speed is theirs alone: llm_requests.py), where the agent says (migration 0013).
QUERY_SOURCE, AGENT_NAME, EFFORT = (Key(n) for n in ("query_source", "agent_name", "effort"))
