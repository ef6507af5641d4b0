"""`agent-analytics directory load FILE`: the directory API's bulk upsert from a YAML or JSON file."""
from __future__ import annotations

import argparse
import json
import sys


def cmd_load(args: argparse.Namespace) -> int:
    import psycopg
    import yaml

    from agent_analytics.config import Config, ConfigError
    from agent_analytics.ingest.directory import DirectoryError, apply

    try:
        cfg = Config.from_env()
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc}")
    if not cfg.database_url:
        sys.exit("DATABASE_URL is not set")
    try:
        with open(args.file, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        sys.exit(f"cannot read {args.file}: {exc.strerror}")
    try:
        # YAML is a superset of JSON: one parser reads both.
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        sys.exit(f"{args.file} is neither YAML nor JSON: {exc}")
    try:
        with psycopg.connect(cfg.database_url, connect_timeout=cfg.db_timeout_s) as conn:
            counts = apply(conn, document or {})
    except DirectoryError as exc:
        detail = f": {json.dumps(exc.details)}" if exc.details else ""
        sys.exit(f"{args.file}: {exc}{detail}")
    except psycopg.OperationalError as exc:
        sys.exit(f"database unreachable: {exc}")
    print("directory loaded: " + ", ".join(f"{n} {kind}" for kind, n in counts.items() if n))
    return 0


def register_commands(subparsers) -> None:
    p = subparsers.add_parser("directory", help="curate the directory (users, groups, agents, tools, policies, budgets)")
    sub = p.add_subparsers(dest="directory_command", required=True)
    load = sub.add_parser("load", help="upsert users, groups, agents, MCP servers, tools, tags, policies and budgets "
                                       "from a YAML or JSON file (idempotent)")
    load.add_argument("file")
    load.set_defaults(func=cmd_load)
