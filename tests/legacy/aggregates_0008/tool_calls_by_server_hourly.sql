-- The smallest tool-call rollup: calls per hour, source, outcome and MCP server. Enough for the
-- executions and blocked-calls counts and their time series (with gateway de-duplication).
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       source, outcome, mcp_server_id,
       count(*) AS calls
FROM tool_calls
GROUP BY bucket, source, outcome, mcp_server_id
