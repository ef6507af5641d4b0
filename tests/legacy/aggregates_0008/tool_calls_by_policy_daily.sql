-- Daily (UTC) twin of tool_calls_by_policy_hourly (see tool_calls_by_tool_daily.sql).
SELECT time_bucket(INTERVAL '1 day', time) AS bucket,
       outcome, policy_id, policy_name, policy_description,
       count(*) AS calls
FROM tool_calls
WHERE outcome = 'blocked'
GROUP BY bucket, outcome, policy_id, policy_name, policy_description
