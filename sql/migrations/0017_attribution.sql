-- Team attribution: the resource attributes agents' processes are started with
-- (OTEL_RESOURCE_ATTRIBUTES: department, team.id, cost_center; agent_analytics/config.py's
-- ATTRIBUTION, AA_ATTRIBUTION) become columns of the facts that LLM Usage and MCP Usage count,
-- so that the rollups can group and the filters narrow by them. NULL: the process did not say
-- (shown as unattributed, never dropped).
ALTER TABLE llm_requests
    ADD COLUMN department  text,
    ADD COLUMN team        text,
    ADD COLUMN cost_center text;
ALTER TABLE tool_calls
    ADD COLUMN department  text,
    ADD COLUMN team        text,
    ADD COLUMN cost_center text;
-- API errors: LLM Usage's error rate is read against the requests under the same filters.
ALTER TABLE llm_errors
    ADD COLUMN department  text,
    ADD COLUMN team        text,
    ADD COLUMN cost_center text;
-- Metric points kept no attributes: those stored before this migration stay unattributed.
ALTER TABLE metric_points
    ADD COLUMN department  text,
    ADD COLUMN team        text,
    ADD COLUMN cost_center text;

-- A value as ingest reads it: a string, number or boolean attribute, not empty, at most
-- 1024 bytes (a map or an array is no name).
CREATE FUNCTION aa_attribution_value(attrs jsonb, key text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(attrs -> key) IN ('string', 'number', 'boolean')
                 AND attrs ->> key <> '' AND octet_length(attrs ->> key) <= 1024
                THEN attrs ->> key END
$$;

-- Facts stored before: their attributes (resource and record, as received) still hold the
-- values, under the default attribute names. Only rows that have one are touched.
UPDATE llm_requests
SET department = aa_attribution_value(attributes, 'department'),
    team = aa_attribution_value(attributes, 'team.id'),
    cost_center = aa_attribution_value(attributes, 'cost_center')
WHERE attributes ?| ARRAY['department', 'team.id', 'cost_center'];
UPDATE tool_calls
SET department = aa_attribution_value(attributes, 'department'),
    team = aa_attribution_value(attributes, 'team.id'),
    cost_center = aa_attribution_value(attributes, 'cost_center')
WHERE attributes ?| ARRAY['department', 'team.id', 'cost_center'];

UPDATE llm_errors
SET department = aa_attribution_value(attributes, 'department'),
    team = aa_attribution_value(attributes, 'team.id'),
    cost_center = aa_attribution_value(attributes, 'cost_center')
WHERE attributes ?| ARRAY['department', 'team.id', 'cost_center'];

DROP FUNCTION aa_attribution_value(jsonb, text);

-- The directory's rule mapping attribution values onto groups: usage whose `dimension` has
-- `value` counts under the group filter of `group_id` beside its members' own.
CREATE TABLE attribution_groups (
    dimension text NOT NULL,
    value     text NOT NULL,
    group_id  text NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    PRIMARY KEY (dimension, value, group_id)
);
CREATE INDEX attribution_groups_group_idx ON attribution_groups (group_id);
