-- Budgets: an amount in USD per UTC day, ISO week or calendar month for a scope (the whole
-- organisation, one user, one group's current members, or the usage carrying a resource
-- attribute's value), with the person who answers for it. Curated through the directory API
-- and `directory load`; spend, forecast and alerts are computed at query time from the LLM
-- usage aggregates (datasource/budgets.py), nothing is stored per period.
--
-- `target` is the user id, the group id or the attribute's value; `attribute` the attribute's
-- name (e.g. team.id). No foreign key to users or groups: a budget outlives the deletion of the
-- group it names (its spend is then that of nobody, shown as 0) and may name a user before their
-- first telemetry.
CREATE TABLE budgets (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    scope       text NOT NULL,
    attribute   text,
    target      text,
    period      text NOT NULL CHECK (period IN ('day', 'week', 'month')),
    amount_usd  numeric(18, 6) NOT NULL CHECK (amount_usd > 0),
    owner       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- Named, so that a later migration can widen it when a scope kind is added.
    CONSTRAINT budgets_scope_check CHECK (
        (scope = 'organisation' AND attribute IS NULL AND target IS NULL)
        OR (scope IN ('user', 'group') AND attribute IS NULL AND target IS NOT NULL)
        OR (scope = 'attribute' AND attribute IS NOT NULL AND target IS NOT NULL))
);
