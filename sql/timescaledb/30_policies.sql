-- Refresh, compression and retention policies, re-applied with the current settings on every
-- migrate. Refresh windows reach back as far as raw rows are kept (all time without retention),
-- so that late data anywhere is picked up: a refresh only rematerialises invalidated buckets, so
-- this stays cheap. They end a minute ago: a refresh materialises only whole buckets, so every
-- hour is materialised within two minutes of its end (the queries read the hours ended less
-- than five minutes ago by minute: datasource/planner.py's SETTLE). The per-minute twins end
-- now, run 2 seconds past each minute: each minute is materialised as soon as it ends, so
-- real-time aggregation groups the raw rows of the current minute (and, in its first seconds,
-- of the one before). Never further back:
-- refreshing a range whose raw chunks retention dropped would empty the aggregates' buckets
-- there, and the hourly and daily ones are meant to outlive the raw rows. The per-minute ones
-- go with the raw rows (their retention policy): they serve the edges of windows, the raw rows'
-- partial hours.
CREATE OR REPLACE FUNCTION aa_apply_policies(retention_days integer, compress_after_days integer)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    agg      text;
    daily    boolean;
    minutely boolean;
    raw      text;
BEGIN
    FOR agg, daily, minutely IN SELECT format('%I.%I', view_schema, view_name), view_name LIKE '%\_daily',
                                       view_name LIKE '%\_minutely'
                                FROM timescaledb_information.continuous_aggregates LOOP
        PERFORM remove_continuous_aggregate_policy(agg::regclass, if_exists => TRUE);
        PERFORM remove_retention_policy(agg::regclass, if_exists => TRUE);
        -- (A window must span two buckets: a daily aggregate's reaches back 3 days at least, so
        -- with AA_RETENTION_DAYS below 3 its days keep no more than the raw rows do.)
        PERFORM add_continuous_aggregate_policy(agg::regclass,
            start_offset => CASE WHEN retention_days > 0 THEN
                greatest(make_interval(days => retention_days), CASE WHEN daily THEN INTERVAL '3 days' END) END,
            end_offset => CASE WHEN minutely THEN INTERVAL '0 seconds' ELSE INTERVAL '1 minute' END,
            schedule_interval => INTERVAL '1 minute',
            -- (Per-minute ones 2 seconds after each minute ends, as the plain rollup job.)
            initial_start => CASE WHEN minutely THEN date_trunc('minute', now()) + INTERVAL '62 seconds' END);
        IF minutely AND retention_days > 0 THEN
            PERFORM add_retention_policy(agg::regclass, drop_after => make_interval(days => retention_days));
        END IF;
    END LOOP;

    -- The hypertables (10_hypertables.sql: the raw facts, and the receiver's counts, ingest_stats,
    -- kept as long as the facts they count). The receiver's counts are not compressed: they are
    -- few, and the current hour's rows are updated in place.
    FOR raw IN SELECT format('%I.%I', hypertable_schema, hypertable_name) FROM timescaledb_information.hypertables
               WHERE hypertable_schema = current_schema() LOOP
        PERFORM remove_retention_policy(raw::regclass, if_exists => TRUE);
        IF retention_days > 0 THEN
            PERFORM add_retention_policy(raw::regclass, drop_after => make_interval(days => retention_days));
        END IF;
    END LOOP;

    FOR raw IN SELECT format('%I.%I', hypertable_schema, hypertable_name) FROM timescaledb_information.hypertables
               WHERE hypertable_schema = current_schema() AND hypertable_name <> 'ingest_stats' LOOP
        PERFORM remove_compression_policy(raw::regclass, if_exists => TRUE);
        IF compress_after_days > 0 THEN
            EXECUTE format('ALTER TABLE %s SET (timescaledb.compress, timescaledb.compress_orderby = %L)',
                           raw, 'time DESC');
            PERFORM add_compression_policy(raw::regclass, compress_after => make_interval(days => compress_after_days));
        END IF;
    END LOOP;
END
$$;
