-- Metric points (the session totals agents send as metrics) per hour, session and model, the
-- token types and cost as columns (the Sessions table, session metrics, the drawer).
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       session_id, source, user_id, agent_id, provider, model,
       sum(value) FILTER (WHERE metric = 'tokens')                                AS tokens,
       sum(value) FILTER (WHERE metric = 'tokens' AND token_type = 'input')       AS input_tokens,
       sum(value) FILTER (WHERE metric = 'tokens' AND token_type = 'output')      AS output_tokens,
       sum(value) FILTER (WHERE metric = 'tokens' AND token_type = 'cache_read')  AS cache_read_tokens,
       sum(value) FILTER (WHERE metric = 'tokens' AND token_type = 'cache_write') AS cache_write_tokens,
       sum(value) FILTER (WHERE metric = 'cost' AND cost_counted)                 AS reported_cost_usd,
       sum(estimated_cost_usd) FILTER (WHERE metric = 'tokens' AND cost_counted)  AS estimated_cost_usd,
       count(*) FILTER (WHERE metric = 'tokens' AND cost_counted AND estimated_cost_usd IS NULL)
                                                                                  AS unpriced_points,
       min(coalesce(start_time, time))                                            AS first_time,
       max(time)                                                                  AS last_time
FROM metric_points
GROUP BY bucket, session_id, source, user_id, agent_id, provider, model
