-- Raw facts as hypertables with one-day chunks; existing rows are moved in (migrate_data).
SELECT create_hypertable('tool_calls',    by_range('time', INTERVAL '1 day'), if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('llm_requests',  by_range('time', INTERVAL '1 day'), if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('llm_errors',    by_range('time', INTERVAL '7 days'), if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('metric_points', by_range('time', INTERVAL '1 day'), if_not_exists => TRUE, migrate_data => TRUE);
