-- session_metrics_hourly becomes one row per session, model and hour with the token types and
-- cost as columns (five times fewer rows for the sessions table to group). A continuous
-- aggregate cannot be altered: drop it here; the idempotent step creates it from aggregates/.
DO $$
BEGIN
    IF to_regclass('session_metrics_hourly') IS NULL THEN
        RETURN;
    END IF;
    -- Nested, not AND: plain PostgreSQL has no timescaledb_information schema to plan against.
    IF to_regclass('timescaledb_information.continuous_aggregates') IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates
                   WHERE view_name = 'session_metrics_hourly' AND view_schema = current_schema()) THEN
            DROP MATERIALIZED VIEW session_metrics_hourly;
            RETURN;
        END IF;
    END IF;
    DROP VIEW session_metrics_hourly;
END
$$;
