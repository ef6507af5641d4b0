-- Team attribution of what the spend bought: productivity points (migration 0015) gain the
-- attribution dimensions (agent_analytics/config.py's ATTRIBUTION: department, team.id,
-- cost_center by default) that ingest reads from the point and its resource, as migration 0017
-- did for the other facts, so that the Value figures can be read per team. NULL: the process did
-- not say (shown as unattributed, never dropped). The table keeps no attributes: points stored
-- before this migration stay unattributed.
ALTER TABLE productivity_points
    ADD COLUMN department  text,
    ADD COLUMN team        text,
    ADD COLUMN cost_center text;
