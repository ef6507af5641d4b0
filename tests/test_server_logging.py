"""waitress's "Task queue depth" warnings: a request waiting for a free thread is ordinary load
for a receiver with two threads, so the service logs it at DEBUG, not as a warning."""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from waitress.server import create_server

import agent_analytics.server  # noqa: F401 - the service's logging set-up comes with it
from agent_analytics.cluster import free_port


def _ordinary_load() -> None:
    """Four requests at once at a one-thread waitress: the first is held until the other three
    wait in its queue (however slowly the machine sends them)."""
    release = threading.Event()

    def held_app(environ, start_response):
        release.wait(30)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    server = create_server(held_app, host="127.0.0.1", port=free_port(), map={}, threads=1,
                           asyncore_use_poll=True)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.effective_port}/"
        with ThreadPoolExecutor(4) as pool:
            # Each connection closes with its answer: a kept-alive one would hold the server's
            # loop (and the join below) for its whole timeout.
            answers = [pool.submit(requests.get, url, headers={"Connection": "close"}, timeout=60)
                       for _ in range(4)]
            deadline = time.monotonic() + 30
            while len(server.task_dispatcher.queue) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            release.set()
            assert [a.result().status_code for a in answers] == [200] * 4
    finally:
        release.set()
        server.task_dispatcher.shutdown(cancel_pending=False, timeout=5)
        # Closed in the loop's own thread, which the trigger wakes (poll waits up to a second).
        server.trigger.pull_trigger(server.close)
        thread.join(timeout=5)


def _queue_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "waitress.queue"]


def test_queue_depth_is_debug_not_warning(caplog):
    with caplog.at_level(logging.DEBUG):
        _ordinary_load()
    seen = _queue_records(caplog)
    assert seen and all(r.getMessage().startswith("Task queue depth is ") for r in seen)  # the load queued
    assert {r.levelname for r in seen} == {"DEBUG"}

    caplog.clear()
    with caplog.at_level(logging.INFO):  # the service's default level: not shown at all
        _ordinary_load()
    assert _queue_records(caplog) == []


def test_other_waitress_queue_records_pass_unchanged(caplog):
    with caplog.at_level(logging.INFO):
        logging.getLogger("waitress.queue").warning("something else")
    assert [(r.levelname, r.getMessage()) for r in _queue_records(caplog)] == [("WARNING", "something else")]
