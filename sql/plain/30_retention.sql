-- Plain PostgreSQL has no background jobs: the service calls this periodically.
-- The hourly and daily rollups (20_rollups.sql) keep their buckets, as continuous aggregates do;
-- the per-minute ones (the edges of windows) go with the raw rows, as on TimescaleDB.
CREATE OR REPLACE FUNCTION aa_apply_retention(retention_days integer)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    cutoff  timestamptz;
    total   bigint := 0;
    n       bigint;
    rollup  text;
    width   interval;
BEGIN
    IF retention_days IS NULL OR retention_days <= 0 THEN
        RETURN 0;
    END IF;
    cutoff := now() - make_interval(days => retention_days);
    -- Not an invalidation (20_rollups.sql): the rollups keep these buckets, and refreshes stop there.
    PERFORM set_config('aa.retention', 'on', true);
    INSERT INTO aa_raw_kept (raw, since)
    SELECT t, cutoff FROM unnest(ARRAY['tool_calls', 'llm_requests', 'llm_errors', 'metric_points', 'agent_enforcement',
                                       'productivity_points']) t
    WHERE to_regclass(t) IS NOT NULL
    ON CONFLICT (raw) DO UPDATE SET since = greatest(aa_raw_kept.since, excluded.since);
    DELETE FROM tool_calls WHERE time < cutoff;     GET DIAGNOSTICS n = ROW_COUNT; total := total + n;
    DELETE FROM llm_requests WHERE time < cutoff;   GET DIAGNOSTICS n = ROW_COUNT; total := total + n;
    DELETE FROM llm_errors WHERE time < cutoff;     GET DIAGNOSTICS n = ROW_COUNT; total := total + n;
    DELETE FROM metric_points WHERE time < cutoff;  GET DIAGNOSTICS n = ROW_COUNT; total := total + n;
    -- (Absent in the schemas from before migration 0012 that the upgrade tests make.)
    IF to_regclass('agent_enforcement') IS NOT NULL THEN
        DELETE FROM agent_enforcement WHERE time < cutoff;  GET DIAGNOSTICS n = ROW_COUNT; total := total + n;
    END IF;
    -- (Absent in the schemas from before migration 0015 that the upgrade tests make.)
    IF to_regclass('productivity_points') IS NOT NULL THEN
        DELETE FROM productivity_points WHERE time < cutoff;  GET DIAGNOSTICS n = ROW_COUNT; total := total + n;
    END IF;
    -- (Not raw rows: not in the total.)
    -- (Whole buckets before the cutoff's: the refresh does not reach back to recount the rest.)
    FOR rollup, width IN SELECT name, aa_rollups.width FROM aa_rollups WHERE aa_rollups.width < INTERVAL '1 hour' LOOP
        EXECUTE format('DELETE FROM %I WHERE bucket < $1', rollup || '_mat') USING time_bucket(width, cutoff);
    END LOOP;
    -- The receiver's counts (migration 0010) go with the raw facts they count: hours wholly before
    -- the cutoff, as TimescaleDB drops only whole chunks. Not raw rows: not in the total.
    -- (Absent in the schemas from before migration 0010 that the upgrade tests make.)
    IF to_regclass('ingest_stats') IS NOT NULL THEN
        DELETE FROM ingest_stats WHERE bucket < date_trunc('hour', cutoff);
    END IF;
    -- Session totals (migration 0005) must match the rows that remain: sessions wholly before the
    -- cutoff go, those crossing it are recounted.
    DELETE FROM sessions WHERE last_seen < cutoff;
    PERFORM aa_rebuild_session_totals(ARRAY(SELECT id FROM sessions WHERE first_seen < cutoff));
    PERFORM set_config('aa.retention', 'off', true);
    RETURN total;
END
$$;
