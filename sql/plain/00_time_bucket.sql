-- Plain PostgreSQL: TimescaleDB's time_bucket(interval, timestamptz) for the aggregate
-- definitions, with its default origin (Monday 2000-01-03 UTC), so both backends bucket alike.
CREATE OR REPLACE FUNCTION time_bucket(bucket_width interval, ts timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
AS $$ SELECT date_bin(bucket_width, ts, TIMESTAMPTZ '2000-01-03 00:00:00+00') $$;
