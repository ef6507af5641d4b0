"""One table of errors to HTTP answers, shared by both faces: 401/403 from auth, 400 naming the
field from validation, 503 for a database that is unreachable or too slow (retry later)."""
from __future__ import annotations

from flask import Blueprint, jsonify
from werkzeug.exceptions import HTTPException

from agent_analytics import db as dbmod
from agent_analytics.auth import AuthError
from agent_analytics.datasource import params


def install(bp: Blueprint) -> None:
    @bp.errorhandler(AuthError)
    def _auth_error(exc: AuthError):
        return jsonify(error=exc.message), exc.status

    @bp.errorhandler(params.RequestError)
    def _request_error(exc: params.RequestError):
        return jsonify(exc.body()), exc.status

    @bp.errorhandler(Exception)
    def _db_error(exc: Exception):
        if isinstance(exc, HTTPException):  # Flask's own 4xx/405 answers pass through unchanged
            return exc
        if dbmod.is_retryable(exc):
            return jsonify(error="database unavailable, retry later"), 503, {"Retry-After": "5"}
        raise exc
