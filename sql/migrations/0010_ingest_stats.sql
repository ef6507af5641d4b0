-- What is arriving: the receiver's own account of every OTLP record it answered, per hour of
-- arrival, written in the transaction that stores the records' facts (ingest/stats.py), so that
-- what a sender was told it delivered is what is counted here.
--
-- One row per hour, source (claude_code, codex, gateway, mcp_server, mcp_client, genai, other), signal,
-- sending service (service.name, service.version), agent instance, user, outcome (stored,
-- duplicate, ignored, rejected) and, for rejections, a bounded reason (its words before any
-- quoted or numeric detail). '' stands for "none" so that the key can be a primary key.
-- Like the aggregates, the rows are kept beyond the raw facts' retention: a few per sender and hour.
CREATE TABLE ingest_stats (
    bucket          timestamptz NOT NULL,
    source          text NOT NULL,
    signal          text NOT NULL,
    service         text NOT NULL,
    version         text NOT NULL,
    agent_instance  text NOT NULL,
    user_id         text NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('stored', 'duplicate', 'ignored', 'rejected')),
    reason          text NOT NULL,
    records         bigint NOT NULL,
    last_seen       timestamptz NOT NULL,
    PRIMARY KEY (bucket, source, signal, service, version, agent_instance, user_id, outcome, reason)
);
