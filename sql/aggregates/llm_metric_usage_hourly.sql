-- Metric points of sessions per hour by user, agent, provider and model, without the session
-- (LLM Usage: these count instead of the sessions' events). Points without a session are
-- left out: GenAI instrumentation reports those requests as spans too.
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       source, user_id, agent_id, provider, model, metric, token_type,
       sum(value)                    AS value,
       sum(estimated_cost_usd)       AS estimated_cost_usd
FROM metric_points
WHERE session_id IS NOT NULL
GROUP BY bucket, source, user_id, agent_id, provider, model, metric, token_type
