"""The two data source variants of every dashboard: one definition, two query shapes.

- Infinity (`yesoreyeram-infinity-datasource`, backend parser): GET /api/v1/query/<metric> on the
  service's plain JSON API, rows under `rows`. Provisioned by default: a backend plugin, so the
  same query shape also drives alert rules.
- JSON (`simpod-json-datasource`): POST /grafana/query with `target` = metric id; the service
  reads the dashboard variables from `scopedVars`, so a payload only carries extras (order_by).

The SDK has no builders for either plugin's query, so each is a `cog.variants.Dataquery`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common

from agent_analytics.datasource.catalog import Column, Metric

from .queries import (INFINITY_TYPE, INFINITY_UID, JSON_TYPE, JSON_UID, TIMEZONE, field_label, field_order,  # noqa: F401
                      infinity_model, infinity_url)

class RawQuery(cogvariants.Dataquery):
    """A data query serialised exactly as the plugin stores it in dashboard JSON."""

    def __init__(self, model: dict[str, Any]) -> None:
        self.model = model

    def to_json(self) -> dict[str, Any]:
        return self.model

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RawQuery":
        return cls(dict(data))


class RawQueryBuilder(cogbuilder.Builder[RawQuery]):
    def __init__(self, model: dict[str, Any]) -> None:
        self._query = RawQuery(model)

    def build(self) -> RawQuery:
        return self._query


@dataclass(frozen=True)
class Variant:
    """Everything that differs between the two data sources."""
    key: str                 # directory name and uid suffix
    plugin_type: str
    datasource_uid: str
    uid_suffix: str          # dashboards of both variants may be provisioned side by side
    tab_tag: str             # the tabs of this variant carry it; the links between tabs follow it

    @property
    def datasource(self) -> common.DataSourceRef:
        return common.DataSourceRef(type_val=self.plugin_type, uid=self.datasource_uid)

    def datasource_json(self) -> dict[str, str]:
        return {"type": self.plugin_type, "uid": self.datasource_uid}

    def uid(self, base: str) -> str:
        return base + self.uid_suffix

    # --- fields -----------------------------------------------------------------------------
    def field_name(self, column: Column) -> str:
        """The field name a column gets in the frame Grafana builds from the answer.

        The JSON face answers data frames whose fields keep the column name (the title is
        config.displayName); Infinity names each field after the column's `text`, the title."""
        return column.name if self.key == "json" else field_label(column)

    # --- queries ----------------------------------------------------------------------------
    def query(self, metric: Metric, ref_id: str = "A", variables: tuple[str, ...] = (),
              extras: dict[str, str] | None = None, hide: bool = False) -> RawQueryBuilder:
        extras = dict(extras or {})
        if self.key == "json":
            extras.setdefault("tz", TIMEZONE)
            model: dict[str, Any] = {
                "refId": ref_id,
                "datasource": self.datasource_json(),
                # Code mode: the plugin replaces each variable by its JSON value inside the string,
                # then parses it. (Builder mode formats values as regex, which would turn the
                # zone "Europe/Paris" into "Europe\/Paris".) The filters travel in scopedVars.
                "editorMode": "code",
                "target": metric.id,
                "payload": json.dumps(extras, sort_keys=True),
            }
        else:
            model = infinity_model(metric, ref_id, self.datasource_json(),
                                   infinity_url(metric, variables, extras, backend_macros=False))
        if hide:
            model["hide"] = True
        return RawQueryBuilder(model)

    def variable_query(self, name: str) -> dict[str, Any]:
        if self.key == "json":
            # POST /variable {"payload": {"target": name}}: the plugin's "string" format.
            return {"query": name, "format": "string"}
        return {
            "queryType": "infinity",
            "refId": "variable",
            "query": "",
            "infinityQuery": {
                "refId": "variable",
                "type": "json",
                "source": "url",
                "parser": "backend",
                "format": "table",
                # The range matters to `session` (the sessions in it); the others ignore it.
                "url": f"/api/v1/variables/{name}?from=${{__from}}&to=${{__to}}",
                "url_options": {"method": "GET", "data": ""},
                "root_selector": "rows",
                # Grafana takes a variable's options from the fields named __text and __value.
                "columns": [{"selector": "text", "text": "__text", "type": "string"},
                            {"selector": "value", "text": "__value", "type": "string"}],
                "filters": [],
            },
        }


MARKER_TAG = "agent-analytics"  # on every dashboard we make
INFINITY = Variant("infinity", INFINITY_TYPE, INFINITY_UID, "", "aa-tab-infinity")
JSON = Variant("json", JSON_TYPE, JSON_UID, "-json", "aa-tab-json")
VARIANTS = (INFINITY, JSON)
