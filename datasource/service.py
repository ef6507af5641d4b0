"""Running a parsed query for a face: a pooled connection, the engine, and the service's own
Prometheus instruments (requests and latency by metric, on the app's registry)."""
from __future__ import annotations

import time
from typing import Any, Callable, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram

from agent_analytics.config import Config
from agent_analytics.db import Database
from agent_analytics.datasource.engine import Engine, Result
from agent_analytics.datasource.query import Query
from agent_analytics.datasource.shared import Shared

T = TypeVar("T")


class Instruments:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("aa_datasource_requests", "Data source requests by face, metric and status",
                                ["face", "metric", "status"], registry=registry)
        self.latency = Histogram("aa_datasource_request_seconds", "Data source request latency by face and metric",
                                 ["face", "metric"], registry=registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


def instruments(extensions: dict[str, Any]) -> Instruments:
    """One set per app (both faces share it), on the app's registry, never the global one."""
    if "aa_datasource_instruments" not in extensions:
        extensions["aa_datasource_instruments"] = Instruments(extensions["aa_registry"])
    return extensions["aa_datasource_instruments"]


def observed(inst: Instruments, face: str, metric: str, work: Callable[[], T]) -> T:
    started = time.perf_counter()
    status = "error"
    try:
        out = work()
        status = "ok"
        return out
    finally:
        inst.requests.labels(face, metric, status).inc()
        inst.latency.labels(face, metric).observe(time.perf_counter() - started)


def shared(extensions: dict[str, Any]) -> Shared:
    """One per app: the figures the panels of a dashboard refresh share (see shared.py)."""
    if "aa_datasource_shared" not in extensions:
        extensions["aa_datasource_shared"] = Shared()
    return extensions["aa_datasource_shared"]


def run(db: Database, config: Config, query: Query, shared_figures: Shared | None = None) -> Result:
    with db.connection() as conn:
        return Engine(conn, config.cost_source, config.setup_guide_url, config.read_aggregates,
                      shared=shared_figures).run(query)


def with_connection(db: Database, work: Callable[[Any], T]) -> T:
    with db.connection() as conn:
        return work(conn)
