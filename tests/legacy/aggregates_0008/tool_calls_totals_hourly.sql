-- The smallest rollup of tool_calls: calls per hour by source and outcome, for the totals and
-- time series with no filter on who or what. The MCP server is kept only for calls not reported
-- by the gateway, which is all that the "gateway first" de-duplication needs about them.
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       source, outcome,
       CASE WHEN source = 'gateway' THEN NULL ELSE mcp_server_id END AS mcp_server_id,
       count(*) AS calls
FROM tool_calls
GROUP BY bucket, source, outcome, CASE WHEN source = 'gateway' THEN NULL ELSE mcp_server_id END
