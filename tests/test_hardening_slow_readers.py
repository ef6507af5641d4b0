"""A client with a valid token that asks for a large answer and then reads it slowly, or not at
all, is cut AA_REQUEST_TIMEOUT_S after its answer began to wait for it: it holds neither a
request thread (waitress makes a thread wait while more than `outbuf_high_watermark` bytes of an
answer are unsent) nor the answer's buffers and a connection for ever (waitress closes only
connections silent for its channel timeout, and a connection whose client reads nothing is never
flushed, so never closed)."""
from __future__ import annotations

import dataclasses
import socket
import threading
import time

import requests

from agent_analytics.http_server import guarded_server
from tests.harness_support import LLM_TOKEN

# Several megabytes of JSON: the series of 20 targets over 1,999 days (the largest answer a
# Grafana request may ask for), more than the kernel's socket buffers take on loopback.
BIG = {"range": {"from": "2020-01-01T00:00:00Z", "to": "2025-06-22T00:00:00Z"}, "timezone": "UTC",
       "targets": [{"refId": f"A{i}", "target": "llm_cost_over_time"} for i in range(20)]}


def test_a_client_that_does_not_read_its_answer_is_cut_at_the_deadline(app, config):
    cfg = dataclasses.replace(config, request_timeout_s=2)
    listener = socket.create_server(("127.0.0.1", 0))
    # Small kernel buffers on both sides (an accepted socket inherits the listener's), so that
    # most of the answer waits in the service, as a larger one would with the defaults.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    port = listener.getsockname()[1]
    # One request thread, whose answers wait once 64 KiB are unsent (waitress's default: 16 MiB).
    server = guarded_server(app, cfg, sockets=[listener], threads=1, outbuf_high_watermark=65536)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            server.asyncore.loop(timeout=0.1, map=server.map, count=1)

    runner = threading.Thread(target=serve, daemon=True)
    runner.start()
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", port))
    try:
        body = requests.Request("POST", f"http://127.0.0.1:{port}/grafana/query", json=BIG,
                                headers={"Authorization": f"Bearer {LLM_TOKEN}"}).prepare()
        head = f"POST /grafana/query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {LLM_TOKEN}\r\n" \
               f"Content-Type: application/json\r\nContent-Length: {len(body.body)}\r\n\r\n"
        slow.sendall(head.encode() + body.body)
        time.sleep(1)  # its answer is being written
        size = app.test_client().post("/grafana/query", json=BIG, headers={"Authorization": f"Bearer {LLM_TOKEN}"})
        assert size.status_code == 200 and len(size.data) > 512 << 10, len(size.data)
        t0 = time.monotonic()
        r = requests.get(f"http://127.0.0.1:{port}/api/v1/metrics", timeout=30,
                         headers={"Authorization": f"Bearer {LLM_TOKEN}"})
        assert r.status_code == 200 and time.monotonic() - t0 < 10
        # Its connection (and the answer's buffers) gone within the deadline and a cleanup
        # interval, though the client never read (nor closed).
        mine = slow.getsockname()[1]
        deadline = time.monotonic() + 8
        while any(getattr(c, "addr", None) and c.addr[1] == mine for c in list(server.map.values())):
            assert time.monotonic() < deadline, "the connection of a client that reads nothing is kept"
            time.sleep(0.2)
    finally:
        slow.close()
        stop.set()
        runner.join(timeout=10)
        server.close()
