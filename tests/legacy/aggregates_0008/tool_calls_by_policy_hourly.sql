-- Blocked calls per hour and policy as recorded: the top blocking policies when no filter
-- narrows the actors or tools.
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       outcome, policy_id, policy_name, policy_description,
       count(*) AS calls
FROM tool_calls
WHERE outcome = 'blocked'
GROUP BY bucket, outcome, policy_id, policy_name, policy_description
