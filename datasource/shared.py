"""Figures shared by the panels of one dashboard refresh.

Grafana sends every panel of a refresh with the same range (`$__from`, `$__to`). On LLM Usage,
the Session metrics panel and the Sessions table's comparison chips need the same statistics:
percentiles over every session in that range, the tab's largest piece of work. The first request
computes them; one arriving meanwhile waits for it instead of computing them again; both answer
from the same figures. A later refresh asks for another range (`now` has moved), so an entry
only ever serves the refresh it was made for; it is dropped `ttl_s` seconds after it is ready
(5: Grafana's shortest refresh interval, so a fixed range refreshed again is computed afresh),
by a timer as well as by the next request: an idle service holds no figures.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from typing import Any, Callable, Hashable


class Shared:
    def __init__(self, ttl_s: float = 5.0, size: int = 256) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, tuple[float, Future]] = OrderedDict()
        self.computed = 0  # how many times `get` had to compute (for tests and curiosity)
        self._timer: threading.Timer | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _drop_expired(self, now: float) -> None:
        for k in [k for k, (expires, f) in self._entries.items() if expires <= now and f.done()]:
            del self._entries[k]  # (one still being computed stays: others wait for it)

    def _purge(self) -> None:
        """The timer's work: drop what expired; run again while anything is kept."""
        with self._lock:
            self._timer = None
            self._drop_expired(time.monotonic())
            if self._entries:
                self._schedule()

    def _schedule(self) -> None:
        # (with the lock held) one timer at a time, a little after the earliest expiry
        if self._timer is None:
            self._timer = threading.Timer(self.ttl_s + 0.1, self._purge)
            self._timer.daemon = True
            self._timer.start()

    def get(self, key: Hashable, compute: Callable[[], Any], wait_s: float | None = None) -> Any:
        """`compute()`'s result for `key`, computed once while the entry lives. A failure is not
        kept: whoever was waiting gets the error, and the next request computes afresh."""
        now = time.monotonic()
        with self._lock:
            self._drop_expired(now)
            entry = self._entries.get(key)
            owner = entry is None
            future: Future
            if entry is None:
                future = Future()
                self._entries[key] = (now + self.ttl_s, future)
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
            else:
                future = entry[1]
        if owner:
            try:
                value = compute()
                with self._lock:
                    self.computed += 1
                    # Kept from when it is ready: on a slow database a refresh's panels span
                    # longer than the first one took.
                    if self._entries.get(key, (0, None))[1] is future:
                        self._entries[key] = (time.monotonic() + self.ttl_s, future)
                        self._schedule()
                future.set_result(value)
            except BaseException as exc:
                with self._lock:
                    if self._entries.get(key, (0, None))[1] is future:
                        del self._entries[key]
                future.set_exception(exc)
                raise
        return future.result(timeout=wait_s)
