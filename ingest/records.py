"""OTLP records as the source normalisers see them: attributes already plain Python, resource
attributes merged under the record's own, the record's time resolved."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class LogEvent:
    """A log record seen as an event: its full name, its attributes and its time."""
    name: str
    resource: dict[str, Any]
    record: dict[str, Any]
    attrs: dict[str, Any]          # resource under record
    time_ns: int
    scope: str


@dataclass
class Point:
    """A metric data point with what its metric says about it."""
    metric: str
    kind: str                      # sum | histogram | gauge | ...
    cumulative: bool
    monotonic: bool
    value: float | None            # sum and gauge: the value; histogram: the sum
    time_ns: int
    start_time_ns: int
    resource: dict[str, Any]
    record: dict[str, Any]
    attrs: dict[str, Any]


@dataclass
class SpanView:
    name: str
    resource: dict[str, Any]
    record: dict[str, Any]
    attrs: dict[str, Any]
    start_ns: int
    end_ns: int
    error: bool                    # span status ERROR
    status_message: str
    trace_id: str
    span_id: str
    kind: int = 0                  # OTLP SpanKind: 2 SERVER, 3 CLIENT
