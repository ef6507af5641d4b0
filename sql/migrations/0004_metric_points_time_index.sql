-- Every dashboard query reads metric points by time. TimescaleDB gave the hypertable this index
-- (its default, under this name); plain PostgreSQL had none and scanned the whole table.
CREATE INDEX IF NOT EXISTS metric_points_time_idx ON metric_points (time DESC);
