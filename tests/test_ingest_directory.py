"""The directory API (bulk and per item, idempotent) and `agent-analytics directory load`."""
from __future__ import annotations

import json
import subprocess
import sys

import yaml

from tests.harness_support import INGEST_TOKEN, QUERY_TOKEN

AUTH = {"Authorization": f"Bearer {INGEST_TOKEN}"}

DOC = {
    "users": [{"id": "alice@example.com", "email": "alice@example.com", "display_name": "Alice"},
              {"id": "bob@example.com", "display_name": "Bob"}],
    "groups": [{"id": "platform", "name": "Platform team", "members": ["alice@example.com", "carol@example.com"]}],
    "memberships": [{"group_id": "platform", "user_id": "bob@example.com"}],
    "agents": [{"id": "claude-code", "name": "Claude Code", "tags": ["approved", "cli"]}],
    "agent_instances": [{"id": "alice-laptop", "agent_id": "claude-code", "user_id": "alice@example.com",
                         "name": "Alice's laptop"}],
    "mcp_servers": [{"id": "github", "name": "GitHub", "tags": ["external"]}],
    "tools": [{"mcp_server_id": "github", "name": "create_issue", "description": "Open an issue",
               "tags": ["write"]},
              {"mcp_server_id": "jira", "name": "search"}],
    "policies": [{"id": "pol-1", "name": "No prod writes", "description": "Writes to prod are blocked"}],
}


def _state(conn):
    q = {
        "users": "SELECT id, email, display_name FROM users ORDER BY id",
        "groups": "SELECT id, name FROM groups ORDER BY id",
        "members": "SELECT group_id, user_id FROM group_members ORDER BY 1, 2",
        "agents": "SELECT id, name FROM agents ORDER BY id",
        "agent_tags": "SELECT agent_id, tag FROM agent_tags ORDER BY 1, 2",
        "instances": "SELECT id, agent_id, user_id, name FROM agent_instances ORDER BY id",
        "servers": "SELECT id, name FROM mcp_servers ORDER BY id",
        "server_tags": "SELECT mcp_server_id, tag FROM mcp_server_tags ORDER BY 1, 2",
        "tools": "SELECT mcp_server_id, name, description FROM tools ORDER BY 1, 2",
        "tool_tags": "SELECT mcp_server_id, tool_name, tag FROM tool_tags ORDER BY 1, 2, 3",
        "policies": "SELECT id, name, description FROM policies ORDER BY id",
    }
    return {k: conn.execute(v).fetchall() for k, v in q.items()}


def test_bulk_upsert_is_idempotent(client, conn):
    r = client.post("/api/v1/directory", json=DOC, headers=AUTH)
    assert r.status_code == 200, r.data
    assert r.get_json()["users"] == 2
    first = _state(conn)
    assert first["members"] == [("platform", "alice@example.com"), ("platform", "bob@example.com"),
                                ("platform", "carol@example.com")]
    assert ("carol@example.com", None, None) in first["users"]          # created on reference
    assert first["servers"] == [("github", "GitHub"), ("jira", "jira")]  # a tool's server, created
    assert first["agent_tags"] == [("claude-code", "approved"), ("claude-code", "cli")]
    assert client.put("/api/v1/directory", json=DOC, headers=AUTH).status_code == 200
    assert _state(conn) == first


def test_updates_replace_sets_and_keep_unnamed_fields(client, conn):
    client.post("/api/v1/directory", json=DOC, headers=AUTH)
    r = client.post("/api/v1/directory", headers=AUTH, json={
        "groups": [{"id": "platform", "members": ["bob@example.com"]}],
        "agents": [{"id": "claude-code", "tags": ["approved"]}],
        "users": [{"id": "alice@example.com", "display_name": "Alice A."}],
    })
    assert r.status_code == 200
    s = _state(conn)
    assert s["members"] == [("platform", "bob@example.com")]
    assert s["groups"] == [("platform", "Platform team")]
    assert s["agent_tags"] == [("claude-code", "approved")]
    assert ("alice@example.com", "alice@example.com", "Alice A.") in s["users"]


