-- Daily (UTC) twin of llm_sessions_hourly: whole days of the window for the session totals.
SELECT time_bucket(INTERVAL '1 day', time) AS bucket,
       session_id, source, user_id, agent_id, provider, model, counted,
       count(*)                                                  AS requests,
       sum(input_tokens)                                         AS input_tokens,
       sum(output_tokens)                                        AS output_tokens,
       sum(cache_read_tokens)                                    AS cache_read_tokens,
       sum(cache_write_tokens)                                   AS cache_write_tokens,
       sum(estimated_cost_usd)                                   AS estimated_cost_usd,
       sum(reported_cost_usd)                                    AS reported_cost_usd,
       sum(CASE WHEN estimated_cost_usd IS NULL THEN 1 ELSE 0 END) AS unpriced_requests,
       sum(latency_ms)                                           AS latency_ms_sum,
       count(latency_ms)                                         AS latency_count,
       min(time)                                                 AS first_time,
       max(time)                                                 AS last_time
FROM llm_requests
GROUP BY bucket, session_id, source, user_id, agent_id, provider, model, counted
