"""How much work one OTLP request may cause, counted before any record is normalised.

The body's bytes are bounded already (AA_MAX_BODY_BYTES), but a few bytes can stand for a lot of
work: an empty ResourceLogs is two bytes, so 16 MiB holds 8 million of them, which the protobuf
runtime parses in a fraction of a second and our per-resource Python then walks for seconds.
The counts come from the repeated fields' lengths (no record is read) and the count stops at the
first limit passed, so counting costs at most about the limits themselves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from google.protobuf.message import Message


@dataclass(frozen=True)
class Limits:
    resources: int
    scopes: int
    records: int
    attributes: int

    @classmethod
    def of(cls, cfg: Any) -> "Limits":
        return cls(cfg.max_resources, cfg.max_scopes, cfg.max_records, cfg.max_attributes)


class TooMuchWork(Exception):
    """The request asks for more work than the limits allow: a 413 naming the limit."""

    def __init__(self, what: str, limit: int, setting: str) -> None:
        self.what, self.limit, self.setting = what, limit, setting
        super().__init__(f"request has more than {limit} {what} (the limit {setting}); "
                         "split it into smaller requests")


# The repeated fields of each signal: resources, their scopes, the scopes' records.
_FIELDS = {"logs": ("resource_logs", "scope_logs", "log_records"),
           "metrics": ("resource_metrics", "scope_metrics", "metrics"),
           "traces": ("resource_spans", "scope_spans", "spans")}
_POINTS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")


def check(signal: str, message: Message, limits: Limits) -> None:
    """Raise TooMuchWork when `message` has more resources, scopes, records (metrics count with
    their data points) or attributes (of resources and records) than `limits`."""
    res_field, scope_field, rec_field = _FIELDS[signal]
    resources = getattr(message, res_field)
    if len(resources) > limits.resources:
        raise TooMuchWork("resources", limits.resources, "AA_MAX_RESOURCES")
    scopes = records = attrs = 0
    for resource in resources:
        attrs += len(resource.resource.attributes)
        scope_list = getattr(resource, scope_field)
        scopes += len(scope_list)
        if scopes > limits.scopes:
            raise TooMuchWork("scopes", limits.scopes, "AA_MAX_SCOPES")
        for scope in scope_list:
            recs = getattr(scope, rec_field)
            records += len(recs)
            if records > limits.records:
                raise TooMuchWork("records", limits.records, "AA_MAX_RECORDS")
            if signal == "metrics":
                records, attrs = _count_points(recs, records, attrs, limits)
            else:
                for rec in recs:
                    attrs += len(rec.attributes)
            if attrs > limits.attributes:
                raise TooMuchWork("attributes", limits.attributes, "AA_MAX_ATTRIBUTES")
    if attrs > limits.attributes:
        raise TooMuchWork("attributes", limits.attributes, "AA_MAX_ATTRIBUTES")


def _count_points(metrics: Iterable[Any], records: int, attrs: int, limits: Limits) -> tuple[int, int]:
    for metric in metrics:
        kind = metric.WhichOneof("data")
        if kind not in _POINTS:
            continue
        points = getattr(metric, kind).data_points
        records += len(points)
        if records > limits.records:
            raise TooMuchWork("records", limits.records, "AA_MAX_RECORDS")
        for dp in points:
            attrs += len(dp.attributes)
        if attrs > limits.attributes:
            raise TooMuchWork("attributes", limits.attributes, "AA_MAX_ATTRIBUTES")
    return records, attrs
