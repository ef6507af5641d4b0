-- Claude Code's `config` rejections are a deny rule or a tool no allow rule permits where
-- Claude Code could not ask (`-p`): the policy row created on first sight said "deny list".
-- Rows still holding that first-sight text take the names ingest/normalise_claude_code.py
-- records; a curated name or description is left alone. (Blocks already stored keep the
-- policy text they were recorded with.)
UPDATE policies
SET updated_at = now(), name = 'Claude Code permission rule or not allowed (config)',
    description = 'Refused by Claude Code''s permission settings: a deny rule, or no allow rule for the tool'
                  ' where Claude Code could not ask (non-interactive -p)'
WHERE id = 'claude_code:config' AND name = 'Claude Code permission rule'
  AND description = 'Denied by a permission rule in Claude Code''s settings (managed, user or project deny list)';
UPDATE policies
SET updated_at = now(), description = 'Refused by a Claude Code PreToolUse hook'
WHERE id = 'claude_code:hook' AND name = 'Claude Code hook' AND description = 'Denied by a Claude Code PreToolUse hook';
