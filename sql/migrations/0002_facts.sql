-- Facts: append-only, keyed by a digest of their content (source_key) so that a retried
-- batch collides with what is already stored. On TimescaleDB these become hypertables
-- partitioned by time, so every unique key carries the time column.

CREATE TABLE tool_calls (
    time               timestamptz NOT NULL,
    source_key         bytea NOT NULL,
    source             text NOT NULL,      -- who reported it: gateway, claude_code, codex, ...
    user_id            text,
    agent_id           text,
    agent_instance_id  text,
    session_id         text,
    mcp_server_id      text,
    tool_name          text NOT NULL,
    outcome            text NOT NULL CHECK (outcome IN ('ok', 'error', 'blocked')),
    duration_ms        double precision CHECK (duration_ms >= 0),
    error_type         text,
    -- For a blocked call: the policy as it was at that moment (it may be renamed later).
    policy_id          text,
    policy_name        text,
    policy_description text,
    attributes         jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (source_key, time)
);
CREATE INDEX tool_calls_time_idx ON tool_calls (time DESC);

CREATE TABLE llm_requests (
    time                timestamptz NOT NULL,
    source_key          bytea NOT NULL,
    source              text NOT NULL,     -- claude_code, codex, genai
    session_id          text,
    user_id             text,
    agent_id            text,
    provider            text NOT NULL DEFAULT 'unknown',
    model               text NOT NULL DEFAULT 'unknown',
    -- input_tokens EXCLUDES cache reads and writes (normalised at ingest), so the four add up.
    input_tokens        bigint NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens       bigint NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cache_read_tokens   bigint NOT NULL DEFAULT 0 CHECK (cache_read_tokens >= 0),
    cache_write_tokens  bigint NOT NULL DEFAULT 0 CHECK (cache_write_tokens >= 0),
    reported_cost_usd   numeric(24, 12),   -- the agent's own figure, when it sends one
    estimated_cost_usd  numeric(24, 12),   -- list price; NULL when the model is unpriced
    cost_basis          text,              -- how the estimate was derived
    latency_ms          double precision CHECK (latency_ms >= 0),
    attributes          jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (source_key, time)
);
CREATE INDEX llm_requests_time_idx ON llm_requests (time DESC);
CREATE INDEX llm_requests_session_idx ON llm_requests (session_id, time);

CREATE TABLE llm_errors (
    time        timestamptz NOT NULL,
    source_key  bytea NOT NULL,
    source      text NOT NULL,
    session_id  text,
    user_id     text,
    agent_id    text,
    provider    text NOT NULL DEFAULT 'unknown',
    model       text NOT NULL DEFAULT 'unknown',
    error       text,
    status_code integer,
    duration_ms double precision,
    attributes  jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (source_key, time)
);
CREATE INDEX llm_errors_time_idx ON llm_errors (time DESC);

-- Session totals that agents send as metrics (Claude Code's token.usage and cost.usage),
-- always stored as deltas: cumulative series are differenced at ingest.
CREATE TABLE metric_points (
    time               timestamptz NOT NULL,   -- end of the point's window
    start_time         timestamptz,
    source_key         bytea NOT NULL,
    source             text NOT NULL,
    session_id         text,
    user_id            text,
    agent_id           text,
    provider           text NOT NULL DEFAULT 'unknown',
    model              text NOT NULL DEFAULT 'unknown',
    metric             text NOT NULL CHECK (metric IN ('tokens', 'cost')),
    token_type         text NOT NULL DEFAULT ''
                       CHECK (token_type IN ('', 'input', 'output', 'cache_read', 'cache_write')),
    value              double precision NOT NULL CHECK (value >= 0),
    estimated_cost_usd numeric(24, 12),        -- list price of a token point; NULL when unpriced
    PRIMARY KEY (source_key, time)
);
CREATE INDEX metric_points_session_idx ON metric_points (session_id, time);

-- Last value seen per cumulative series, to turn cumulative points into deltas.
CREATE TABLE metric_series_state (
    series_key bytea PRIMARY KEY,
    start_time timestamptz,
    last_time  timestamptz NOT NULL,
    last_value double precision NOT NULL
);

CREATE TABLE sessions (
    id         text PRIMARY KEY,
    agent_id   text,
    user_id    text,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL
);
CREATE INDEX sessions_last_seen_idx ON sessions (last_seen DESC);
