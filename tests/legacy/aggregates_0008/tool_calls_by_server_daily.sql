-- Daily (UTC) twin of tool_calls_by_server_hourly (see tool_calls_by_tool_daily.sql).
SELECT time_bucket(INTERVAL '1 day', time) AS bucket,
       source, outcome, mcp_server_id,
       count(*) AS calls
FROM tool_calls
GROUP BY bucket, source, outcome, mcp_server_id
