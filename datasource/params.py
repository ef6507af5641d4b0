"""Parse and validate both faces' requests (marshmallow) into the one Query the engine runs.

Errors name the offending field with its path (`page`, `targets.0.payload.page_size`,
`range.from`), so a 400 says exactly what to fix.
"""
from __future__ import annotations

import functools
import json
from datetime import datetime, timedelta
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import EXCLUDE, INCLUDE, Schema, ValidationError, fields, pre_load, validate

from agent_analytics.datasource import timerange as tr
from agent_analytics.datasource.catalog import SESSION_ORDER, Metric
from agent_analytics.datasource.filters import FILTERS, normalise
from agent_analytics.datasource.query import MAX_ROWS, Query
from agent_analytics.errors import Permanent
from agent_analytics.text import StorableSchema


class RequestError(Permanent, ValueError):
    """A request that cannot be answered; `fields` maps dotted field paths to messages."""

    def __init__(self, fields_: Mapping[str, list[str]], status: int = 400) -> None:
        self.fields = dict(fields_)
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in self.fields.items()), status)

    def body(self) -> dict[str, Any]:
        return {"error": f"invalid request: {self}", "fields": self.fields}


def flatten(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages -> {"targets.0.payload.page": ["..."]}."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for k, v in messages.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if k == "_schema":
                key = prefix or "request"
            out.update(flatten(v, key))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        out[prefix or "request"] = list(messages)
    else:
        out[prefix or "request"] = [str(messages)]
    return out


def _valid_zone(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"unknown time zone {value!r} (use an IANA name such as Europe/Paris)") from None


class ZoneName(fields.String):
    """An IANA zone. Grafana's `${__timezone}` may also give "utc" or "browser": both mean UTC here
    (the browser's zone is unknown to the server)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if text.lower() in ("", "utc", "browser", "z", "default"):
            return "UTC"
        _valid_zone(text)
        return text


def _split_multi(value: str) -> list[str] | str:
    """Grafana's multi-value encodings inside a string: `{a,b}` (glob) or a JSON array."""
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            parsed = json.loads(text)
            if isinstance(parsed, list):
                return [str(v) for v in parsed]
        except (ValueError, RecursionError):
            pass
    if text.startswith("{") and text.endswith("}") and "," in text:
        return [v for v in text[1:-1].split(",")]
    return value


class FilterValues(fields.Field):
    """One value or a list of values; All / empty mean no filter (None)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> tuple[str, ...] | None:
        if isinstance(value, str):
            value = _split_multi(value)
        if isinstance(value, (list, tuple)):
            if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
                raise ValidationError("must be a string or a list of strings")
        elif not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValidationError("must be a string or a list of strings")
        return normalise(value)


class TimeExpr(fields.Field):
    """Epoch milliseconds, ISO 8601, or a relative expression (now-7d, now/M); resolved later."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | int | float:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValidationError("must be epoch milliseconds, an ISO 8601 time or a relative time like now-7d")
        try:
            tr.resolve(value, datetime.now(tr.UTC), ZoneInfo("UTC"))
        except (tr.TimeRangeError, ValueError, OverflowError, OSError) as exc:
            raise ValidationError(str(exc)) from None
        return value


_SCALARS = frozenset({"tz", "page", "page_size", "order_by"})
MAX_PAGE = 1_000_000


class OptionsSchema(StorableSchema):
    """The fields shared by a Grafana target payload and the JSON API's query parameters: the
    options below, then one field per filter (declared in filters.py)."""

    class Meta:
        unknown = EXCLUDE
        include = {name: FilterValues(load_default=None) for name in FILTERS}

    @pre_load
    def _empty_means_default(self, data: Any, **kwargs: Any) -> Any:
        # An empty input box in the query editor, or an unset variable, arrives as "".
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (k in _SCALARS and v in ("", None))}
        return data

    tz = ZoneName(load_default=None, metadata={
        "default": "UTC", "description": "IANA time zone: daily buckets start at its midnight; relative times "
                                         "round in it."})
    # Bounded so that (page - 1) * page_size stays a valid OFFSET (bigint).
    page = fields.Integer(load_default=None, strict=False, validate=validate.Range(min=1, max=MAX_PAGE))
    page_size = fields.Integer(load_default=10, validate=validate.Range(min=1, max=MAX_ROWS))
    order_by = fields.String(load_default="cost", validate=validate.OneOf(SESSION_ORDER))


class JsonApiSchema(OptionsSchema):
    from_ = TimeExpr(data_key="from", load_default="now-24h", metadata={"description": (
        "Epoch milliseconds, ISO 8601, or a Grafana relative time (now-7d, now/M). from and to may each be "
        "given twice: the window, then the date picker's raw range (what Grafana's ${__url_time_range} "
        "writes), which decides the previous period.")})
    to = TimeExpr(load_default="now")


# A panel sends one query (the generated dashboards) or a few; the cap keeps one request from
# running a dashboard's worth of work many times over.
MAX_TARGETS = 20


