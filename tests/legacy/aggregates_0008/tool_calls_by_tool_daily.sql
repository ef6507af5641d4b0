-- Daily (UTC) twin of tool_calls_by_tool_hourly: whole days inside a window are read from here,
-- the hours around them from the hourly rollup, the partial hours at the edges from raw rows.
SELECT time_bucket(INTERVAL '1 day', time) AS bucket,
       source, outcome, mcp_server_id, tool_name,
       count(*) AS calls
FROM tool_calls
GROUP BY bucket, source, outcome, mcp_server_id, tool_name
