-- Tool calls per hour by every filter dimension, outcome and policy (MCP Usage, Security).
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       source, user_id, agent_id, agent_instance_id, mcp_server_id, tool_name, outcome,
       policy_id, policy_name, policy_description,
       count(*)           AS calls,
       sum(duration_ms)   AS duration_ms_sum,
       count(duration_ms) AS duration_count
FROM tool_calls
GROUP BY bucket, source, user_id, agent_id, agent_instance_id, mcp_server_id, tool_name, outcome,
         policy_id, policy_name, policy_description
