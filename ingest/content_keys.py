"""Content keys: every fact's `source_key` (ingest/rows.py) and every metric series' key are the
SHA-256 of the canonical JSON of their content, so a retried batch collides with what is stored."""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import orjson

# Every content key is the SHA-256 of exactly json.dumps(value, sort_keys=True,
# separators=(",", ":"), default=str): keys must not change between releases, or a batch retried
# across an upgrade would be stored twice.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)
# orjson writes the same text about 3x faster, except: non-ASCII characters and DEL (json escapes them),
# floats between 1e-9 and 1e-4 (json: 1e-05, orjson: 0.00001 or 1e-5), non-finite floats (json:
# NaN, orjson: null), ints beyond 64 bits (orjson refuses). Datetimes and dataclasses go through
# `default=str`, as in json. (Enums would not: orjson writes their value. Facts hold none.)
_ORJSON = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
# Where such a float may be: "0.0000..." or a one-digit negative exponent (json writes e-05).
# A string may match too, and is then written by json: slower, never wrong.
_ONE_DIGIT_EXPONENT = re.compile(rb"e-[0-9](?![0-9])")


def _canonical_bytes(value: Any, finite: bool = True) -> bytes:
    """`canonical_json`'s text, UTF-8 encoded."""
    if finite:
        try:
            out = orjson.dumps(value, default=str, option=_ORJSON)
        except TypeError:
            return _CANONICAL.encode(value).encode()
        # (DEL looked for as a byte value: a tenth of the cost of looking for it as a one-byte string.)
        if out.isascii() and 0x7F not in out and b"0.0000" not in out and not _ONE_DIGIT_EXPONENT.search(out):
            return out
    return _CANONICAL.encode(value).encode()


def canonical_json(value: Any, finite: bool = True) -> str:
    """`value` as json.dumps(value, sort_keys=True, separators=(",", ":"), default=str) writes it,
    for values whose floats are all finite (`finite`; otherwise json itself writes it). This runs
    twice per record: orjson writes it when its text is json's, as seen in the output."""
    return _canonical_bytes(value, finite).decode()


def content_key(kind: str, attributes_json: str = "", raw: bool = False, **content: Any) -> bytes:
    """SHA-256 of the canonical JSON of a fact's content: equal content, equal key. The
    attributes arrive already serialised (the same text is stored in the jsonb column).
    `raw`: the content holds attribute values as received, which may be NaN or infinite."""
    return hashlib.sha256(b"%b\n%b" % (_canonical_bytes([kind, content], finite=not raw),
                                        attributes_json.encode())).digest()
