"""Text PostgreSQL can hold: the one check every JSON request's strings pass before they reach a
query (the data source's schemas, the directory's), so that no input becomes a 500 in the driver.

PostgreSQL text cannot contain NUL, and psycopg cannot encode a lone UTF-16 surrogate
("\\ud800", which JSON's escapes can spell and Python's json keeps) as UTF-8.
"""
from __future__ import annotations

from typing import Any, Mapping

from marshmallow import EXCLUDE, Schema, ValidationError, pre_load


def flaw(text: str) -> str | None:
    """What `text` holds that PostgreSQL cannot store or compare, or None."""
    if "\x00" in text:
        return "a NUL character"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "a lone surrogate (not valid Unicode text)"
    return None


def _shown(key: Any) -> str:
    """A key as it can be named in an error (itself escaped when it is the culprit)."""
    return str(key).encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def find_flaw(data: Any, path: str = "") -> tuple[str, str] | None:
    """(dotted path, message) of the first string, value or key, anywhere in JSON-like `data`
    that PostgreSQL cannot hold; None when there is none. Walked without recursion: the data
    may be nested as deeply as the JSON parser allowed."""
    stack: list[tuple[str, Any]] = [(path, data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            what = flaw(value)
            if what:
                return where or "request", f"must not contain {what}"
        elif isinstance(value, Mapping):
            for key, item in reversed(list(value.items())):
                inner = f"{where}.{_shown(key)}" if where else _shown(key)
                if isinstance(key, str) and (what := flaw(key)):
                    return inner, f"a key must not contain {what}"
                stack.append((inner, item))
        elif isinstance(value, (list, tuple)):
            for index in range(len(value) - 1, -1, -1):
                stack.append((f"{where}.{index}" if where else str(index), value[index]))
    return None


class StorableSchema(Schema):
    """The base of every request schema: no string anywhere in the input, value or key, that
    PostgreSQL cannot take (a 400 naming where it is, instead of a 500 from the driver), checked
    once here for every field, used or not."""

    class Meta:
        unknown = EXCLUDE

    @pre_load
    def _storable_text(self, data: Any, **kwargs: Any) -> Any:
        found = find_flaw(data)
        if found:
            raise ValidationError({found[0]: [found[1]]})
        return data
