"""What a failure means for the caller, decided in one place (as the OpenTelemetry Collector's
`consumererror.IsPermanent` and its receiver's one error-to-status function do).

Every error the service answers is of one of two kinds:
- `Permanent`: the same request fails again (bad input, no permission, too large): a 4xx whose
  body names what is wrong. The errors that callers raise (AuthError, RequestError,
  DirectoryError, the receiver's UnreadableBody, TooMuchWork...) are Permanent subclasses.
- `Retryable`: the database is unreachable, saturated or too slow: 503 with `Retry-After`
  (AA_RETRY_AFTER_S), and the sender retries, losing nothing.
Anything else is a bug: 500, never retried.

`classify` turns any exception into its kind (database errors through one table, `DATABASE`);
`answer` turns a kind into a status, headers and body; `register(app)` installs the one JSON
handler every app uses. The OTLP receiver renders the same answer as an OTLP Status instead
(ingest/http.py)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg
from flask import Flask, jsonify
from psycopg_pool import PoolTimeout
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = "database unavailable, retry later"


class ServiceError(Exception):
    """An error whose kind the service knows: it is answered, not logged as a bug."""

    status: int = 500
    message: str = ""

    def body(self) -> dict[str, Any]:
        return {"error": self.message}

    def headers(self) -> dict[str, str]:
        return {}


class Permanent(ServiceError):
    """The same request fails again: the caller must change it (4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Retryable(ServiceError):
    """The same request may succeed later: 503 with Retry-After. `retry_after_s` None means the
    configured AA_RETRY_AFTER_S."""

    def __init__(self, message: str = DATABASE_UNAVAILABLE, status: int = 503,
                 retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


# Database errors by kind, the first match deciding. Permanent first: ProgramLimitExceeded (a
# value too large for an index, say) is an OperationalError, but the same request fails again.
# PoolTimeout covers db.DatabaseDown (refused at once while the database is known to be down).
DATABASE: tuple[tuple[tuple[type[BaseException], ...], bool], ...] = (
    ((psycopg.errors.ProgramLimitExceeded,), False),
    ((PoolTimeout,                                   # no connection within AA_DB_TIMEOUT_S
      psycopg.errors.QueryCanceled,                  # statement_timeout
      psycopg.errors.LockNotAvailable,
      psycopg.errors.SerializationFailure,
      psycopg.errors.DeadlockDetected,
      psycopg.errors.AdminShutdown,
      psycopg.errors.CannotConnectNow,
      psycopg.errors.TooManyConnections,
      psycopg.OperationalError), True),              # connection lost, server shutting down...
)


def is_retryable_database_error(exc: BaseException) -> bool:
    """True when the database is unreachable, saturated or slow (retry later); False for errors
    that recur on retry (a bug, bad data)."""
    for kinds, retryable in DATABASE:
        if isinstance(exc, kinds):
            return retryable
    return False


def classify(exc: BaseException) -> ServiceError | None:
    """The kind of `exc`: itself when it is a ServiceError, a Retryable for a database that is
    unavailable, None for anything else (a bug: 500)."""
    if isinstance(exc, ServiceError):
        return exc
    if is_retryable_database_error(exc):
        return Retryable()
    return None


def is_retryable(exc: BaseException) -> bool:
    return isinstance(classify(exc), Retryable)


@dataclass(frozen=True)
class Answer:
    status: int
    message: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def answer(exc: BaseException, retry_after_s: int) -> Answer | None:
    """The HTTP answer to `exc`, or None for an error of no known kind (a bug)."""
    kind = classify(exc)
    if kind is None:
        return None
    headers = dict(kind.headers())
    if isinstance(kind, Retryable):
        headers["Retry-After"] = str(kind.retry_after_s or retry_after_s)
    return Answer(kind.status, kind.message, kind.body(), headers)


def register(app: Flask) -> None:
    """The app's one error handler: known kinds answered as JSON (`{"error": ...}` and what the
    kind adds), Flask's own HTTP errors (404, 405) unchanged, anything else to Flask (a logged 500)."""

    @app.errorhandler(Exception)
    def _answer(exc: Exception):
        if isinstance(exc, HTTPException):
            return exc
        out = answer(exc, app.config["AA"].retry_after_s)
        if out is None:
            raise exc
        if out.status >= 500:
            log.warning("%s refused, database unavailable: %s", app.name, exc.__class__.__name__)
        return jsonify(out.body), out.status, out.headers
