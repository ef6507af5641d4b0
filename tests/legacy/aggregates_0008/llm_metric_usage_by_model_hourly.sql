-- llm_metric_usage_hourly by provider and model only: LLM Usage without a user or group filter.
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       provider, model,
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
GROUP BY bucket, provider, model
