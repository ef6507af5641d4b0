-- The directory: who and what the facts refer to. Rows appear on first sight in telemetry
-- and are curated through the directory API (names, groups, tags, policies).

CREATE TABLE users (
    id           text PRIMARY KEY,           -- user.email, else user.account_uuid, else user.id
    email        text,
    display_name text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE groups (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Current membership only: group filters evaluate membership as it stands today.
CREATE TABLE group_members (
    group_id text NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id  text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user_idx ON group_members (user_id);

CREATE TABLE agents (                       -- a product, such as Claude Code or Codex
    id         text PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agent_tags (
    agent_id text NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    tag      text NOT NULL,
    PRIMARY KEY (agent_id, tag)
);
CREATE INDEX agent_tags_tag_idx ON agent_tags (tag);

CREATE TABLE agent_instances (              -- one connected client, owned by one user
    id         text PRIMARY KEY,
    agent_id   text REFERENCES agents (id) ON DELETE SET NULL,
    user_id    text REFERENCES users (id) ON DELETE SET NULL,
    name       text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mcp_servers (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mcp_server_tags (              -- resource tags on MCP servers
    mcp_server_id text NOT NULL REFERENCES mcp_servers (id) ON DELETE CASCADE,
    tag           text NOT NULL,
    PRIMARY KEY (mcp_server_id, tag)
);
CREATE INDEX mcp_server_tags_tag_idx ON mcp_server_tags (tag);

CREATE TABLE tools (                        -- each tool is owned by one MCP server
    mcp_server_id text NOT NULL REFERENCES mcp_servers (id) ON DELETE CASCADE,
    name          text NOT NULL,
    description   text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mcp_server_id, name)
);

CREATE TABLE tool_tags (                    -- resource tags on tools
    mcp_server_id text NOT NULL,
    tool_name     text NOT NULL,
    tag           text NOT NULL,
    PRIMARY KEY (mcp_server_id, tool_name, tag),
    FOREIGN KEY (mcp_server_id, tool_name) REFERENCES tools (mcp_server_id, name) ON DELETE CASCADE
);
CREATE INDEX tool_tags_tag_idx ON tool_tags (tag);

CREATE TABLE policies (                     -- today's name and description; blocks keep their own copy
    id          text PRIMARY KEY,
    name        text NOT NULL,
    description text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
