"""The application factory: configuration, the database pool, the service's own Prometheus
registry, and one blueprint per area. `role` picks the areas one listener serves."""
from __future__ import annotations

import logging
import os
import time
from typing import Iterator

from flask import Flask, Response, g, jsonify
from flask.json.provider import DefaultJSONProvider
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from agent_analytics import auth, db, errors
from agent_analytics.config import Config
from agent_analytics.ingest.metrics import LLM_LABELS

log = logging.getLogger(__name__)

ROLES = ("all", "ingest", "query")


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, where a body nested past Python's recursion limit is unreadable JSON
    (a ValueError, so `get_json(silent=True)` answers None and the caller a 400), not a 500."""

    def loads(self, s, **kwargs):
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def _exposed(app: Flask) -> CollectorRegistry:
    """What /metrics shows: this app's registry, or with several receiver processes (Prometheus
    multiprocess mode, PROMETHEUS_MULTIPROC_DIR) every process's values summed."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return app.extensions["aa_registry"]


class _SummedOver(Collector):
    """A registry as a token without llm-analytics sees it: the labels in `hidden` summed away
    (a count stays whole, only who it is about is left out)."""

    def __init__(self, registry: CollectorRegistry, hidden: frozenset[str]) -> None:
        self.registry, self.hidden = registry, hidden

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            if not any(self.hidden.intersection(s.labels) for s in family.samples):
                yield family
                continue
            sums: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
            for s in family.samples:
                if s.name.endswith("_created"):  # a series' creation time: no meaning once summed
                    continue
                key = (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k not in self.hidden)))
                sums[key] = sums.get(key, 0.0) + s.value
            summed = Metric(family.name, family.documentation, family.type, family.unit)
            for (name, labels), value in sums.items():
                summed.add_sample(name, dict(labels), value)
            yield summed


def create_app(config: Config | None = None, role: str = "all",
               registry: CollectorRegistry | None = None) -> Flask:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    config = config or Config.from_env()
    # No static route: Flask's default would serve, without a token, any file in a `static/`
    # folder beside the working directory.
    app = Flask(f"agent_analytics_{role}", static_folder=None)
    app.json = BoundedJSONProvider(app)
    app.config["AA"] = config
    app.config["MAX_CONTENT_LENGTH"] = None  # the receiver enforces its own limit, after decompression
    # An API answers for the path it was given: an empty path segment (an id that was "/") is a
    # 404, not a redirect to a different resource.
    app.url_map.merge_slashes = False
    app.extensions["aa_registry"] = registry if registry is not None else CollectorRegistry()
    db.init_app(app)
    errors.register(app)

    @app.before_request
    def _started() -> None:
        g.aa_started = time.perf_counter()

    @app.after_request
    def _server_timing(response: Response) -> Response:
        # W3C Server-Timing: what this process spent on the request (parsing, the database, the
        # answer's JSON), shown by browsers' developer tools; the round trip adds the network and
        # the client.
        started = g.get("aa_started")
        if started is not None:
            response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.3f}"
        return response

    @app.get("/healthz")
    def healthz():
        """Liveness and database reachability; the only endpoint without a token."""
        try:
            with db.get_db().connection(timeout=2) as conn:
                conn.execute("SELECT 1")
            return jsonify(status="ok", database="ok")
        except Exception as exc:  # any failure means "not ready"
            log.warning("health check: database unreachable: %s", type(exc).__name__)
            return jsonify(status="degraded", database="unreachable"), 503

    @app.get("/metrics")
    def prometheus_metrics():
        granted = auth.require(auth.Permission.METRICS)
        registry = _exposed(app)
        if auth.Permission.LLM_ANALYTICS not in granted:  # model names are LLM analytics
            summed = CollectorRegistry(auto_describe=False)
            summed.register(_SummedOver(registry, LLM_LABELS))
            registry = summed
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    from agent_analytics import blueprints

    blueprints.register(app, role)
    return app
