-- Plain PostgreSQL: the aggregates as TimescaleDB's real-time continuous aggregates work, so
-- dashboards read rollups, not raw rows. Each aggregate `name` (a SELECT declared in rollups/) has:
--   * `name_mat`, a table of its buckets before its watermark, filled by aa_refresh_rollups();
--   * `name`, the view the queries read: those buckets, and the raw rows from the watermark on
--     grouped live (aggregates.py creates both from the aggregate's SELECT);
--   * a row in aa_rollups: its raw table, bucket width, the SELECT restricted to a time range,
--     and the watermark.
-- Rows written or deleted below a watermark (late data, a retry, `counted` turned off, a cleanup)
-- are recorded in aa_invalidations by statement triggers on the raw tables; the next refresh
-- re-materialises their buckets, as TimescaleDB's invalidation log does. TRUNCATE empties the
-- rollups of the table. Retention's deletes record nothing: the rollups keep those buckets, as
-- continuous aggregates outlive dropped chunks, and no refresh reaches back past what retention
-- deleted (aa_raw_kept), where it would recount a bucket from what remains.

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

CREATE TABLE IF NOT EXISTS aa_raw_kept (
    raw   text PRIMARY KEY,
    since timestamptz NOT NULL  -- retention deleted this table's raw rows before this time
);

-- PARALLEL RESTRICTED: the views' parts that test it then run in the leader. Parallel plans of
-- these small reads cost more in starting workers (a few ms each, even for a part the query
-- skips) than they could save: 21 -> 6.5 ms for a blocked-calls stat over a month.
CREATE OR REPLACE FUNCTION aa_watermark(rollup text)
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL RESTRICTED
AS $$ SELECT coalesce((SELECT watermark FROM aa_rollups WHERE name = rollup), '-infinity') $$;

-- One row per statement (a COPY or INSERT of a whole batch, an UPDATE of `counted`, a DELETE):
-- the time range it changed. The transition tables cost nothing measurable beside the COPY.
CREATE OR REPLACE FUNCTION aa_log_invalidation()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO aa_invalidations (raw, lo, hi)
        SELECT TG_TABLE_NAME, min(time), max(time) FROM new_rows WHERE isfinite(time) HAVING count(*) > 0;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO aa_invalidations (raw, lo, hi)
        SELECT TG_TABLE_NAME, min(time), max(time)
        FROM (SELECT time FROM old_rows UNION ALL SELECT time FROM new_rows) t WHERE isfinite(time) HAVING count(*) > 0;
    ELSIF coalesce(current_setting('aa.retention', true), '') <> 'on' THEN  -- a DELETE, not retention's
        INSERT INTO aa_invalidations (raw, lo, hi)
        SELECT TG_TABLE_NAME, min(time), max(time) FROM old_rows WHERE isfinite(time) HAVING count(*) > 0;
    END IF;
    RETURN NULL;
END
$$;

-- TRUNCATE of a raw table: its rollups start over, empty and live.
CREATE OR REPLACE FUNCTION aa_forget_rollups()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    rollup text;
BEGIN
    FOR rollup IN SELECT name FROM aa_rollups WHERE raw = TG_TABLE_NAME LOOP
        -- (DELETE: a TRUNCATE of the raw table may name the rollup's table too.)
        EXECUTE format('DELETE FROM %I', rollup || '_mat');
    END LOOP;
    UPDATE aa_rollups SET watermark = '-infinity' WHERE raw = TG_TABLE_NAME;
    DELETE FROM aa_invalidations WHERE raw = TG_TABLE_NAME;
    DELETE FROM aa_raw_kept WHERE raw = TG_TABLE_NAME;
    RETURN NULL;
END
$$;

-- A raw table's statement triggers: what records its invalidations and empties its rollups on
-- TRUNCATE. aggregates.py applies it to the raw table of every rollup (declared in rollups/).
CREATE OR REPLACE FUNCTION aa_watch_raw(raw text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    EXECUTE format('CREATE OR REPLACE TRIGGER aa_invalidate_insert AFTER INSERT ON %I'
                   ' REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION aa_log_invalidation()', raw);
    EXECUTE format('CREATE OR REPLACE TRIGGER aa_invalidate_update AFTER UPDATE ON %I'
                   ' REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION aa_log_invalidation()', raw);
    EXECUTE format('CREATE OR REPLACE TRIGGER aa_invalidate_delete AFTER DELETE ON %I'
                   ' REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION aa_log_invalidation()', raw);
    EXECUTE format('CREATE OR REPLACE TRIGGER aa_invalidate_truncate AFTER TRUNCATE ON %I'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION aa_forget_rollups()', raw);
END
$$;

-- Materialise: first the invalidated buckets below each watermark (merged; none that retention
-- cut into), then the buckets from the watermark up to `up_to` (by default now: every bucket
-- that has ended, so that the raw rows grouped live are those of the current bucket alone, an
-- hour of them at most, however fast they arrive; NULL: all there is), never past the bucket of
-- the latest raw row: an empty table keeps everything live, so
-- history loaded into a new database is seen at once. Returns how many ranges were (re)written.
-- One refresh at a time; invalidations recorded meanwhile wait for the next one.
-- In UTC: a bucket plus its width must be the next bucket, and '1 day' added in a zone with
-- daylight saving is 23 or 25 hours on the days it changes.
CREATE OR REPLACE FUNCTION aa_refresh_rollups(up_to timestamptz DEFAULT now())
RETURNS integer
LANGUAGE plpgsql
SET TimeZone = 'UTC'
AS $$
DECLARE
    consumed aa_invalidations[];
    r        aa_rollups;
    rng      tstzrange;
    mat      text;
    latest   timestamptz;
    kept     timestamptz;
    target   timestamptz;
    done     integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(1096835517);
    WITH d AS (DELETE FROM aa_invalidations RETURNING *)
    SELECT array_agg(ROW(d.raw, d.lo, d.hi)::aa_invalidations) INTO consumed FROM d;
    FOR r IN SELECT * FROM aa_rollups ORDER BY name LOOP
        mat := r.name || '_mat';
        -- The first bucket wholly after what retention deleted.
        SELECT CASE WHEN time_bucket(r.width, since) = since THEN since ELSE time_bucket(r.width, since) + r.width END
        INTO kept FROM aa_raw_kept WHERE raw = r.raw;
        FOR rng IN
            SELECT unnest(range_agg(tstzrange(b.lo, b.hi)))
            FROM (SELECT greatest(time_bucket(r.width, c.lo), kept) AS lo,
                         least(time_bucket(r.width, c.hi) + r.width, r.watermark) AS hi
                  FROM unnest(consumed) c WHERE c.raw = r.raw) b
            WHERE b.lo < b.hi
        LOOP
            EXECUTE format('DELETE FROM %I WHERE bucket >= $1 AND bucket < $2', mat) USING lower(rng), upper(rng);
            EXECUTE format('INSERT INTO %I %s', mat, r.fill) USING lower(rng), upper(rng);
            done := done + 1;
        END LOOP;
        EXECUTE format('SELECT max(time) FROM %I WHERE isfinite(time)', r.raw) INTO latest;
        -- (least() ignores NULL: up_to NULL materialises everything, no rows nothing.)
        target := CASE WHEN latest IS NOT NULL THEN least(time_bucket(r.width, up_to), time_bucket(r.width, latest) + r.width) END;
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
