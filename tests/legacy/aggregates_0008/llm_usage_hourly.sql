-- LLM requests per hour by user, agent, provider and model (LLM Usage); `counted`: whether
-- the request's tokens count (false when its session sent metric points instead). Their cost
-- always counts (a price is a request's); `*_unpriced_tokens`: tokens without that cost.
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       source, user_id, agent_id, provider, model, counted,
       count(*)                                                  AS requests,
       sum(input_tokens)                                         AS input_tokens,
       sum(output_tokens)                                        AS output_tokens,
       sum(cache_read_tokens)                                    AS cache_read_tokens,
       sum(cache_write_tokens)                                   AS cache_write_tokens,
       sum(estimated_cost_usd)                                   AS estimated_cost_usd,
       sum(reported_cost_usd)                                    AS reported_cost_usd,
       sum(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens)
           FILTER (WHERE estimated_cost_usd IS NULL)             AS estimated_unpriced_tokens,
       sum(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens)
           FILTER (WHERE reported_cost_usd IS NULL)              AS reported_unpriced_tokens,
       sum(CASE WHEN estimated_cost_usd IS NULL THEN 1 ELSE 0 END) AS unpriced_requests,
       sum(CASE WHEN reported_cost_usd IS NULL THEN 1 ELSE 0 END)  AS unreported_requests,
       sum(latency_ms)                                           AS latency_ms_sum,
       count(latency_ms)                                         AS latency_count
FROM llm_requests
GROUP BY bucket, source, user_id, agent_id, provider, model, counted
