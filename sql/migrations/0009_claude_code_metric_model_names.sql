-- Claude Code's metric points name a model with its context option (`claude-sonnet-4-5[1m]`)
-- where its api_request events name the model alone. A session's tokens come from its points
-- and its cost from its events (0008), so the two names split one model into a row of tokens at
-- $0 and a row of cost over no tokens. The receiver stores the points under the events' name
-- (ingest/normalise_claude_code.py); the stored points follow, and their sessions' model lists
-- are recounted. (A point's content key does not include its model.)
CREATE TEMP TABLE aa_renamed ON COMMIT DROP AS
SELECT DISTINCT session_id FROM metric_points
WHERE source = 'claude_code' AND model ~ '\[[^][]*\]$' AND session_id IS NOT NULL;

UPDATE metric_points SET model = regexp_replace(model, '\[[^][]*\]$', '')
WHERE source = 'claude_code' AND model ~ '\[[^][]*\]$';

SELECT aa_rebuild_session_totals(ARRAY(SELECT session_id FROM aa_renamed ORDER BY 1));
