"""OTLP attribute values as plain Python, and the lenient number and time parsing agents need:
Claude Code and Codex send the same count sometimes as an int, a double or a string."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

# Bounds for what is kept in the `attributes` jsonb column: enough to debug and filter, not a
# place for prompts or tool outputs.
MAX_ATTRIBUTES = 64
MAX_STRING = 512


class BadValue(ValueError):
    """An attribute is present but unusable; the record is rejected with this message."""


def any_value(v: AnyValue, budget: list[int] | None = None) -> Any:
    """`v` as plain Python. Of the values nested in its arrays and maps, the first MAX_STRING
    (depth first) only: its stored text (`bounded`) is cut there anyway (each prints as three
    characters at least, with its separator), and a body of a few megabytes holds millions."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value" or kind == "kvlist_value":
        left = [MAX_STRING] if budget is None else budget
        if kind == "array_value":
            items = []
            for x in v.array_value.values:
                if left[0] <= 0:
                    break
                left[0] -= 1
                items.append(any_value(x, left))
            return items
        kvs = {}
        for kv in v.kvlist_value.values:
            if left[0] <= 0:
                break
            left[0] -= 1
            kvs[kv.key] = any_value(kv.value, left)
        return kvs
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def attributes(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        # This runs for every attribute of every record, and each field read through the
        # protobuf runtime costs: a non-empty string (most attributes) is read once, since
        # only the set member of the oneof can be non-empty.
        v = kv.value
        s = v.string_value
        if s:
            out[kv.key] = s
            continue
        i = v.int_value  # (likewise a non-zero int: the counts)
        if i:
            out[kv.key] = i
            continue
        kind = v.WhichOneof("value")
        out[kv.key] = (getattr(v, kind) if kind in _SCALARS else None if kind is None else any_value(v))
    return out


_SCALARS = frozenset({"string_value", "int_value", "double_value", "bool_value"})


def bounded(attrs: Mapping[str, Any], leave_out: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A copy fit for the jsonb column, without the `leave_out` keys: at most MAX_ATTRIBUTES keys
    (the first in sorted order), long strings cut, no NaN or infinity (as text instead)."""
    out = dict(attrs) if leave_out.isdisjoint(attrs) else {k: v for k, v in attrs.items() if k not in leave_out}
    if len(out) > MAX_ATTRIBUTES:
        out = {k: out[k] for k in sorted(out)[:MAX_ATTRIBUTES]}
    for key, value in out.items():  # values only are replaced: the dict may be iterated meanwhile
        kind = type(value)
        if kind is str:
            if len(value) > MAX_STRING:
                out[key] = value[:MAX_STRING] + "…"
        elif kind is float:
            if not math.isfinite(value):
                out[key] = str(value)
        elif kind is list or kind is dict:
            text = repr(value)
            if len(text) > MAX_STRING:
                out[key] = text[:MAX_STRING] + "…"
            elif not _finite(value):  # JSON has no NaN or infinity: jsonb would refuse the batch
                out[key] = text
    return out


def _finite(value: Any) -> bool:
    """Whether no float inside `value` (an attribute's list or map) is NaN or infinite."""
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is list:
        return all(map(_finite, value))
    if type(value) is dict:
        return all(map(_finite, value.values()))
    return True


class Flattened(str):
    """A map or an array attribute read as text (its repr): fine to compare or to show, never a
    name to store (normalise refuses a record whose identifier is one)."""

    kind = ""


class _FlatMap(Flattened):
    kind = "a map"


class _FlatArray(Flattened):
    kind = "an array"


def text(attrs: Mapping[str, Any], *keys: str) -> str | None:
    """The first non-empty attribute among `keys`, as a string (a Flattened one for a map or an
    array)."""
    for key in keys:
        value = attrs.get(key)
        if type(value) is str and value:  # the common case
            return value
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict):
            return _FlatMap(value)
        if isinstance(value, list):
            return _FlatArray(value)
        return str(value)
    return None


def number(attrs: Mapping[str, Any], key: str, *, maximum: float | None = None) -> float | None:
    """A finite, non-negative number from an int, double or numeric string; None when absent."""
    value: Any = attrs.get(key)
    kind = type(value)
    if kind is int or kind is float:  # the common case, checked without the general path
        if 0 <= value < math.inf and (maximum is None or value <= maximum):
            return float(value)
    elif value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadValue(f"{key} is a boolean, not a number")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise BadValue(f"{key} is not a number: {value[:40]!r}") from None
    if not isinstance(value, (int, float)):
        raise BadValue(f"{key} is not a number")
    value = float(value)
    if not math.isfinite(value):
        raise BadValue(f"{key} is not finite")
    if value < 0:
        raise BadValue(f"{key} is negative ({value:g})")
    if maximum is not None and value > maximum:
        raise BadValue(f"{key} is implausibly large ({value:g} > {maximum:g})")
    return value


def count(attrs: Mapping[str, Any], key: str, *, maximum: float) -> int | None:
    """A token count: a non-negative whole number below `maximum`."""
    value = attrs.get(key)
    if type(value) is int and 0 <= value <= maximum:  # the common cases: an int, or none
        return value
    if value is None:
        return None
    value = number(attrs, key, maximum=maximum)
    if value is None:
        return None
    if value != int(value):
        raise BadValue(f"{key} is not a whole number ({value:g})")
    return int(value)


def flag(attrs: Mapping[str, Any], key: str) -> bool | None:
    value = attrs.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes")


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def ns_to_datetime(ns: int) -> datetime:
    """Unix nanoseconds as a UTC datetime, cut to the microsecond (one per stored row: a third of
    the cost of `datetime.fromtimestamp` with a time zone)."""
    return _EPOCH + timedelta(0, 0, ns // 1000)  # (days, seconds, microseconds)


def iso_to_ns(value: Any) -> int | None:
    """`event.timestamp` (ISO 8601, `Z` or an offset) as Unix nanoseconds; None when unusable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


# Content, not telemetry: never kept, even redacted (prompts, responses, tool inputs and outputs).
PRIVATE_KEYS = frozenset({"prompt", "prompt_text", "response", "tool_parameters", "tool_input",
                          "arguments", "output", "gen_ai.prompt", "gen_ai.completion",
                          "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions"})


def stored(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes kept beside a fact: resource and record attributes, minus content, bounded."""
    return bounded(attrs, PRIVATE_KEYS)
