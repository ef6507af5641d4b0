"""Budgets in the directory: set through the API (bulk and per item) and `directory load` YAML,
listed with their owners, exported and accepted back, deleted; invalid budgets are a 400 naming
the field, and nothing else in the same document is stored."""
from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest
import yaml

from tests.harness_support import INGEST_TOKEN, NO_TSDB, TIMESCALEDB

AUTH = {"Authorization": f"Bearer {INGEST_TOKEN}"}

BUDGETS = [
    {"id": "org-monthly", "name": "Organisation, monthly", "scope": "organisation", "period": "month",
     "amount_usd": 5000, "owner": "finance@example.com"},
    {"id": "platform-weekly", "scope": "group", "target": "platform", "period": "week", "amount_usd": 250.5,
     "owner": "lead@example.com"},
    {"id": "alice-daily", "name": "Alice, daily", "scope": "user", "target": "alice@example.com", "period": "day",
     "amount_usd": 20, "owner": "alice@example.com"},
]
# As listed: every column, the name defaulting to the id, no target or attribute where none applies.
LISTED = [
    {"id": "alice-daily", "name": "Alice, daily", "scope": "user", "attribute": None, "target": "alice@example.com",
     "period": "day", "amount_usd": 20.0, "owner": "alice@example.com"},
    {"id": "org-monthly", "name": "Organisation, monthly", "scope": "organisation", "attribute": None,
     "target": None, "period": "month", "amount_usd": 5000.0, "owner": "finance@example.com"},
    {"id": "platform-weekly", "name": "platform-weekly", "scope": "group", "attribute": None, "target": "platform",
     "period": "week", "amount_usd": 250.5, "owner": "lead@example.com"},
]


def test_budgets_are_set_listed_with_owners_and_exported(client, conn):
    r = client.post("/api/v1/directory", json={"budgets": BUDGETS}, headers=AUTH)
    assert r.status_code == 200, r.data
    assert r.get_json()["budgets"] == 3
    assert client.get("/api/v1/directory/budgets", headers=AUTH).get_json() == {"budgets": LISTED}
    # The user and the group a budget names exist in the directory.
    assert conn.execute("SELECT id, name FROM groups").fetchall() == [("platform", "platform")]
    assert conn.execute("SELECT id FROM users").fetchall() == [("alice@example.com",)]
    # Idempotent; the export is accepted back unchanged.
    exported = client.get("/api/v1/directory", headers=AUTH).get_json()
    assert exported["budgets"] == LISTED
    assert client.put("/api/v1/directory", json=exported, headers=AUTH).status_code == 200
    assert client.get("/api/v1/directory/budgets", headers=AUTH).get_json() == {"budgets": LISTED}


def test_one_budget_put_changes_scope_whole_and_is_deleted(client, conn):
    client.post("/api/v1/directory", json={"budgets": BUDGETS}, headers=AUTH)
    r = client.put("/api/v1/directory/budgets/platform-weekly", headers=AUTH,
                   json={"scope": "organisation", "period": "month", "amount_usd": 900, "owner": "cfo@example.com"})
    assert r.status_code == 200, r.data
    row = conn.execute("SELECT name, scope, attribute, target, period, amount_usd::float8, owner FROM budgets"
                       " WHERE id = 'platform-weekly'").fetchone()
    assert row == ("platform-weekly", "organisation", None, None, "month", 900.0, "cfo@example.com")
    assert client.delete("/api/v1/directory/budgets/alice-daily", headers=AUTH).get_json() == {"deleted": 1}
    r = client.post("/api/v1/directory/delete", json={"budgets": ["org-monthly", "missing"]}, headers=AUTH)
    assert r.get_json()["budgets"] == 1
    assert conn.execute("SELECT id FROM budgets").fetchall() == [("platform-weekly",)]


def _refused(client, budget: dict) -> dict:
    r = client.post("/api/v1/directory", headers=AUTH,
                    json={"users": [{"id": "zed@example.com"}], "budgets": [budget]})
    assert r.status_code == 400, (budget, r.data)
    return r.get_json()["details"]["budgets"]["0"]


