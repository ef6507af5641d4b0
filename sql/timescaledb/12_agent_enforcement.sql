-- The agents' enforcement facts (migration 0012) as a hypertable of one-day chunks, like the other
-- raw facts. (The upgrade tests apply these files to schemas from before migration 0012.)
DO $$
BEGIN
    IF to_regclass('agent_enforcement') IS NOT NULL THEN
        PERFORM create_hypertable('agent_enforcement', by_range('time', INTERVAL '1 day'), if_not_exists => TRUE,
                                  migrate_data => TRUE);
    END IF;
END
$$;
