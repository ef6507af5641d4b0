-- Tool calls per UTC day by user and tool: the daily twin, for these columns, of tool_calls_hourly
-- (which answers the hours around whole days). Which tools and MCP servers a user or a group
-- used: a filter on users together with a question on tools needs both columns.
SELECT time_bucket(INTERVAL '1 day', time) AS bucket,
       source, outcome, user_id, mcp_server_id, tool_name,
       count(*) AS calls
FROM tool_calls
GROUP BY bucket, source, outcome, user_id, mcp_server_id, tool_name
