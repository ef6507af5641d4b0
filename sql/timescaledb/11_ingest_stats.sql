-- The receiver's hourly counts (migration 0010) as a hypertable of one-day chunks, as the raw
-- facts they count, so that the same retention policy drops them (30_policies.sql); existing
-- rows are moved in (migrate_data). (The upgrade tests apply these files to schemas from before
-- migration 0010, without the table.)
DO $$
BEGIN
    IF to_regclass('ingest_stats') IS NOT NULL THEN
        PERFORM create_hypertable('ingest_stats', by_range('bucket', INTERVAL '1 day'), if_not_exists => TRUE,
                                  migrate_data => TRUE);
    END IF;
END
$$;
