"""What an agent's normaliser declares about the agent (its `AGENT`): ingest/sources.py collects
the declarations, and everything that recognises, dispatches, counts or names an agent's
records reads them there."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from .records import LogEvent, Point
from .rows import Batch, Context

# A normaliser's function for one record: False when the record carries nothing to store
# (ignored); raises values.BadValue to reject it with a reason.
LogHandler = Callable[[LogEvent, Batch, Context], bool]
PointHandler = Callable[[Point, Batch, Context], bool]


@dataclass(frozen=True)
class Agent:
    """An agent that sends its own events (and perhaps metrics).

    Its records are recognised, in this order: by `scopes` or `service` (every log record of
    such a resource or scope is the agent's, its event name completed with `prefix`); by the
    `prefix` of an event or metric name; and, for records no normaliser takes, by `service` or
    `service_prefix` (so that they are counted under the agent, not `other`)."""
    source: str                           # every fact's `source`, and ingest_stats' (ingest/stats.py)
    agent_id: str                         # the directory's agent id, which the dashboards filter on
    name: str                             # how people call it (directory, Telemetry dashboard)
    prefix: str                           # of its event and metric names, e.g. "codex."
    events: Mapping[str, LogHandler]      # full event name -> its function
    metrics: frozenset[str] = frozenset()  # metric names `metric_point` takes
    metric_point: PointHandler | None = None
    scopes: tuple[str, ...] = ()          # instrumentation scope name prefixes
    service: str | None = None            # its exact `service.name`
    service_prefix: str | None = None     # a `service.name` prefix, for records no normaliser takes
    body_names: bool = False              # a log body starting with `prefix` is the event's name
    # The attributes naming an agent instance, as its normaliser reads them.
    instance_keys: tuple[str, ...] = field(default=("agent.instance.id", "service.instance.id"))
