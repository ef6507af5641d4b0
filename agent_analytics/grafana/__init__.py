"""Install the data source, folder, dashboards and alert rules into an existing Grafana through
its HTTP API (`agent-analytics grafana install`), or write the dashboards for git
(`agent-analytics grafana export`).

client.py talks HTTP, sources.py reads the generated files and rewrites data source uids,
plan.py decides what to do from desired vs live state, install.py applies the plan."""