def test_single_items_and_memberships(client, conn):
    assert client.put("/api/v1/directory/policies/pol-2", json={"name": "No deletes"},
                      headers=AUTH).status_code == 200
    assert client.put("/api/v1/directory/tools/github/delete_repo", json={"tags": ["danger"]},
                      headers=AUTH).status_code == 200
    assert client.put("/api/v1/directory/groups/sec/members/erin@example.com", headers=AUTH).status_code == 200
    assert client.put("/api/v1/directory/groups/sec/members/erin@example.com", headers=AUTH).status_code == 200
    listing = client.get("/api/v1/directory/groups", headers=AUTH).get_json()
    assert listing == {"groups": [{"id": "sec", "name": "sec", "members": ["erin@example.com"], "attribution": {}}]}
    tools = client.get("/api/v1/directory/tools", headers=AUTH).get_json()["tools"]
    assert tools == [{"mcp_server_id": "github", "name": "delete_repo", "description": None, "tags": ["danger"]}]
    r = client.delete("/api/v1/directory/groups/sec/members/erin@example.com", headers=AUTH)
    assert r.get_json() == {"deleted": 1}
    assert client.delete("/api/v1/directory/tools/github/delete_repo", headers=AUTH).get_json() == {"deleted": 1}
    assert client.delete("/api/v1/directory/tools/github/delete_repo", headers=AUTH).get_json() == {"deleted": 0}
    assert conn.execute("SELECT count(*) FROM tool_tags").fetchone()[0] == 0
    assert client.get("/api/v1/directory/nonsense", headers=AUTH).status_code == 404


def test_bulk_delete(client, conn):
    client.post("/api/v1/directory", json=DOC, headers=AUTH)
    r = client.post("/api/v1/directory/delete", headers=AUTH, json={
        "memberships": [{"group_id": "platform", "user_id": "alice@example.com"}],
        "tools": [{"mcp_server_id": "jira", "name": "search"}], "policies": ["pol-1", "pol-missing"],
        "users": ["carol@example.com"]})
    assert r.status_code == 200
    assert r.get_json()["policies"] == 1 and r.get_json()["memberships"] == 1
    s = _state(conn)
    assert s["members"] == [("platform", "bob@example.com")]
    assert s["policies"] == [] and ("jira", "search", None) not in s["tools"]


def test_validation_and_auth(client, conn):
    r = client.post("/api/v1/directory", json={"users": [{"email": "x@example.com"}]}, headers=AUTH)
    assert r.status_code == 400 and "id" in json.dumps(r.get_json()["details"])
    assert client.post("/api/v1/directory", data="nope", headers=AUTH).status_code == 400
    assert client.post("/api/v1/directory", json=DOC).status_code == 401
    assert client.post("/api/v1/directory", json=DOC,
                       headers={"Authorization": f"Bearer {QUERY_TOKEN}"}).status_code == 403
    assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 0


def test_cli_load_yaml(db_url, conn, tmp_path):
    path = tmp_path / "directory.yaml"
    path.write_text(yaml.safe_dump(DOC))
    env = {"DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-m", "agent_analytics.cli", "directory", "load", str(path)],
                              capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "2 users" in proc.stdout
    s = _state(conn)
    assert len(s["members"]) == 3 and s["policies"] == [("pol-1", "No prod writes", "Writes to prod are blocked")]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"groups": [{"name": "no id"}]}))
    proc = subprocess.run([sys.executable, "-m", "agent_analytics.cli", "directory", "load", str(bad)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode != 0 and "invalid directory document" in proc.stderr


def test_auth_comes_before_the_body(client):
    assert client.post("/api/v1/directory", data="not json").status_code == 401
    assert client.get("/api/v1/directory/users").status_code == 401
    assert client.delete("/api/v1/directory/users/x", headers={"Authorization": f"Bearer {QUERY_TOKEN}"}
                         ).status_code == 403


def test_export_round_trips(client, conn):
    client.post("/api/v1/directory", json=DOC, headers=AUTH)
    before = _state(conn)
    exported = client.get("/api/v1/directory", headers=AUTH).get_json()
    assert set(exported) == {"users", "groups", "agents", "agent_instances", "mcp_servers", "tools", "policies",
                             "budgets"}
    client.post("/api/v1/directory/delete", headers=AUTH, json={
        "users": [u["id"] for u in exported["users"]], "groups": [g["id"] for g in exported["groups"]],
        "agents": ["claude-code"], "mcp_servers": ["github", "jira"], "policies": ["pol-1"],
        "agent_instances": ["alice-laptop"]})
    assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 0
    assert client.post("/api/v1/directory", json=exported, headers=AUTH).status_code == 200
    assert _state(conn) == before
