"""Who and what a record is about: the user, the agent, the provider. One rule for every source,
so the same person is one user whether Claude Code, Codex or the gateway reported them."""
from __future__ import annotations

from typing import Any, Mapping

from .values import text

USER_KEYS = ("user.email", "user.account_uuid", "user.account_id", "user.id")


def merged(resource: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    """Resource attributes (OTEL_RESOURCE_ATTRIBUTES) under the record's own: the record wins."""
    return {**resource, **record}


def user_id(attrs: Mapping[str, Any], *extra_keys: str) -> str | None:
    """`user.email`, else `user.account_uuid` (Codex: `user.account_id`), else `user.id`
    (Claude Code's anonymous install hash); `extra_keys` (e.g. the gateway's `enduser.id`)
    come after the email and before the anonymous ids."""
    email = text(attrs, "user.email")
    if email:
        return email.strip()
    return text(attrs, *extra_keys, *USER_KEYS[1:])


def email_of(user: str | None) -> str | None:
    """Users identified by email get it recorded in the directory's email column."""
    return user if user and "@" in user else None
