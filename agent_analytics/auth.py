"""Bearer tokens: ingest tokens and query tokens are separate sets; a query token may also carry
the llm-analytics permission. Comparisons run in constant time and tokens are never logged."""
from __future__ import annotations

import hmac
from enum import Enum
from typing import Any, Iterable

from flask import current_app, request

from agent_analytics.errors import Permanent


class Permission(str, Enum):
    INGEST = "ingest"        # send telemetry, edit the directory
    QUERY = "query"          # MCP Usage and Security
    LLM_ANALYTICS = "llm"    # LLM Usage and sessions (implies QUERY)
    METRICS = "metrics"      # scrape the service's own Prometheus metrics (query tokens have it too)


class AuthError(Permanent):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, status)

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"} if self.status == 401 else {}


def _matches(token: str, allowed: Iterable[str]) -> bool:
    # Compare against every configured token, without stopping early, in constant time each.
    found = False
    for candidate in allowed:
        if hmac.compare_digest(token.encode(), candidate.encode()):
            found = True
    return found


def bearer_token_of(header: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header's value."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def bearer_token() -> str | None:
    """The request's token (Grafana's custom header sends the same)."""
    return bearer_token_of(request.headers.get("Authorization", ""))


def token_is_known(cfg: Any, token: str | None) -> bool:
    """Whether `token` grants anything at all (before the request says what it is for)."""
    if token is None:
        return bool(cfg.allow_no_auth)
    return any([_matches(token, tokens) for tokens in
                (cfg.ingest_tokens, cfg.query_tokens, cfg.llm_query_tokens, cfg.metrics_tokens)])


def permissions_for(token: str | None) -> set[Permission]:
    cfg = current_app.config["AA"]
    if token is None:
        return set(Permission) if cfg.allow_no_auth else set()
    granted: set[Permission] = set()
    if _matches(token, cfg.ingest_tokens):
        granted.add(Permission.INGEST)
    if _matches(token, cfg.llm_query_tokens):
        granted |= {Permission.QUERY, Permission.LLM_ANALYTICS, Permission.METRICS}
    elif _matches(token, cfg.query_tokens):
        granted |= {Permission.QUERY, Permission.METRICS}
    if _matches(token, cfg.metrics_tokens):
        granted.add(Permission.METRICS)
    return granted


def require(permission: Permission) -> set[Permission]:
    """Raise AuthError (401 without a valid token, 403 without the permission); else the grants."""
    token = bearer_token()
    granted = permissions_for(token)
    if not granted:
        raise AuthError(401, "missing or invalid bearer token")
    if permission not in granted:
        if permission is Permission.LLM_ANALYTICS:
            raise AuthError(403, "this token lacks the llm-analytics permission needed for LLM Usage and sessions")
        raise AuthError(403, f"this token does not grant '{permission.value}' access")
    return granted
