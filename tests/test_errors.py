"""One permanent/retryable hierarchy (agent_analytics/errors.py), without a database: the
classifier's table over real psycopg and pool exceptions and the service's own errors, the
answers it gives, and every app answering an unreachable database the same way (503 with the
configured Retry-After on the receiver, the directory API and the data source)."""
from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from agent_analytics import errors
from agent_analytics.auth import AuthError
from agent_analytics.db import DatabaseDown
from agent_analytics.datasource.params import RequestError
from agent_analytics.ingest import codec, directory, limits
from agent_analytics.ingest.http import TooLarge, UnsupportedMedia

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "otlp"
INGEST = "errors-ingest-token"
QUERY = "errors-query-token"
UNREACHABLE = "postgresql://nobody@127.0.0.1:9/none"  # nothing listens on the discard port

RETRYABLE, PERMANENT, BUG = "retryable", "permanent", "bug"

CASES = [
    # (name, exception, kind, status)
    ("pool timeout", PoolTimeout("no connection in 1 s"), RETRYABLE, 503),
    ("database known down", DatabaseDown("failing fast"), RETRYABLE, 503),
    ("statement timeout", psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
     RETRYABLE, 503),
    ("lock timeout", psycopg.errors.LockNotAvailable("could not obtain lock"), RETRYABLE, 503),
    ("serialization failure", psycopg.errors.SerializationFailure("could not serialize"), RETRYABLE, 503),
    ("deadlock", psycopg.errors.DeadlockDetected("deadlock detected"), RETRYABLE, 503),
    ("admin shutdown", psycopg.errors.AdminShutdown("terminating connection"), RETRYABLE, 503),
    ("starting up", psycopg.errors.CannotConnectNow("the database system is starting up"), RETRYABLE, 503),
    ("too many connections", psycopg.errors.TooManyConnections("too many clients"), RETRYABLE, 503),
    ("connection lost", psycopg.OperationalError("server closed the connection unexpectedly"), RETRYABLE, 503),
    ("explicit retryable", errors.Retryable(), RETRYABLE, 503),
    # An OperationalError that recurs on retry: a value too large for an index row.
    ("program limit", psycopg.errors.ProgramLimitExceeded("index row size exceeds maximum"), BUG, 500),
    ("unique violation", psycopg.errors.UniqueViolation("duplicate key"), BUG, 500),
    ("bad data", psycopg.errors.InvalidTextRepresentation("invalid input syntax"), BUG, 500),
    ("closed connection", psycopg.InterfaceError("the connection is closed"), BUG, 500),
    ("python bug", KeyError("oops"), BUG, 500),
    ("no token", AuthError(401, "missing or invalid bearer token"), PERMANENT, 401),
    ("no permission", AuthError(403, "this token does not grant 'query' access"), PERMANENT, 403),
    ("bad field", RequestError({"page": ["must be >= 1"]}), PERMANENT, 400),
    ("unknown kind", directory.DirectoryError("unknown kind 'x'", status=404), PERMANENT, 404),
    ("bad directory", directory.DirectoryError("invalid directory document", details={"users": ["x"]}),
     PERMANENT, 400),
    ("unreadable body", codec.UnreadableBody("not JSON"), PERMANENT, 400),
    ("too many records", limits.TooMuchWork("records", 10, "AA_MAX_RECORDS"), PERMANENT, 413),
    ("too large", TooLarge(100), PERMANENT, 413),
    ("unsupported media", UnsupportedMedia("unsupported Content-Type 'text/plain'"), PERMANENT, 415),
]


