-- Metric points of sessions per hour by user, agent, provider and model, without the session,
-- token types and cost as columns (LLM Usage: these count instead of the sessions' events; their
-- cost only where `cost_counted`: in sessions that sent no api_request events).
-- Points without a session are left out: GenAI instrumentation reports those requests as spans too.
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       source, user_id, agent_id, provider, model,
       sum(value) FILTER (WHERE metric = 'tokens' AND token_type = 'input')       AS input_tokens,
       sum(value) FILTER (WHERE metric = 'tokens' AND token_type = 'output')      AS output_tokens,
       sum(value) FILTER (WHERE metric = 'tokens' AND token_type = 'cache_read')  AS cache_read_tokens,
       sum(value) FILTER (WHERE metric = 'tokens' AND token_type = 'cache_write') AS cache_write_tokens,
       sum(value) FILTER (WHERE metric = 'tokens' AND token_type = '')            AS other_tokens,
       sum(value) FILTER (WHERE metric = 'cost' AND cost_counted)                 AS reported_cost_usd,
       sum(estimated_cost_usd) FILTER (WHERE metric = 'tokens' AND cost_counted)  AS estimated_cost_usd,
       sum(value) FILTER (WHERE metric = 'tokens' AND cost_counted AND estimated_cost_usd IS NULL)
                                                                                  AS estimated_unpriced_tokens
FROM metric_points
WHERE session_id IS NOT NULL
GROUP BY bucket, source, user_id, agent_id, provider, model
