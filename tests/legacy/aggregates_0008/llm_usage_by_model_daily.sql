-- Daily (UTC) twin of llm_usage_by_model_hourly.
SELECT time_bucket(INTERVAL '1 day', time) AS bucket,
       provider, model, counted,
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
           FILTER (WHERE reported_cost_usd IS NULL)              AS reported_unpriced_tokens
FROM llm_requests
GROUP BY bucket, provider, model, counted
