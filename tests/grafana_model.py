"""What Grafana and its plugins do to the service's answers before a panel shows them, modelled
from their source for the dashboard contract tests (tests/grafana_js runs Grafana's own published
code where it can).

Infinity's backend parser (`parser: "backend"`, the default variant), grafana-infinity-datasource
v3.11.1 `pkg/infinity/jsonBackend.go` (GetJSONBackendResponse), with the libraries its go.mod pins:
- infinity-libs `lib/go/jsonframer/jsonframer.go` (jsonframer v1.3.0, getColumnValuesFromResponseString):
  each row under `root_selector` becomes a map keyed by the column's `text` (else its selector),
  the value read with gjson at the selector;
- infinity-libs `lib/go/gframer/gframer.go` (gframer v1.1.13, sliceToFrame, sortedKeys): the frame's
  fields are those keys sorted byte-wise (Go's sort.Strings), each converted to the column's type by
  `lib/go/gframer/field.go` (anyToNullableString/Bool/Number/TimestampEpoch/TimestampEpochSecond):
  - string: strings as they are, numbers with Go's %v, booleans "true"/"false", anything else null;
  - boolean: JSON booleans; a string is true when it reads "true" in any case, else null (so
    "false" is null, not false); numbers null;
  - number: numbers, strings parsed as floats, anything else null;
  - timestamp_epoch: epoch milliseconds (number or digit string); timestamp_epoch_s: seconds.
  A column whose first non-null value is an object or array becomes a string of its JSON.

Infinity's request URL (grafana-infinity-datasource v3.11.1 `pkg/infinity/request.go`, GetQueryURL):
the interpolated URL is parsed with Go's net/url (empty `&&` segments dropped, a key's values kept in
order) and its query re-encoded with url.Values.Encode: keys sorted, values QueryEscape'd.

Grafana's "Organize fields" transformation (`@grafana/data` transformers/organize.ts, order.ts):
exclude by name, then order by `indexByName` keyed by each field's display name (fields without an
index go last, in their order), then rename.
"""
from __future__ import annotations

import json
from urllib.parse import parse_qsl, quote_plus, urlsplit, urlunsplit
from typing import Any

# The types each Infinity column type gives a field, as Grafana's frame field types.
FIELD_TYPES = {"string": "string", "boolean": "boolean", "number": "number", "timestamp_epoch": "time",
               "timestamp_epoch_s": "time"}


def _go_format(value: float) -> str:
    """Go's fmt %v of a float64 (strconv 'g' with the shortest representation, exponent at >= 1e21)."""
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exp = text.split("e")
        sign = "-" if exp.startswith("-") else "+"
        return f"{mantissa}e{sign}{abs(int(exp)):02d}"
    return text


def _convert(value: Any, kind: str) -> Any:
    if kind == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)):
            return _go_format(float(value))
        return None
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return True if value.lower() == "true" else None
        return None
    if kind == "number":
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # strconv.ParseFloat
            except ValueError:
                return None
        return None
    if kind in ("timestamp_epoch", "timestamp_epoch_s"):
        scale = 1 if kind == "timestamp_epoch" else 1000
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            return int(value) * scale
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value) * scale
        return None
    if kind == "":
        # No declared type: the value as gjson read it (sliceToFrame's default branch).
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    raise AssertionError(f"column type {kind!r} is not modelled")


def _inferred(value: Any) -> str:
    """gframer getFieldTypeAndValue: the field type of the first non-null value (nullable string
    when every value is null)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "string"


def infinity_frame(query: dict, body: Any) -> list[dict]:
    """The fields Infinity's backend parser makes of `body` for an Infinity query model:
    [{"name", "type", "values"}], in the parser's order."""
    rows = body
    for part in query.get("root_selector", "").split(".") if query.get("root_selector") else ():
        rows = rows[part]
    if isinstance(rows, dict):
        rows = [rows]
    columns = query["columns"]
    keyed = [{(c.get("text") or c["selector"]): r.get(c["selector"]) if isinstance(r, dict) else None
              for c in columns} for r in rows]
    fields = []
    for key in sorted({k for row in keyed for k in row}, key=lambda k: k.encode("utf-8")):
        values = [row.get(key) for row in keyed]
        first = next((v for v in values if v is not None), None)
        if isinstance(first, (dict, list)):
            fields.append({"name": key, "type": "string",
                           "values": [json.dumps(v, separators=(",", ":")) for v in values]})
            continue
        for c in columns:
            if (c.get("text") or c["selector"]) == key:
                kind = c.get("type") or ""
                fields.append({"name": key, "type": FIELD_TYPES.get(kind) or _inferred(first),
                               "values": [_convert(v, kind) for v in values]})
    return fields


def display_name(field: dict) -> str:
    """The display name transformations key on: config.displayName, else the field's name."""
    return (field.get("config") or {}).get("displayName") or field["name"]


def organize(fields: list[dict], options: dict) -> list[dict]:
    excluded = {k for k, v in (options.get("excludeByName") or {}).items() if v}
    kept = [f for f in fields if display_name(f) not in excluded]
    index = options.get("indexByName") or {}
    if index:
        big = 2 ** 53 - 1
        kept = sorted(kept, key=lambda f: index.get(display_name(f), big)
                      if isinstance(index.get(display_name(f)), int) else big)
    renames = options.get("renameByName") or {}
    return [{**f, "config": {**(f.get("config") or {}), "displayName": renames[display_name(f)]}}
            if renames.get(display_name(f)) else f for f in kept]


def apply_order_transformations(fields: list[dict], transformations: list[dict]) -> list[dict]:
    """The panel's transformations that decide which fields it shows and in what order."""
    for t in transformations:
        if t.get("disabled"):
            continue
        if t["id"] == "organize":
            fields = organize(fields, t["options"])
    return fields


def infinity_request_url(url: str) -> str:
    """The URL Infinity's backend requests for an interpolated query URL (GetQueryURL)."""
    parts = urlsplit(url)
    values: dict[str, list[str]] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        values.setdefault(key, []).append(value)
    query = "&".join(f"{quote_plus(k, safe='')}={quote_plus(v, safe='')}"
                     for k in sorted(values) for v in values[k])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
