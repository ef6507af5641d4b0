-- What the spend bought: the productivity counts agents send as metrics (Claude Code's
-- lines_of_code.count, commit.count, pull_request.count, code_edit_tool.decision and
-- active_time.total), always stored as deltas: cumulative series are differenced at ingest
-- against metric_series_state, as token and cost points are. A table apart from metric_points:
-- these points say nothing about tokens or cost, and a session's metric points decide which of
-- its token figures count (migration 0003), which these must not touch.
--
-- One row per point: `metric` is the count it adds to (the point's `type` or `decision` folded
-- in); the other columns are the attributes a point carries, '' where its metric has none.
-- Points received before this migration were not stored: there is nothing to backfill.
CREATE TABLE productivity_points (
    time        timestamptz NOT NULL,   -- end of the point's window
    start_time  timestamptz,
    source_key  bytea NOT NULL,
    source      text NOT NULL,
    session_id  text,
    user_id     text,
    agent_id    text,
    model       text NOT NULL DEFAULT 'unknown',  -- only lines of code name a model
    metric      text NOT NULL CHECK (metric IN ('lines_added', 'lines_removed', 'commits', 'pull_requests',
                                                'edits_accepted', 'edits_rejected', 'active_seconds')),
    language    text NOT NULL DEFAULT '',         -- edit decisions: the file's language
    tool_name   text NOT NULL DEFAULT '',         -- edit decisions: Edit, Write, NotebookEdit
    decided_by  text NOT NULL DEFAULT '',         -- edit decisions: config, user_reject, hook, ...
    activity    text NOT NULL DEFAULT '',         -- active time: cli or user
    value       double precision NOT NULL CHECK (value >= 0),
    PRIMARY KEY (source_key, time)
);
CREATE INDEX productivity_points_time_idx ON productivity_points (time DESC);
