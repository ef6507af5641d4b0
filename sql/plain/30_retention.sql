-- Plain PostgreSQL has no background jobs: the service calls this periodically.
-- The hourly and daily rollups (20_rollups.sql) keep their buckets, as continuous aggregates do;
-- the per-minute ones (the edges of windows) go with the raw rows, as on TimescaleDB.
CREATE OR REPLACE FUNCTION aa_apply_retention(retention_days integer)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    cutoff    timestamptz;
    total     bigint := 0;
    n         bigint;
    rollup    text;
    raw_table text;
    width     interval;
BEGIN
    IF retention_days IS NULL OR retention_days <= 0 THEN
        RETURN 0;
    END IF;
    cutoff := now() - make_interval(days => retention_days);
    -- Not an invalidation (20_rollups.sql): the rollups keep these buckets, and refreshes stop there.
    PERFORM set_config('aa.retention', 'on', true);
    -- The raw tables: those the rollups group (aa_rollups, from their declarations in rollups/).
    FOR raw_table IN SELECT DISTINCT aa_rollups.raw FROM aa_rollups ORDER BY 1 LOOP
        INSERT INTO aa_raw_kept (raw, since) VALUES (raw_table, cutoff)
        ON CONFLICT (raw) DO UPDATE SET since = greatest(aa_raw_kept.since, excluded.since);
        EXECUTE format('DELETE FROM %I WHERE time < $1', raw_table) USING cutoff;
        GET DIAGNOSTICS n = ROW_COUNT;
        total := total + n;
    END LOOP;
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
