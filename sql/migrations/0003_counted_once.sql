-- Count every LLM request once, decided at ingest rather than at query time.
--
-- Claude Code reports the same requests twice: as events (api_request) and as metric points
-- (token.usage, cost.usage). A session that has sent metric points counts from them; its
-- events still give requests and latency but not tokens or cost. Recording that choice on the
-- rows (llm_requests.counted) makes LLM Usage additive, so it can be read from rollups that do
-- not group by session.
ALTER TABLE sessions ADD COLUMN has_metrics boolean NOT NULL DEFAULT false;
ALTER TABLE llm_requests ADD COLUMN counted boolean NOT NULL DEFAULT true;

-- Sessions that sent metric points before this migration; the events table may hold sessions
-- the sessions table never saw (data loaded by other means), so both are brought in line.
INSERT INTO sessions (id, agent_id, user_id, first_seen, last_seen, has_metrics)
SELECT session_id, max(agent_id), max(user_id), min(coalesce(start_time, time)), max(time), true
FROM metric_points WHERE session_id IS NOT NULL GROUP BY session_id
ON CONFLICT (id) DO UPDATE SET has_metrics = true;

UPDATE llm_requests r SET counted = false
FROM sessions s
WHERE s.has_metrics AND r.session_id = s.id;

-- The aggregates over llm_requests gain the `counted` column: migrate rebuilds an aggregate
-- whose columns differ from its definition's, after the migrations.
