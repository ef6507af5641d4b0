"""The HTTP listeners: waitress servers whose slow or unauthenticated clients cannot lock the
others out (`guarded_server`), a listening socket shared by the receiver processes
(`shared_listener`), and waitress's queue-depth warning as the debug line it is."""
from __future__ import annotations

import logging
import math
import socket
import time
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher
from waitress.utilities import Error as HTTPError

from agent_analytics.auth import bearer_token_of, token_is_known
from agent_analytics.config import Config

log = logging.getLogger(__name__)

CLEANUP_INTERVAL_S = 1  # how often request deadlines and idle connections are checked
SHED_GRACE_S = 1.0  # how long a new connection has to send its request before it may be closed at the limit


class QueueDepthIsNotAWarning(logging.Filter):
    """waitress warns "Task queue depth is N" whenever a request waits for a free thread: with a
    few threads per receiver process (AA_INGEST_THREADS) that is ordinary load, not a fault. Such
    records become DEBUG (shown with `-v`); everything else passes as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and str(record.msg).startswith("Task queue depth"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


QUEUE_LOGGER = "waitress.queue"  # waitress.task.ThreadedTaskDispatcher.queue_logger
if not any(isinstance(f, QueueDepthIsNotAWarning) for f in logging.getLogger(QUEUE_LOGGER).filters):
    logging.getLogger(QUEUE_LOGGER).addFilter(QueueDepthIsNotAWarning())


def shared_listener(host: str, port: int) -> socket.socket:
    """A listening socket other processes can bind too (SO_REUSEPORT): the kernel spreads new
    connections across the receiver processes."""
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(info[4])
    sock.listen(1024)
    return sock


class _Unauthorized(HTTPError):
    code = 401
    reason = "Unauthorized"

    def to_response(self, ident: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
        return (f"{self.code} {self.reason}", [("Content-Type", "text/plain; charset=utf-8"),
                                               ("WWW-Authenticate", "Bearer")], self.body.encode())


class _Parser(HTTPRequestParser):
    """waitress's request parser, refusing a body sent without a token this service knows as
    soon as the headers are read: waitress buffers a whole body before the application sees it
    (in memory up to 512 KiB, then in a temporary file), so without this every client could
    make each of its connections hold that much."""

    tokens: Any = None   # the service's Config (its tokens), or None to read every body
    # waitress's own attributes, as this class uses them
    completed: bool
    headers_finished: bool
    expect_continue: bool
    headers: dict[str, str]
    error: Any
    body_rcv: Any

    def received(self, data: bytes) -> int:
        had_headers = self.headers_finished
        consumed = super().received(data)
        if (self.tokens is not None and not had_headers and self.headers_finished and not self.completed
                and not token_is_known(self.tokens, bearer_token_of(self.headers.get("AUTHORIZATION", "")))):
            self.error = _Unauthorized("missing or invalid bearer token")
            self.body_rcv = None
            self.expect_continue = False
            self.completed = True
            return len(data)   # the body's first bytes too: the connection closes after the 401
        return consumed


class _Channel(HTTPChannel):
    """waitress's connection, remembering when the request it is receiving began: waitress
    itself only closes a connection silent for `channel_timeout`, which a client sending one
    byte every few seconds never is."""

    request_began: float | None = None   # time.time() of the first byte of a request not yet whole
    answer_waiting: float | None = None  # since when (maintenance's clock) an answer has waited unsent

    def received(self, data: bytes) -> bool:
        began = self.request_began if self.request is not None else time.time()
        result = super().received(data)
        # (a request made whole is handed to a thread: the connection no longer waits for it)
        self.request_began = began if self.request is not None else None
        return result

    def waiting_since(self) -> float | None:
        """Since when this connection has waited for its client (a request not yet whole, or
        idle between requests), or None while the application works on one of its requests."""
        if self.requests or self.will_close:
            return None
        return self.request_began if self.request_began is not None else self.last_activity


class _GuardedServer(TcpWSGIServer):
    """One listener of waitress, whose slow clients cannot lock the others out.

    - A request must arrive whole (headers and body) within `request_timeout` of its first byte,
      and an idle connection is closed after as long (waitress's `channel_timeout`).
    - An answer must be taken by its client within as long: a connection whose answer has waited
      unsent that long is closed. (waitress would keep the connection and the answer's buffers
      of a client that reads nothing for ever, and make a request thread wait while more than
      `outbuf_high_watermark` bytes of its answer are unsent.)
    - At `connection_limit` open connections waitress stops accepting, so that a few hundred
      connections that send nothing, or a byte at a time, would leave every new client waiting
      in the backlog. Here the connections that have waited longest for their clients are
      closed instead (a tenth of the limit at a time), and accepting goes on: a legitimate
      request, sent at once, is always the newest, and a connection is given a second to send
      its request before it may be closed. Requests the application is working on are never
      closed.
    """

    channel_class = _Channel
    request_timeout: float = 20.0

    def _channels(self) -> list[_Channel]:
        return [c for c in self._map.values() if isinstance(c, _Channel)]

    def maintenance(self, now: float) -> None:
        super().maintenance(now)
        cutoff = now - self.request_timeout
        for channel in self._channels():
            if channel.request_began is not None and not channel.requests and channel.request_began < cutoff:
                channel.will_close = True
            if not channel.total_outbufs_len:
                channel.answer_waiting = None
            elif channel.answer_waiting is None:
                channel.answer_waiting = now
            elif channel.answer_waiting < cutoff:
                # Closed by the loop once this pass's sockets are polled (the trigger): waitress's
                # `will_close` waits for the socket to take more, which a client reading nothing
                # never lets happen. (Closing also wakes a thread waiting to write.)
                channel.answer_waiting = math.inf
                self.trigger.pull_trigger(channel.handle_close)

    def readable(self) -> bool:
        if self.accepting and len(self._map) >= self.adj.connection_limit:
            self._shed()
        return super().readable()

    def _shed(self) -> None:
        channels = self._channels()
        open_ = len(self._map) - sum(1 for c in channels if c.will_close or c.close_when_flushed)
        excess = open_ - self.adj.connection_limit + max(1, self.adj.connection_limit // 10)
        if excess <= 0:
            return
        # A connection just accepted has not been read yet: when the others are busy (requests
        # being answered cannot be closed), it would be among the few left to close, and a
        # legitimate request sent at once would be cut (a reset) before it was read.
        settled = time.time() - SHED_GRACE_S
        waiting = sorted((since, id(c), c) for c in channels
                         if (since := c.waiting_since()) is not None and since < settled)
        for _, _, channel in waiting[:excess]:
            channel.will_close = True
        if waiting:
            log.warning("%d connections open (limit %d): closed the %d waiting longest for their clients",
                        open_, self.adj.connection_limit, min(excess, len(waiting)))


def _channel_refusing_unknown_tokens(cfg: Config) -> type[_Channel]:
    class Parser(_Parser):
        tokens = cfg

    class Channel(_Channel):
        parser_class = Parser

    return Channel


def guarded_server(app: Any, cfg: Config, **kw: Any) -> MultiSocketServer:
    """waitress's `create_server`, with `_GuardedServer` listeners and the limits of `cfg`
    (AA_MAX_CONNECTIONS, AA_REQUEST_TIMEOUT_S); `sockets=[...]` or `host`/`port` as there."""
    adj = Adjustments(**kw, connection_limit=cfg.max_connections, channel_timeout=cfg.request_timeout_s,
                      cleanup_interval=CLEANUP_INTERVAL_S)
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    socket_map: dict = {}
    listening = []
    given = [(s, (s.family, s.type, s.proto, s.getsockname())) for s in adj.sockets] or \
        [(None, info) for info in adj.listen]
    last = None
    for sock, info in given:
        last = _GuardedServer(app, socket_map, True, sock, dispatcher=dispatcher, adj=adj,
                              bind_socket=sock is None, sockinfo=info)
        last.request_timeout = float(cfg.request_timeout_s)
        if not cfg.allow_no_auth:
            last.channel_class = _channel_refusing_unknown_tokens(cfg)
        listening.append((last.effective_host, last.effective_port))
    assert last is not None, "no address to listen on"
    return MultiSocketServer(socket_map, adj, listening, dispatcher, last.log_info)
