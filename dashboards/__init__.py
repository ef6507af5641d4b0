"""Grafana dashboards and alert rules as code (grafana-foundation-sdk): `variants` (the Infinity and
JSON-plugin query shapes), `queries` (the SDK-free Infinity model), `panels`, `tabs` (the
dashboards), `alerts`, and `generate` (`agent-analytics dashboards generate`)."""
