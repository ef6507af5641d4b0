"""What every query builder answers: plain rows, a total for paged lists, and metadata."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Result:
    rows: list[dict[str, Any]]
    total: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def pct_change(value: Any, previous: Any) -> float | None:
    if value is None or previous in (None, 0):
        return None
    return (float(value) - float(previous)) / float(previous) * 100.0
