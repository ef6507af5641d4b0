-- Rollup of tool_calls_hourly without the tool: who called (user, agent, agent instance).
-- The MCP server is kept only for calls not reported by the gateway, which is all that the
-- "gateway first" de-duplication of executions needs to know about them.
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       source, outcome, user_id, agent_id, agent_instance_id,
       CASE WHEN source = 'gateway' THEN NULL ELSE mcp_server_id END AS mcp_server_id,
       count(*) AS calls
FROM tool_calls
GROUP BY bucket, source, outcome, user_id, agent_id, agent_instance_id,
         CASE WHEN source = 'gateway' THEN NULL ELSE mcp_server_id END
