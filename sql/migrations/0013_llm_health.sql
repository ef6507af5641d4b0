-- LLM health and where the money goes: what the agents say of each request beyond its tokens.
--
-- llm_requests gains the time to first token (Claude Code's `ttft_ms`), who made the request
-- (`query_source`: 'main' for the session's own thread, 'subagent' for a subagent, whose name is
-- `agent_name`) and the request's `effort` and `speed` where the agent sends them. llm_errors
-- gains the `attempt` an error ended and its `kind`: 'error' (an api_error, or a failed Codex
-- api_request) or 'retries_exhausted' (Claude Code's api_retries_exhausted, which follows the
-- last attempt's api_error of the same failure). metric_points gains the same breakdowns, as
-- Claude Code's token.usage and cost.usage points carry them.
--
-- The rows stored before keep their attributes (llm_requests, llm_errors): their values are
-- read from there. metric_points keeps no attributes: its rows from before stay unknown (NULL),
-- never guessed.
ALTER TABLE llm_requests
    ADD COLUMN ttft_ms      double precision,
    ADD COLUMN query_source text,
    ADD COLUMN agent_name   text,
    ADD COLUMN effort       text,
    ADD COLUMN speed        text;

ALTER TABLE llm_errors
    ADD COLUMN kind         text NOT NULL DEFAULT 'error',
    ADD COLUMN attempt      integer,
    ADD COLUMN query_source text,
    ADD COLUMN agent_name   text;

ALTER TABLE metric_points
    ADD COLUMN query_source text,
    ADD COLUMN agent_name   text,
    ADD COLUMN effort       text;

-- Claude Code's `query_source` names the thread ('sdk', 'repl_main_thread', ...) or, for a
-- subagent, starts with 'agent:' (ingest/normalise_claude_code.py says the same).
UPDATE llm_requests SET
    ttft_ms = CASE WHEN attributes->>'ttft_ms' ~ '^[0-9]+(\.[0-9]+)?$'
                   THEN (attributes->>'ttft_ms')::double precision END,
    query_source = CASE WHEN attributes->>'query_source' LIKE 'agent:%'
                          OR attributes->>'query_source' = 'subagent' THEN 'subagent'
                        WHEN attributes->>'query_source' <> '' THEN 'main' END,
    agent_name = nullif(left(attributes->>'agent.name', 200), ''),
    effort = nullif(left(attributes->>'effort', 50), ''),
    speed = nullif(left(attributes->>'speed', 50), '')
WHERE source = 'claude_code'
  AND (attributes ?| ARRAY['ttft_ms', 'query_source', 'agent.name', 'effort', 'speed']);

-- Attempts count from 1 (Claude Code's count; Codex counts from 0).
UPDATE llm_errors SET
    attempt = CASE WHEN attributes->>'attempt' ~ '^[0-9]{1,6}$'
                   THEN (attributes->>'attempt')::integer + CASE WHEN source = 'codex' THEN 1 ELSE 0 END END,
    query_source = CASE WHEN source <> 'claude_code' THEN NULL
                        WHEN attributes->>'query_source' LIKE 'agent:%'
                          OR attributes->>'query_source' = 'subagent' THEN 'subagent'
                        WHEN attributes->>'query_source' <> '' THEN 'main' END,
    agent_name = nullif(left(attributes->>'agent.name', 200), '')
WHERE attributes ?| ARRAY['attempt', 'query_source', 'agent.name'];
