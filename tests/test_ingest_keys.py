"""Content keys must not change between releases (a batch retried across an upgrade would be
stored twice): the canonical JSON they hash is exactly what json.dumps writes, whichever encoder
wrote it."""
from __future__ import annotations

import hashlib
import json
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_analytics.ingest.content_keys import canonical_json, content_key
from agent_analytics.ingest.rows import LlmRequest


def json_dumps(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


finite = st.floats(allow_nan=False, allow_infinity=False)
scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | finite
           | st.floats(min_value=1e-12, max_value=1e-3) | st.text() | st.text(alphabet="e-0123456789.")
           | st.decimals(allow_nan=False, allow_infinity=False))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                      max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(), values, max_size=8))
def test_canonical_json_is_json_dumps(value):
    assert canonical_json(value) == json_dumps(value)
    assert canonical_json([value]) == json_dumps([value])


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(), st.floats() | values, max_size=6))
def test_raw_content_with_nan_and_infinity_is_json_dumps(value):
    assert canonical_json(value, finite=False) == json_dumps(value)


def test_the_floats_and_texts_orjson_writes_otherwise():
    for value in ({"v": 1e-05}, {"v": 2.5e-7}, {"v": 9.99e-5}, {"v": -3e-9}, {"v": 1e16}, {"v": "é"},
                  {"é": 1}, {"v": 2**64}, {"v": [1e-6, {"w": 5e-324}]}, {"v": Decimal("1E-7")},
                  {"model": "claude-3-5-sonnet", "cost": 0.0001}):
        assert canonical_json(value) == json_dumps(value), value


def test_a_request_key_is_the_hash_of_its_json():
    """The key of a request as the first release wrote it (rows stored then keep colliding)."""
    r = LlmRequest(time_ns=1_764_000_000_000_000_000, source="claude_code", session_id="s1", user_id="u@x.io",
                   agent_id="claude-code", provider="anthropic", model="claude-sonnet-4-5", input_tokens=10,
                   output_tokens=5, cache_read_tokens=0, cache_write_tokens=2, reported_cost_usd=Decimal("0.00123"),
                   latency_ms=812.5, attributes={"model": "claude-sonnet-4-5", "cost_usd": 0.00123, "n": 3, "é": "ü"})
    attributes = json_dumps(r.attributes)
    content = json_dumps(["llm_request", {
        "t": r.time_ns, "src": "claude_code", "s": "s1", "u": "u@x.io", "a": "claude-code", "p": "anthropic",
        "m": "claude-sonnet-4-5", "tok": [10, 5, 0, 2], "c": Decimal("0.00123"), "l": 812.5}])
    assert r.attributes_json == attributes
    assert r.source_key == hashlib.sha256((content + "\n" + attributes).encode()).digest()
    assert content_key("series", raw=True, a={"x": float("nan")}) == hashlib.sha256(
        (json_dumps(["series", {"a": {"x": float("nan")}}]) + "\n").encode()).digest()
