-- Each session's totals over its whole life, kept at ingest in the batch's transaction.
--
-- The Sessions table and Session metrics rank and summarise every session in the range: from
-- the rollups that means grouping every session's hours and days. A session that lies wholly
-- inside the range contributes its whole life, which is this row; only the few sessions
-- crossing an edge of the range are grouped from the rollups (datasource/engine.py).
--
-- Tokens and cost are what counts, as on the rows (llm_requests.counted): a session's events
-- until it sends metric points, then its metric points only (the receiver resets them when the
-- first point arrives). Requests are its events, points its metric points. Also: the greatest
-- user and agent the events and the points name, the models and the users (NULL included) any
-- row names, the first and last time.
ALTER TABLE sessions
    ADD COLUMN requests           bigint NOT NULL DEFAULT 0,
    ADD COLUMN points             bigint NOT NULL DEFAULT 0,
    ADD COLUMN tokens             double precision NOT NULL DEFAULT 0,
    ADD COLUMN input_tokens       double precision NOT NULL DEFAULT 0,
    ADD COLUMN output_tokens      double precision NOT NULL DEFAULT 0,
    ADD COLUMN cache_read_tokens  double precision NOT NULL DEFAULT 0,
    ADD COLUMN cache_write_tokens double precision NOT NULL DEFAULT 0,
    ADD COLUMN estimated_cost_usd numeric,
    ADD COLUMN reported_cost_usd  numeric,
    ADD COLUMN ev_user_id         text,
    ADD COLUMN ev_agent_id        text,
    ADD COLUMN mp_user_id         text,
    ADD COLUMN mp_agent_id        text,
    ADD COLUMN models             text[] NOT NULL DEFAULT '{}',
    ADD COLUMN user_ids           text[] NOT NULL DEFAULT '{}',
    ADD COLUMN first_time         timestamptz,
    ADD COLUMN last_time          timestamptz;

-- Sessions wholly inside a range (by first sight), and those crossing one of its edges.
CREATE INDEX sessions_first_seen_idx ON sessions (first_seen);
CREATE INDEX sessions_span_idx ON sessions USING gist (tstzrange(first_seen, last_seen, '[]'));
-- One user's sessions (a user or group filter), and those whose rows name several users (a user
-- filter cannot take them whole).
CREATE INDEX sessions_user_idx ON sessions ((user_ids[1]), first_seen);
CREATE INDEX sessions_many_users_idx ON sessions (first_seen) WHERE cardinality(user_ids) > 1;
-- The sessions table's orders (a page of the kept sessions without sorting them all).
CREATE INDEX sessions_by_estimated_cost_idx ON sessions ((estimated_cost_usd::float8) DESC NULLS LAST, id COLLATE "C");
CREATE INDEX sessions_by_reported_cost_idx ON sessions ((reported_cost_usd::float8) DESC NULLS LAST, id COLLATE "C");
CREATE INDEX sessions_by_tokens_idx ON sessions (tokens DESC, id COLLATE "C");
CREATE INDEX sessions_by_recency_idx ON sessions (last_time DESC, id COLLATE "C");

