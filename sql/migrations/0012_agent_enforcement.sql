-- The agents' own enforcement and health signals (ingest/normalise_enforcement.py): one row per
-- event, keyed like every fact by a digest of its content.
--
-- kind 'decision': a permission decision on a tool use (Claude Code `tool_decision`, Codex
--   `codex.tool_decision`), built-in tools and MCP tools alike. `outcome` accept | reject | abort,
--   `decision_source` as the agent names it (config, hook, user_permanent, user_temporary,
--   user_reject, user_abort; Codex's lower-cased), `permission_mode` where sent (Claude Code).
-- kind 'sandbox': Codex's `codex.sandbox_outcome` (`outcome` as sent: denied...), which the
--   agent reports while its tool_result may say success.
-- kind 'mcp_connection': Claude Code's `mcp_server_connection` (`outcome` connected | failed |
--   disconnected, `error_code` on failure, the server in `mcp_server_id` as configured).
-- `blocked`: the agent's enforcement stopped the tool (a reject by config, a hook or the user, a
--   Codex denial, a sandbox denial), with the policy as recorded then; a user's abort is no block.
CREATE TABLE agent_enforcement (
    time              timestamptz NOT NULL,
    source_key        bytea NOT NULL,
    source            text NOT NULL,      -- claude_code, codex
    kind              text NOT NULL CHECK (kind IN ('decision', 'sandbox', 'mcp_connection')),
    user_id           text,
    agent_id          text,
    agent_instance_id text,
    session_id        text,
    mcp_server_id     text,
    tool_name         text,
    outcome           text NOT NULL,
    decision_source   text,
    permission_mode   text,
    error_code        text,
    blocked           boolean NOT NULL DEFAULT false,
    policy_id         text,
    policy_name       text,
    attributes        jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (source_key, time)
);
CREATE INDEX agent_enforcement_time_idx ON agent_enforcement (time DESC);