class RangeSchema(StorableSchema):
    class Meta:
        unknown = EXCLUDE

    from_ = TimeExpr(data_key="from", required=True)
    to = TimeExpr(required=True)
    raw = fields.Dict(load_default=None)


class TargetSchema(StorableSchema):
    class Meta:
        unknown = EXCLUDE

    target = fields.String(required=True)
    refId = fields.String(load_default="A")
    payload = fields.Raw(load_default=None)
    hide = fields.Boolean(load_default=False)


class AdhocFilterSchema(StorableSchema):
    class Meta:
        unknown = EXCLUDE

    key = fields.String(required=True)
    operator = fields.String(load_default="=", validate=validate.OneOf(["="]))
    value = fields.Raw(required=True)


class GrafanaQuerySchema(StorableSchema):
    class Meta:
        unknown = EXCLUDE

    range = fields.Nested(RangeSchema, required=True)
    targets = fields.List(fields.Nested(TargetSchema), required=True, validate=validate.Length(max=MAX_TARGETS))
    scopedVars = fields.Dict(load_default=dict)
    timezone = fields.String(load_default=None)
    filters = fields.List(fields.Nested(AdhocFilterSchema), load_default=list)


class VariableSchema(StorableSchema):
    class Meta:
        unknown = INCLUDE

    payload = fields.Dict(load_default=dict)
    range = fields.Nested(RangeSchema, load_default=None)


@functools.cache
def _instance(schema: type[Schema]) -> Schema:
    # One per class: building a schema deep-copies its fields, which cost as much as a request
    # answered from shared figures. Loading keeps no state on the instance.
    return schema()


def load(schema: type[Schema], data: Any, prefix: str = "") -> dict[str, Any]:
    try:
        return _instance(schema).load(data)
    except ValidationError as exc:
        raise RequestError(flatten(exc.messages, prefix)) from None


def zone(name: str | None) -> ZoneInfo:
    return ZoneInfo(name or "UTC")


def iana_or_none(name: str | None) -> str | None:
    """Grafana's request `timezone` ("browser", "utc", "Europe/Paris") when it names an IANA zone."""
    if not name or name in ("browser", ""):
        return None
    if name.lower() == "utc":
        return "UTC"
    try:
        ZoneInfo(name)
        return name
    except (ZoneInfoNotFoundError, ValueError):
        return None


EARLIEST = datetime(1970, 1, 1, tzinfo=tr.UTC)
MAX_SPAN = timedelta(days=36_525)


def build_query(metric: Metric, raw_from: Any, raw_to: Any, tz: ZoneInfo, options: Mapping[str, Any],
                filter_values: Mapping[str, tuple[str, ...] | None], now: datetime | None = None,
                range_raw: Mapping[str, Any] | None = None, paginate_by_default: bool = True) -> Query:
    now = now or datetime.now(tr.UTC)
    try:
        start = tr.resolve(raw_from, now, tz)
        end = tr.resolve(raw_to, now, tz, round_up=True)
    except tr.TimeRangeError as exc:
        raise RequestError({"from": [str(exc)]}) from None
    if end <= start:
        raise RequestError({"to": ["must be after from"]})
    if start < EARLIEST:
        raise RequestError({"from": ["must not be before 1970-01-01"]})
    if end - start > MAX_SPAN:
        # Daily buckets and the previous period grow with the span: bound both.
        raise RequestError({"to": ["the range may span at most 100 years"]})
    if metric.kind == "timeseries" and metric.tab != "sessions":  # (a session's own buckets are bounded apart)
        window = tr.Window(start, end)
        bucket = tr.bucket_unit(window)
        points = tr.series_points(window, bucket, tz)
        if points > tr.MAX_SERIES_POINTS:
            size = {"hour": "hourly", "day": "daily"}[bucket]
            raise RequestError({"from": [
                f"a time series has at most {tr.MAX_SERIES_POINTS} points: with {size} buckets its range may "
                f"span at most {tr.MAX_SERIES_POINTS} {bucket}s, and this one has {points}; ask a shorter range"]})
    raw = range_raw or {"from": raw_from, "to": raw_to}
    raw_f = raw.get("from") if isinstance(raw.get("from"), str) else None
    raw_t = raw.get("to") if isinstance(raw.get("to"), str) else None
    ptd = tr.period_to_date_unit(raw_f, raw_t)
    whole = tr.whole_period_unit(raw_f, raw_t)
    unit = ptd or whole
    if unit and not tr.calendar_range_fits(tr.Window(start, end), tz, unit, bool(whole)):
        # The raw range does not describe the window (a panel's time shift or relative time that
        # Grafana applied to the window only): the window alone decides, as for a range whose raw
        # form is unknown.
        ptd = whole = None
    page = options.get("page")
    if page is None and paginate_by_default:
        page = 1
    return Query(metric=metric, window=tr.Window(start, end), tz=tz, ptd_unit=ptd, whole_unit=whole,
                 filters={k: v for k, v in filter_values.items() if v and k in metric.filters},
                 page=page if metric.paged else None, page_size=options.get("page_size") or 10,
                 order_by=options.get("order_by") or "cost")
