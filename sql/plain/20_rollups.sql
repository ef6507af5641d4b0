-- Plain PostgreSQL: the aggregates as TimescaleDB's real-time continuous aggregates work, so
-- dashboards read rollups, not raw rows. Each aggregate `name` (one SELECT in aggregates/) has:
--   * `name_mat`, a table of its buckets before its watermark, filled by aa_refresh_rollups();
--   * `name`, the view the queries read: those buckets, and the raw rows from the watermark on
--     grouped live (migrate.py creates both from the aggregate's SELECT);
--   * a row in aa_rollups: its raw table, bucket width, the SELECT restricted to a time range,
--     and the watermark.
-- Rows written below a watermark (late data, a retry, `counted` turned off) are recorded in
-- aa_invalidations by statement triggers on the raw tables; the next refresh re-materialises
-- their buckets, as TimescaleDB's invalidation log does. Deleting raw rows (retention) records
-- nothing: the rollups keep their buckets, as continuous aggregates do.

CREATE TABLE IF NOT EXISTS aa_rollups (
    name      text PRIMARY KEY,                       -- the view the queries read
    raw       text NOT NULL,                          -- the raw table it groups
    width     interval NOT NULL,                      -- its bucket width
    fill      text NOT NULL,                          -- its SELECT over raw rows with $1 <= time < $2
    watermark timestamptz NOT NULL DEFAULT '-infinity' -- buckets before it are in name_mat
);

CREATE TABLE IF NOT EXISTS aa_invalidations (
    raw text NOT NULL,
    lo  timestamptz NOT NULL,
    hi  timestamptz NOT NULL
);

CREATE OR REPLACE FUNCTION aa_watermark(rollup text)
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT coalesce((SELECT watermark FROM aa_rollups WHERE name = rollup), '-infinity') $$;

-- One row per statement (a COPY or INSERT of a whole batch, an UPDATE of `counted`): the time
-- range it wrote. The transition tables cost nothing measurable beside the COPY itself.
CREATE OR REPLACE FUNCTION aa_log_invalidation()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO aa_invalidations (raw, lo, hi)
        SELECT TG_TABLE_NAME, min(time), max(time)
        FROM (SELECT time FROM old_rows UNION ALL SELECT time FROM new_rows) t HAVING count(*) > 0;
    ELSE
        INSERT INTO aa_invalidations (raw, lo, hi)
        SELECT TG_TABLE_NAME, min(time), max(time) FROM new_rows HAVING count(*) > 0;
    END IF;
    RETURN NULL;
END
$$;

DO $$
DECLARE
    raw text;
BEGIN
    FOREACH raw IN ARRAY ARRAY['tool_calls', 'llm_requests', 'llm_errors', 'metric_points'] LOOP
        EXECUTE format('CREATE OR REPLACE TRIGGER aa_invalidate_insert AFTER INSERT ON %I'
                       ' REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION aa_log_invalidation()', raw);
        EXECUTE format('CREATE OR REPLACE TRIGGER aa_invalidate_update AFTER UPDATE ON %I'
                       ' REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION aa_log_invalidation()', raw);
    END LOOP;
END
$$;

-- Materialise: first the invalidated buckets below each watermark (merged), then the buckets
-- from the watermark up to `up_to` (by default an hour ago, as TimescaleDB's refresh policy
-- leaves the last hour to real-time aggregation), never past the bucket of the latest raw row:
-- an empty table keeps everything live, so history loaded into a new database is seen at once.
-- Returns how many ranges were (re)written. One refresh at a time; invalidations recorded
-- meanwhile wait for the next one.
CREATE OR REPLACE FUNCTION aa_refresh_rollups(up_to timestamptz DEFAULT now() - INTERVAL '1 hour')
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    consumed aa_invalidations[];
    r        aa_rollups;
    rng      tstzrange;
    mat      text;
    latest   timestamptz;
    target   timestamptz;
    done     integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(1096835517);
    WITH d AS (DELETE FROM aa_invalidations RETURNING *)
    SELECT array_agg(ROW(d.raw, d.lo, d.hi)::aa_invalidations) INTO consumed FROM d;
    FOR r IN SELECT * FROM aa_rollups ORDER BY name LOOP
        mat := r.name || '_mat';
        FOR rng IN
            SELECT unnest(range_agg(tstzrange(time_bucket(r.width, c.lo),
                                              least(time_bucket(r.width, c.hi) + r.width, r.watermark))))
            FROM unnest(consumed) c WHERE c.raw = r.raw AND c.lo < r.watermark
        LOOP
            EXECUTE format('DELETE FROM %I WHERE bucket >= $1 AND bucket < $2', mat) USING lower(rng), upper(rng);
            EXECUTE format('INSERT INTO %I %s', mat, r.fill) USING lower(rng), upper(rng);
            done := done + 1;
        END LOOP;
        EXECUTE format('SELECT max(time) FROM %I', r.raw) INTO latest;
        target := CASE WHEN latest IS NOT NULL THEN least(time_bucket(r.width, up_to), time_bucket(r.width, latest)) END;
        IF target > r.watermark THEN
            EXECUTE format('DELETE FROM %I WHERE bucket >= $1 AND bucket < $2', mat) USING r.watermark, target;
            EXECUTE format('INSERT INTO %I %s', mat, r.fill) USING r.watermark, target;
            UPDATE aa_rollups SET watermark = target WHERE name = r.name;
            done := done + 1;
        END IF;
    END LOOP;
    RETURN done;
END
$$;
