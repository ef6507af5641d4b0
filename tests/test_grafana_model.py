"""The model of Infinity's backend parser (tests/grafana_model.py) reproduces the plugin's own
golden tests and the conversions its source defines (infinity-libs jsonframer v1.3.0
lib/go/jsonframer/json_test.go and testdata/*.jsonc; gframer v1.1.13 lib/go/gframer/field.go)."""
from __future__ import annotations

from tests.grafana_model import infinity_frame, infinity_request_url, organize


def _frame(columns: list[dict], body) -> list[tuple[str, str, list]]:
    query = {"root_selector": "data", "columns": columns}
    return [(f["name"], f["type"], f["values"]) for f in infinity_frame(query, body)]


def test_the_plugins_golden_frame_sorts_the_fields_by_name():
    # json_test.go "with root data and selectors should produce valid frame": columns username
    # (alias user-name) then occupation; the golden frame has occupation, then user-name.
    body = {"meta": {}, "data": [
        {"username": "foo", "age": 1, "height": 123, "isPremium": True, "hobbies": ["reading", "swimming"]},
        {"username": "bar", "age": 2, "height": 123.45, "isPremium": False, "hobbies": ["reading", "swimming"],
         "occupation": "student"}]}
    columns = [{"selector": "username", "text": "user-name"}, {"selector": "occupation"}]
    assert _frame(columns, body) == [("occupation", "string", [None, "student"]),
                                     ("user-name", "string", ["foo", "bar"])]
    # "...for non array object": one object is one row.
    assert _frame(columns, {"data": body["data"][1]}) == [("occupation", "string", ["student"]),
                                                          ("user-name", "string", ["bar"])]


def test_byte_order_puts_uppercase_before_lowercase():
    columns = [{"selector": s, "text": t, "type": "string"} for s, t in
               (("tool", "Tool"), ("mcp", "MCP"), ("executions", "executions"), ("id", "MCP id"))]
    names = [name for name, _, _ in _frame(columns, {"data": [{"tool": "t", "mcp": "m", "executions": 1, "id": "i"}]})]
    assert names == ["MCP", "MCP id", "Tool", "executions"]


def test_declared_types_convert_as_field_go_does():
    rows = [{"b": True, "s": True, "n": "2.5", "t": 1_700_000_000_000, "ts": "1700000000"},
            {"b": "false", "s": 3.0, "n": "x", "t": "1700000000001", "ts": 1_700_000_000},
            {"b": "TRUE", "s": None, "n": 4, "t": None, "ts": None},
            {"b": 1, "s": "text", "n": False, "t": True, "ts": "x"}]
    columns = [{"selector": "b", "type": "boolean"}, {"selector": "s", "type": "string"},
               {"selector": "n", "type": "number"}, {"selector": "t", "type": "timestamp_epoch"},
               {"selector": "ts", "type": "timestamp_epoch_s"}]
    got = {name: (kind, values) for name, kind, values in _frame(columns, {"data": rows})}
    # anyToNullableBool: booleans; a string only when it reads "true" (any case); else null.
    assert got["b"] == ("boolean", [True, None, True, None])
    # anyToNullableString: booleans and numbers printed as Go's %v does.
    assert got["s"] == ("string", ["true", "3", None, "text"])
    # anyToNullableNumber: numbers and numeric strings.
    assert got["n"] == ("number", [2.5, None, 4.0, None])
    # anyToNullableTimestampEpoch(Second): milliseconds (seconds), as numbers or digit strings.
    assert got["t"] == ("time", [1_700_000_000_000, 1_700_000_000_001, None, None])
    assert got["ts"] == ("time", [1_700_000_000_000, 1_700_000_000_000, None, None])


def test_organize_orders_by_index_then_leaves_the_rest_last():
    fields = [{"name": n} for n in ("c", "x", "a", "b")]
    got = organize(fields, {"indexByName": {"a": 0, "b": 1, "c": 2}, "excludeByName": {"x": False}})
    assert [f["name"] for f in got] == ["a", "b", "c", "x"]
    assert [f["name"] for f in organize(fields, {"excludeByName": {"x": True}})] == ["c", "a", "b"]


def test_the_backend_sorts_the_query_and_keeps_each_keys_values_in_order():
    url = "http://s/api/v1/query/m?to=2&from=1&tz=Europe/Paris&from=now%2Fw&to=now&timezone=browser&"
    assert infinity_request_url(url) == \
        "http://s/api/v1/query/m?from=1&from=now%2Fw&timezone=browser&to=2&to=now&tz=Europe%2FParis"
