"""`agent-analytics`: one console script, a subcommand per job."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import shutil
import sys
import tempfile
import time
from typing import Iterator

from agent_analytics.config import Config, ConfigError

# Each area adds its subcommands through a `register_commands(subparsers)` function, so this
# file stays the same size as areas grow. Each module must import its heavy parts lazily.
COMMAND_MODULES: list[str] = [
    "agent_analytics.dashboards.generate",
    "agent_analytics.demo",
    "agent_analytics.grafana.cli",
    "agent_analytics.ingest.directory_cli",
    "agent_analytics.setup_guide",
    "agent_analytics.status",
]


def _config() -> Config:
    try:
        return Config.from_env()
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc}")


def cmd_migrate(args: argparse.Namespace) -> int:
    from agent_analytics.sql.migrate import MigrationError, migrate

    cfg = _config()
    if not cfg.database_url:
        sys.exit("DATABASE_URL is not set (agent-analytics up migrates its embedded database itself)")
    try:
        report = migrate(cfg.database_url, cfg.timescaledb, cfg.retention_days, cfg.compress_after_days)
    except MigrationError as exc:
        sys.exit(f"migration refused: {exc}")
    print(report.summary())
    return 0


@contextlib.contextmanager
def _multiprocess_metrics(cfg: Config, roles: tuple[str, ...]) -> Iterator[None]:
    """Several receiver processes share their Prometheus values through files in a directory
    (client_python's multiprocess mode), which must be chosen before prometheus_client is
    imported: enter this first. A directory made here is removed at exit."""
    if "ingest" not in roles or cfg.ingest_processes <= 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before multiprocess mode was set up")
    path = tempfile.mkdtemp(prefix="agent-analytics-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    try:
        yield
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _serve(cfg: Config, roles: tuple[str, ...], worker: bool = False) -> int:
    from agent_analytics.server import Service

    service = Service(cfg, roles=roles, worker=worker)
    try:
        service.start()
    except KeyboardInterrupt:  # Ctrl-C before the last server was up: stop what did start
        service.stop()
        print("stopped")
        return 0
    if worker:  # one more receiver process; the main process reports for all of them
        service.wait()
        return 0
    if service.child_pids:
        print(f"receiver processes: {os.getpid()} {' '.join(map(str, service.child_pids))}", flush=True)
    if "ingest" in roles:
        print(f"OTLP/HTTP receiver on http://{cfg.host}:{cfg.ingest_port}/v1/{{logs,metrics,traces}}")
    if "query" in roles:
        print(f"data source on http://{cfg.host}:{cfg.query_port}/ (Grafana JSON: /grafana, JSON API: /api/v1)")
    if not (cfg.ingest_tokens or cfg.query_tokens or cfg.llm_query_tokens) and not cfg.allow_no_auth:
        print("warning: no tokens configured (AA_INGEST_TOKENS, AA_QUERY_TOKENS, AA_LLM_QUERY_TOKENS): "
              "every request will be refused; set AA_ALLOW_NO_AUTH=1 for local development")
    print("press Ctrl-C to stop", flush=True)
    service.wait()
    print("stopped")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """Migrate and serve; with no DATABASE_URL, on an embedded PostgreSQL started here."""
    cfg = _config()
    with _multiprocess_metrics(cfg, ("ingest", "query")):
        return _up(cfg)


def _up(cfg: Config) -> int:
    from agent_analytics.cluster import ClusterError
    from agent_analytics.server import start_embedded_database
    from agent_analytics.sql.migrate import MigrationError, migrate

    cluster = None
    try:
        if not cfg.database_url:
            cluster, url = start_embedded_database(cfg)
            cfg = cfg.replace(database_url=url)
        print("database: migrating the schema ...", flush=True)
        t0 = time.monotonic()
        report = migrate(cfg.database_url, cfg.timescaledb, cfg.retention_days, cfg.compress_after_days)
        print(report.summary(), flush=True)
        print(f"database: ready in {time.monotonic() - t0:.0f} s", flush=True)
        return _serve(cfg, ("ingest", "query"))
    except (ClusterError, MigrationError) as exc:
        sys.exit(str(exc))
    finally:
        if cluster is not None:
            cluster.stop()
            print("embedded PostgreSQL stopped")


def cmd_serve(args: argparse.Namespace) -> int:
    from agent_analytics.sql.migrate import pending

    cfg = _config()
    if not cfg.database_url:
        sys.exit("DATABASE_URL is not set (use `agent-analytics up` for an embedded database)")
    if args.ingest_worker:  # started by a main process that has checked the schema
        return _serve(cfg, ("ingest",), worker=True)
    try:
        missing = pending(cfg.database_url)
    except Exception as exc:  # noqa: BLE001 - an unreachable database is served (503s) until it is back
        print(f"warning: could not check the schema ({type(exc).__name__}); serving anyway")
        missing = []
    if missing:
        sys.exit("the database schema is out of date (missing: " + ", ".join(missing)
                 + "); run `agent-analytics migrate` first")
    roles = ("ingest", "query") if args.role == "all" else (args.role,)
    with _multiprocess_metrics(cfg, roles):
        return _serve(cfg, roles)


def cmd_config(args: argparse.Namespace) -> int:
    from agent_analytics.config import settings_table

    print(settings_table())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent-analytics", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", help="migrate and serve (embedded PostgreSQL when DATABASE_URL is unset)")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("migrate", help="apply the schema to DATABASE_URL (idempotent)")
    p.set_defaults(func=cmd_migrate)
    p = sub.add_parser("serve", help="serve ingest and/or queries against DATABASE_URL")
    p.add_argument("--role", choices=("all", "ingest", "query"), default="all")
    p.add_argument("--ingest-worker", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("config", help="print the configuration table (settings and defaults)")
    p.set_defaults(func=cmd_config)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
