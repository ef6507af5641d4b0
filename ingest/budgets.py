"""Budgets, a kind of the directory: an amount in USD per UTC day, ISO week or calendar month for
a scope, with its owner (the person or team who answers for it). The directory (directory.py)
stores, lists, exports and deletes them like its other kinds; this module says what a budget
document may hold. What a budget has spent and is forecast to spend: datasource/budgets.py.

Scopes: `organisation` (all LLM usage), `user` (one user id, `target`), `group` (the usage of the
group's members as they stand now, `target`), and `attribute` (usage carrying a resource
attribute's value: `attribute` names it, e.g. team.id, `target` is the value). The attribute
scope is declared in the schema (sql/migrations/0016_budgets.sql) and refused here until the
usage aggregates carry resource attributes: a budget whose spend cannot be measured would show
a spend of 0, which is not true.
"""
from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from agent_analytics.text import StorableSchema

PERIODS = ("day", "week", "month")
SCOPES = ("organisation", "user", "group", "attribute")
# The scopes whose spend this installation can measure (datasource/budgets.py SCOPE_FILTERS).
MEASURED_SCOPES = ("organisation", "user", "group")
# Larger than any LLM bill, small enough for numeric(18, 6).
MAX_AMOUNT_USD = 1e12

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
        if scope not in MEASURED_SCOPES:
            raise ValidationError("budgets on a resource attribute need usage attributed by resource "
                                  "attributes, which this installation does not store yet; use organisation, "
                                  "user or group", "scope")
        if scope == "organisation":
            for name in ("target", "attribute"):
                if data.get(name) is not None:
                    raise ValidationError("an organisation budget names no target or attribute", name)
        elif scope in ("user", "group"):
            if not data.get("target"):
                raise ValidationError(f"a {scope} budget names its {scope} id as target", "target")
            if data.get("attribute") is not None:
                raise ValidationError(f"a {scope} budget names no attribute", "attribute")

    @post_load
    def _whole(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        # Every column given, so an update from one scope to another leaves nothing of the old one.
        data.setdefault("target", None)
        data.setdefault("attribute", None)
        return data


LIST_SQL = ("SELECT id, name, scope, attribute, target, period, amount_usd::float8 AS amount_usd, owner"
            " FROM budgets ORDER BY id")
