-- Each session's tokens of counted cost that no price is known for, beside its cost: a session
-- using a priced and an unknown model showed the priced part alone, with no sign of the rest.
--
-- `estimated_unpriced_tokens`: the tokens of its events without a list price (an event's cost
-- always counts) and of its `cost_counted` token points without one. `reported_unpriced_tokens`:
-- the tokens of its events without a reported cost (Codex, GenAI) and of its `cost_counted` token
-- points from an agent that reports no cost metric (only Claude Code sends cost.usage; the
-- aggregates say the same). Kept at ingest with the other totals (ingest/store.py).
ALTER TABLE sessions
    ADD COLUMN estimated_unpriced_tokens double precision NOT NULL DEFAULT 0,
    ADD COLUMN reported_unpriced_tokens  double precision NOT NULL DEFAULT 0;

CREATE OR REPLACE FUNCTION aa_rebuild_session_totals(ids text[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO sessions (id, agent_id, user_id, first_seen, last_seen)
    SELECT session_id, max(agent_id), max(user_id), min(time), max(time)
    FROM (SELECT session_id, agent_id, user_id, time FROM llm_requests
          WHERE session_id IS NOT NULL AND (ids IS NULL OR session_id = ANY(ids))
          UNION ALL
          SELECT session_id, agent_id, user_id, time FROM metric_points
          WHERE session_id IS NOT NULL AND (ids IS NULL OR session_id = ANY(ids))) f
    GROUP BY session_id
    ORDER BY session_id
    ON CONFLICT (id) DO NOTHING;

    WITH ev AS (
        SELECT session_id, count(*) AS requests,
               sum(input_tokens) FILTER (WHERE counted) AS input_tokens,
               sum(output_tokens) FILTER (WHERE counted) AS output_tokens,
               sum(cache_read_tokens) FILTER (WHERE counted) AS cache_read_tokens,
               sum(cache_write_tokens) FILTER (WHERE counted) AS cache_write_tokens,
               sum(estimated_cost_usd) AS estimated_cost_usd,
               sum(reported_cost_usd) AS reported_cost_usd,
               sum(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens)
                   FILTER (WHERE estimated_cost_usd IS NULL) AS estimated_unpriced_tokens,
               sum(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens)
                   FILTER (WHERE reported_cost_usd IS NULL) AS reported_unpriced_tokens,
               max(user_id) AS user_id, max(agent_id) AS agent_id, array_agg(DISTINCT model) AS models,
               array_agg(DISTINCT user_id) AS user_ids, min(time) AS first_time, max(time) AS last_time
        FROM llm_requests
        WHERE session_id IS NOT NULL AND (ids IS NULL OR session_id = ANY(ids))
        GROUP BY session_id),
    mp AS (
        SELECT session_id, count(*) AS points,
               sum(value) FILTER (WHERE metric = 'tokens') AS tokens,
               sum(value) FILTER (WHERE metric = 'tokens' AND token_type = 'input') AS input_tokens,
               sum(value) FILTER (WHERE metric = 'tokens' AND token_type = 'output') AS output_tokens,
               sum(value) FILTER (WHERE metric = 'tokens' AND token_type = 'cache_read') AS cache_read_tokens,
               sum(value) FILTER (WHERE metric = 'tokens' AND token_type = 'cache_write') AS cache_write_tokens,
               sum(estimated_cost_usd) FILTER (WHERE metric = 'tokens' AND cost_counted) AS estimated_cost_usd,
               sum(value::numeric) FILTER (WHERE metric = 'cost' AND cost_counted) AS reported_cost_usd,
               sum(value) FILTER (WHERE metric = 'tokens' AND cost_counted AND estimated_cost_usd IS NULL)
                   AS estimated_unpriced_tokens,
               sum(value) FILTER (WHERE metric = 'tokens' AND cost_counted AND source <> 'claude_code')
                   AS reported_unpriced_tokens,
               max(user_id) AS user_id, max(agent_id) AS agent_id, array_agg(DISTINCT model) AS models,
               array_agg(DISTINCT user_id) AS user_ids, min(coalesce(start_time, time)) AS first_time,
               min(time) AS first_row, max(time) AS last_time
        FROM metric_points
        WHERE session_id IS NOT NULL AND (ids IS NULL OR session_id = ANY(ids))
        GROUP BY session_id)
    UPDATE sessions s SET
        requests = coalesce(ev.requests, 0), points = coalesce(mp.points, 0),
        tokens = coalesce(ev.input_tokens + ev.output_tokens + ev.cache_read_tokens + ev.cache_write_tokens, 0)
                 + coalesce(mp.tokens, 0),
        input_tokens = coalesce(ev.input_tokens, 0) + coalesce(mp.input_tokens, 0),
        output_tokens = coalesce(ev.output_tokens, 0) + coalesce(mp.output_tokens, 0),
        cache_read_tokens = coalesce(ev.cache_read_tokens, 0) + coalesce(mp.cache_read_tokens, 0),
        cache_write_tokens = coalesce(ev.cache_write_tokens, 0) + coalesce(mp.cache_write_tokens, 0),
        estimated_cost_usd = coalesce(ev.estimated_cost_usd + mp.estimated_cost_usd, ev.estimated_cost_usd,
                                      mp.estimated_cost_usd),
        reported_cost_usd = coalesce(ev.reported_cost_usd + mp.reported_cost_usd, ev.reported_cost_usd,
                                     mp.reported_cost_usd),
        estimated_unpriced_tokens = coalesce(ev.estimated_unpriced_tokens, 0)
                                    + coalesce(mp.estimated_unpriced_tokens, 0),
        reported_unpriced_tokens = coalesce(ev.reported_unpriced_tokens, 0) + coalesce(mp.reported_unpriced_tokens, 0),
        ev_user_id = ev.user_id, ev_agent_id = ev.agent_id, mp_user_id = mp.user_id, mp_agent_id = mp.agent_id,
        models = ARRAY(SELECT DISTINCT m FROM unnest(ev.models || mp.models) m ORDER BY 1),
        user_ids = ARRAY(SELECT DISTINCT u FROM unnest(ev.user_ids || mp.user_ids) u ORDER BY 1),
        first_time = least(ev.first_time, mp.first_time), last_time = greatest(ev.last_time, mp.last_time),
        first_seen = least(s.first_seen, ev.first_time, mp.first_row),
        last_seen = greatest(s.last_seen, ev.last_time, mp.last_time)
    FROM (SELECT id FROM sessions WHERE ids IS NULL OR id = ANY(ids)) k
    LEFT JOIN ev ON ev.session_id = k.id
    LEFT JOIN mp ON mp.session_id = k.id
    WHERE s.id = k.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

SELECT aa_rebuild_session_totals();
