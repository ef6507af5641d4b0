"""Budgets, a kind of the directory: an amount in USD per UTC day, ISO week or calendar month for
a scope, with its owner (the person or team who answers for it). The directory (directory.py)
stores, lists, exports and deletes them like its other kinds; this module says what a budget
document may hold. What a budget has spent and is forecast to spend: datasource/budgets.py.

Scopes: `organisation` (all LLM usage), `user` (one user id, `target`), `group` (the usage of the
group's members as they stand now, `target`), and `attribute` (usage attributed to one value of
an attribution dimension, agent_analytics/config.py's ATTRIBUTION: `attribute` names the
dimension, e.g. team, `target` is the value, e.g. payments).
"""
from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from agent_analytics.config import ATTRIBUTION
from agent_analytics.text import StorableSchema

PERIODS = ("day", "week", "month")
# Each measured by its filters in datasource/budgets.py (SCOPE_FILTERS, TARGETS).
SCOPES = ("organisation", "user", "group", "attribute")
# Larger than any LLM bill, small enough for numeric(18, 6).
MAX_AMOUNT_USD = 1e12
_DIMENSIONS = {d.name for d in ATTRIBUTION}

_KEY = validate.Length(min=1, max=500)


class BudgetSchema(StorableSchema):
    id = fields.String(required=True, validate=_KEY)
    name = fields.String(validate=_KEY)
    scope = fields.String(required=True, validate=validate.OneOf(SCOPES))
    attribute = fields.String(allow_none=True, validate=_KEY)
    target = fields.String(allow_none=True, validate=_KEY)
    period = fields.String(required=True, validate=validate.OneOf(PERIODS))
    amount_usd = fields.Float(required=True, allow_nan=False,
                              validate=validate.Range(min=0, max=MAX_AMOUNT_USD, min_inclusive=False))
    owner = fields.String(required=True, validate=_KEY)

    @validates_schema
    def _scope_fits(self, data: dict[str, Any], **kwargs: Any) -> None:
        scope = data.get("scope")
        if scope == "organisation":
            for name in ("target", "attribute"):
                if data.get(name) is not None:
                    raise ValidationError("an organisation budget names no target or attribute", name)
        elif scope in ("user", "group"):
            if not data.get("target"):
                raise ValidationError(f"a {scope} budget names its {scope} id as target", "target")
            if data.get("attribute") is not None:
                raise ValidationError(f"a {scope} budget names no attribute", "attribute")
        elif scope == "attribute":
            if data.get("attribute") not in _DIMENSIONS:
                raise ValidationError("an attribute budget names its attribution dimension as attribute, one of "
                                      + ", ".join(sorted(_DIMENSIONS)),
                                      "attribute")
            if not data.get("target"):
                raise ValidationError("an attribute budget names the dimension's value as target", "target")

    @post_load
    def _whole(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        # Every column given, so an update from one scope to another leaves nothing of the old one.
        data.setdefault("target", None)
        data.setdefault("attribute", None)
        return data


LIST_SQL = ("SELECT id, name, scope, attribute, target, period, amount_usd::float8 AS amount_usd, owner"
            " FROM budgets ORDER BY id")