-- Recompute the totals of the given sessions (all when NULL) from the raw rows: the backfill
-- below, plain PostgreSQL's retention, and data loaded into the raw tables by COPY. Sessions the
-- table lacks are added; first_seen and last_seen only ever widen to cover the rows.
CREATE OR REPLACE FUNCTION aa_rebuild_session_totals(ids text[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO sessions (id, agent_id, user_id, first_seen, last_seen)
    SELECT session_id, max(agent_id), max(user_id), min(time), max(time)
    FROM (SELECT session_id, agent_id, user_id, time FROM llm_requests
          WHERE session_id IS NOT NULL AND (ids IS NULL OR session_id = ANY(ids))
          UNION ALL
          SELECT session_id, agent_id, user_id, time FROM metric_points
          WHERE session_id IS NOT NULL AND (ids IS NULL OR session_id = ANY(ids))) f
    GROUP BY session_id
    ORDER BY session_id
    ON CONFLICT (id) DO NOTHING;

    WITH ev AS (
        SELECT session_id, count(*) AS requests,
               sum(input_tokens) FILTER (WHERE counted) AS input_tokens,
               sum(output_tokens) FILTER (WHERE counted) AS output_tokens,
               sum(cache_read_tokens) FILTER (WHERE counted) AS cache_read_tokens,
               sum(cache_write_tokens) FILTER (WHERE counted) AS cache_write_tokens,
               sum(estimated_cost_usd) FILTER (WHERE counted) AS estimated_cost_usd,
               sum(reported_cost_usd) FILTER (WHERE counted) AS reported_cost_usd,
               max(user_id) AS user_id, max(agent_id) AS agent_id, array_agg(DISTINCT model) AS models,
               array_agg(DISTINCT user_id) AS user_ids, min(time) AS first_time, max(time) AS last_time
        FROM llm_requests
        WHERE session_id IS NOT NULL AND (ids IS NULL OR session_id = ANY(ids))
        GROUP BY session_id),
    mp AS (
        SELECT session_id, count(*) AS points,
               sum(value) FILTER (WHERE metric = 'tokens') AS tokens,
               sum(value) FILTER (WHERE metric = 'tokens' AND token_type = 'input') AS input_tokens,
               sum(value) FILTER (WHERE metric = 'tokens' AND token_type = 'output') AS output_tokens,
               sum(value) FILTER (WHERE metric = 'tokens' AND token_type = 'cache_read') AS cache_read_tokens,
               sum(value) FILTER (WHERE metric = 'tokens' AND token_type = 'cache_write') AS cache_write_tokens,
               sum(estimated_cost_usd) FILTER (WHERE metric = 'tokens') AS estimated_cost_usd,
               sum(value::numeric) FILTER (WHERE metric = 'cost') AS reported_cost_usd,
               max(user_id) AS user_id, max(agent_id) AS agent_id, array_agg(DISTINCT model) AS models,
               array_agg(DISTINCT user_id) AS user_ids, min(coalesce(start_time, time)) AS first_time,
               min(time) AS first_row, max(time) AS last_time
        FROM metric_points
        WHERE session_id IS NOT NULL AND (ids IS NULL OR session_id = ANY(ids))
        GROUP BY session_id)
    UPDATE sessions s SET
        requests = coalesce(ev.requests, 0), points = coalesce(mp.points, 0),
        tokens = coalesce(ev.input_tokens + ev.output_tokens + ev.cache_read_tokens + ev.cache_write_tokens, 0)
                 + coalesce(mp.tokens, 0),
        input_tokens = coalesce(ev.input_tokens, 0) + coalesce(mp.input_tokens, 0),
        output_tokens = coalesce(ev.output_tokens, 0) + coalesce(mp.output_tokens, 0),
        cache_read_tokens = coalesce(ev.cache_read_tokens, 0) + coalesce(mp.cache_read_tokens, 0),
        cache_write_tokens = coalesce(ev.cache_write_tokens, 0) + coalesce(mp.cache_write_tokens, 0),
        estimated_cost_usd = coalesce(ev.estimated_cost_usd + mp.estimated_cost_usd, ev.estimated_cost_usd,
                                      mp.estimated_cost_usd),
        reported_cost_usd = coalesce(ev.reported_cost_usd + mp.reported_cost_usd, ev.reported_cost_usd,
                                     mp.reported_cost_usd),
        ev_user_id = ev.user_id, ev_agent_id = ev.agent_id, mp_user_id = mp.user_id, mp_agent_id = mp.agent_id,
        models = ARRAY(SELECT DISTINCT m FROM unnest(ev.models || mp.models) m ORDER BY 1),
        user_ids = ARRAY(SELECT DISTINCT u FROM unnest(ev.user_ids || mp.user_ids) u ORDER BY 1),
        first_time = least(ev.first_time, mp.first_time), last_time = greatest(ev.last_time, mp.last_time),
        first_seen = least(s.first_seen, ev.first_time, mp.first_row),
        last_seen = greatest(s.last_seen, ev.last_time, mp.last_time)
    FROM (SELECT id FROM sessions WHERE ids IS NULL OR id = ANY(ids)) k
    LEFT JOIN ev ON ev.session_id = k.id
    LEFT JOIN mp ON mp.session_id = k.id
    WHERE s.id = k.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

SELECT aa_rebuild_session_totals();
