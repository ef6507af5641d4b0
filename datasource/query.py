"""The one parsed, validated query both faces produce and the engine runs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping
from zoneinfo import ZoneInfo

from agent_analytics.datasource.catalog import Metric
from agent_analytics.datasource.timerange import Window

MAX_ROWS = 1000  # cap on an unpaginated table (Grafana paginates client-side)


@dataclass(frozen=True)
class Query:
    metric: Metric
    window: Window
    tz: ZoneInfo
    ptd_unit: str | None = None                      # period-to-date unit (d, w, M, Q, y) or None
    whole_unit: str | None = None                    # a whole calendar period (now/M .. now/M) or None
    filters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # only the metric's own
    page: int | None = None                          # None: every row up to MAX_ROWS
    page_size: int = 10
    order_by: str = "cost"

    @property
    def limit(self) -> int:
        return MAX_ROWS if self.page is None else self.page_size

    @property
    def offset(self) -> int:
        return 0 if self.page is None else (self.page - 1) * self.page_size
