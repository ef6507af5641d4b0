-- The raw facts as hypertables (one row each: table, time column, chunk width); existing rows are
-- moved in (migrate_data). A table missing here is one a later migration creates: the upgrade
-- tests apply this file to schemas from before it. The receiver's hourly counts (ingest_stats)
-- are chunked as the facts they count, so that the same retention policy drops them
-- (30_policies.sql).
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('tool_calls',        'time',   INTERVAL '1 day'),
        ('llm_requests',      'time',   INTERVAL '1 day'),
        ('llm_errors',        'time',   INTERVAL '7 days'),
        ('metric_points',     'time',   INTERVAL '1 day'),
        ('ingest_stats',      'bucket', INTERVAL '1 day'),   -- migration 0010
        ('agent_enforcement', 'time',   INTERVAL '1 day'),   -- migration 0012
        -- migration 0015: a few points per session and minute
        ('productivity_points', 'time', INTERVAL '7 days')
    ) AS raw (name, time_column, chunk) WHERE to_regclass(raw.name) IS NOT NULL LOOP
        PERFORM create_hypertable(t.name::regclass, by_range(t.time_column::name, t.chunk), if_not_exists => TRUE,
                                  migrate_data => TRUE);
    END LOOP;
END
$$;