def test_invalid_budgets_are_refused_naming_the_field_and_store_nothing(client, conn):
    base = {"id": "b", "scope": "user", "target": "u", "period": "month", "amount_usd": 10, "owner": "o"}
    assert "period" in _refused(client, {**base, "period": "year"})
    assert "scope" in _refused(client, {**base, "scope": "team"})
    assert "amount_usd" in _refused(client, {**base, "amount_usd": 0})
    assert "amount_usd" in _refused(client, {**base, "amount_usd": -5})
    assert "amount_usd" in _refused(client, {**base, "amount_usd": "lots"})
    assert "amount_usd" in _refused(client, {**base, "amount_usd": 1e13})
    assert "owner" in _refused(client, {k: v for k, v in base.items() if k != "owner"})
    assert "target" in _refused(client, {k: v for k, v in base.items() if k != "target"})
    assert "target" in _refused(client, {**base, "scope": "organisation"})
    assert "attribute" in _refused(client, {**base, "attribute": "team.id"})
    # An attribute budget names an attribution dimension (not the attribute it is read from) and a value.
    details = _refused(client, {**base, "scope": "attribute", "attribute": "team.id", "target": "payments"})
    assert "cost_center, department, team" in details["attribute"][0]
    assert "target" in _refused(client, {**base, "scope": "attribute", "attribute": "team", "target": None})
    r = client.post("/api/v1/directory", headers=AUTH, json={"budgets": [{**base, "owner": "nul\x00"}]})
    assert r.status_code == 400 and "budgets.0.owner" in r.get_json()["details"]
    assert conn.execute("SELECT (SELECT count(*) FROM budgets) + (SELECT count(*) FROM users)").fetchone()[0] == 0


def test_an_attribute_budget_is_stored_and_listed(client, conn):
    budget = {"id": "payments", "scope": "attribute", "attribute": "team", "target": "payments",
              "period": "month", "amount_usd": 300, "owner": "payments-lead@x"}
    assert client.post("/api/v1/directory", json={"budgets": [budget]}, headers=AUTH).status_code == 200
    assert client.get("/api/v1/directory/budgets", headers=AUTH).get_json() == {
        "budgets": [{**budget, "name": "payments", "amount_usd": 300.0}]}
    # No user or group is made of its target.
    assert conn.execute("SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM groups)").fetchone()[0] == 0


def test_directory_load_yaml_sets_budgets(db_url, conn, tmp_path):
    path = tmp_path / "budgets.yaml"
    path.write_text(yaml.safe_dump({"budgets": BUDGETS}))
    env = {"DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "agent_analytics.cli", "directory", "load", str(path)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "3 budgets" in proc.stdout
    rows = conn.execute("SELECT id, scope, target, period, amount_usd::float8, owner FROM budgets ORDER BY id")
    assert rows.fetchall() == [(b["id"], b["scope"], b["target"], b["period"], b["amount_usd"], b["owner"])
                               for b in LISTED]


@pytest.mark.parametrize("tsdb", ["off", pytest.param("on", marks=pytest.mark.skipif(not TIMESCALEDB, reason=NO_TSDB))])
def test_a_database_before_budgets_upgrades_in_place(fresh_database, tsdb):
    """A database at 0011 with its directory: migrating adds the budgets and keeps every row."""
    from agent_analytics.ingest import directory
    from agent_analytics.sql.migrate import load_migrations, migrate

    migrate(fresh_database, timescaledb=tsdb, upto=11)
    with psycopg.connect(fresh_database, autocommit=True) as c:
        c.execute("INSERT INTO users (id, display_name) VALUES ('alice@example.com', 'Alice')")
        c.execute("INSERT INTO groups (id, name) VALUES ('platform', 'Platform team')")
        assert c.execute("SELECT to_regclass('budgets')").fetchone()[0] is None
    report = migrate(fresh_database, timescaledb=tsdb)
    assert "0016_budgets.sql" in report.applied
    assert report.applied == [m.name for m in load_migrations() if m.version > 11]
    with psycopg.connect(fresh_database, autocommit=True) as c:
        directory.apply(c, {"budgets": BUDGETS})
        assert c.execute("SELECT id, name FROM groups").fetchall() == [("platform", "Platform team")]
        assert c.execute("SELECT id, display_name FROM users").fetchall() == [("alice@example.com", "Alice")]
        assert directory.list_kind(c, "budgets") == LISTED
