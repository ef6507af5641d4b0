-- Blocked calls only (a few percent of all calls), with every filter column and the policy as
-- recorded: what the Security tab reads, filtered or not.
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       source, user_id, agent_id, agent_instance_id, mcp_server_id, tool_name, outcome,
       policy_id, policy_name, policy_description,
       count(*) AS calls
FROM tool_calls
WHERE outcome = 'blocked'
GROUP BY bucket, source, user_id, agent_id, agent_instance_id, mcp_server_id, tool_name, outcome,
         policy_id, policy_name, policy_description
