-- Daily (UTC) twin of tool_calls_by_actor_hourly (see tool_calls_by_tool_daily.sql).
SELECT time_bucket(INTERVAL '1 day', time) AS bucket,
       source, outcome, user_id, agent_id, agent_instance_id,
       CASE WHEN source = 'gateway' THEN NULL ELSE mcp_server_id END AS mcp_server_id,
       count(*) AS calls
FROM tool_calls
GROUP BY bucket, source, outcome, user_id, agent_id, agent_instance_id,
         CASE WHEN source = 'gateway' THEN NULL ELSE mcp_server_id END
