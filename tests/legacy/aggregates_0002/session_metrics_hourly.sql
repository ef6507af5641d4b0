-- Metric points (the session totals agents send as metrics) per hour and session.
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       session_id, source, user_id, agent_id, provider, model, metric, token_type,
       sum(value)                    AS value,
       sum(estimated_cost_usd)       AS estimated_cost_usd,
       sum(CASE WHEN metric = 'tokens' AND estimated_cost_usd IS NULL THEN 1 ELSE 0 END) AS unpriced_points,
       min(coalesce(start_time, time)) AS first_time,
       max(time)                     AS last_time
FROM metric_points
GROUP BY bucket, session_id, source, user_id, agent_id, provider, model, metric, token_type
