-- An MCP server's own telemetry names it by its OpenTelemetry resource `service.name` (the MCP
-- Python SDK: e.g. `demo-mcp`), which agents do not know: they name the server as configured
-- (`demo`). The directory records the service name of each server, and the receiver stores
-- the server's spans under the server's id (ingest/store.py), so that both reports of a call
-- name the same server and the call is counted once.
ALTER TABLE mcp_servers ADD COLUMN service_name text;
CREATE INDEX mcp_servers_service_name_idx ON mcp_servers (service_name) WHERE service_name IS NOT NULL;
