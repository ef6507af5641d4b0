-- Rollup of tool_calls_hourly without the actor columns: what unfiltered (or MCP / resource-tag
-- filtered) MCP Usage and Security panels read. Far fewer rows than the full aggregate, whose
-- actor x tool combinations are nearly as many as the raw calls.
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       source, outcome, mcp_server_id, tool_name,
       count(*) AS calls
FROM tool_calls
GROUP BY bucket, source, outcome, mcp_server_id, tool_name
