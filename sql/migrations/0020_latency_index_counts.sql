-- The per-model millisecond rollups' index (sql/rollups.py: llm_latency_by_model_* and
-- llm_ttft_by_model_* on provider, model, milliseconds and bucket) holds the request count too,
-- so that a percentile's probe of one band reads the index alone, not a page of the table per
-- row. The index of the shape before is dropped here; `migrate` then creates it as declared,
-- under the same name (sql/aggregates.py, _declared_indexes). On TimescaleDB it lives on the
-- continuous aggregate's materialisation, in TimescaleDB's own schema; on plain PostgreSQL on
-- the rollup's table of buckets (`_mat`). A database without them (new) has nothing to drop.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT n.nspname, c.relname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'i'
          AND c.relname ~ '^llm_(latency|ttft)_by_model_(minutely|hourly|daily)(_mat)?_value$'
    LOOP
        EXECUTE format('DROP INDEX %I.%I', r.nspname, r.relname);
    END LOOP;
END
$$;