@pytest.mark.parametrize("name, exc, kind, status", CASES, ids=[c[0] for c in CASES])
def test_classify(name, exc, kind, status):
    found = errors.classify(exc)
    assert (found is None) == (kind == BUG)
    assert isinstance(found, errors.Retryable) == (kind == RETRYABLE)
    assert isinstance(found, errors.Permanent) == (kind == PERMANENT)
    assert errors.is_retryable(exc) == (kind == RETRYABLE)
    out = errors.answer(exc, retry_after_s=7)
    if kind == BUG:
        assert out is None
        return
    assert out.status == status
    assert ("Retry-After" in out.headers) == (kind == RETRYABLE)
    if kind == RETRYABLE:
        assert out.headers["Retry-After"] == "7"
        assert out.body == {"error": "database unavailable, retry later"}


def test_permanent_answers_name_what_is_wrong():
    out = errors.answer(RequestError({"targets.0.payload.page": ["must be >= 1"]}), 5)
    assert out.body == {"error": "invalid request: targets.0.payload.page: must be >= 1",
                        "fields": {"targets.0.payload.page": ["must be >= 1"]}}
    out = errors.answer(directory.DirectoryError("invalid directory document", details={"users": ["bad"]}), 5)
    assert out.body == {"error": "invalid directory document", "details": {"users": ["bad"]}}
    out = errors.answer(AuthError(401, "missing or invalid bearer token"), 5)
    assert out.body == {"error": "missing or invalid bearer token"}
    assert out.headers == {"WWW-Authenticate": "Bearer"}
    assert errors.answer(AuthError(403, "no"), 5).headers == {}
    out = errors.answer(TooLarge(1234), 5)
    assert (out.status, out.message) == (413, "body larger than 1234 bytes after decompression")
    # A Retryable may carry its own wait; otherwise the configured one.
    assert errors.answer(errors.Retryable(retry_after_s=30), 5).headers == {"Retry-After": "30"}


def test_every_app_answers_an_unreachable_database_alike():
    """The receiver, the directory API and the data source: 503, the same body, and the
    configured Retry-After (AA_RETRY_AFTER_S), whatever AA_DB_TIMEOUT_S is."""
    from agent_analytics.app import create_app
    from agent_analytics.config import Config

    app = create_app(Config(database_url=UNREACHABLE, ingest_tokens=(INGEST,), query_tokens=(QUERY,),
                            db_timeout_s=1, db_pool_size=1, retry_after_s=7), role="all")
    try:
        c = app.test_client()
        body = (FIXTURES / "codex-0.169.0-logs-1.pb").read_bytes()
        r = c.post("/v1/logs", data=body, headers={"Authorization": f"Bearer {INGEST}",
                                                   "Content-Type": "application/x-protobuf"})
        assert r.status_code == 503 and r.headers["Retry-After"] == "7"
        registry = app.extensions["aa_registry"]
        assert registry.get_sample_value("aa_ingest_requests_total", {"signal": "logs", "status": "503"}) == 1
        for method, path, token in (("get", "/api/v1/directory", INGEST),
                                    ("get", "/api/v1/query/mcp_tool_executions", QUERY),
                                    ("post", "/grafana/query", QUERY)):
            kw = {"json": {"range": {"from": "now-1h", "to": "now"},
                           "targets": [{"target": "mcp_tool_executions"}]}} if method == "post" else {}
            r = getattr(c, method)(path, headers={"Authorization": f"Bearer {token}"}, **kw)
            assert r.status_code == 503, (path, r.status_code, r.get_data(as_text=True))
            assert r.headers["Retry-After"] == "7", path
            assert r.get_json() == {"error": "database unavailable, retry later"}, path
        # Permanent errors keep their statuses, and a 401 says how to authenticate, on every app.
        for path in ("/api/v1/directory", "/api/v1/query/mcp_tool_executions", "/metrics"):
            r = c.get(path)
            assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer", path
            assert r.get_json() == {"error": "missing or invalid bearer token"}, path
        assert c.get("/grafana/query", headers={"Authorization": f"Bearer {QUERY}"}).status_code == 405
        assert c.get("/nothing-here").status_code == 404
    finally:
        app.extensions["aa_db"].close()
