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
from agent_analytics.datasource.query import MAX_ROWS

TIMEZONE = "${__timezone}"  # Grafana: the dashboard's zone, the browser's IANA zone for "browser"
INFINITY_TYPE = "yesoreyeram-infinity-datasource"
JSON_TYPE = "simpod-json-datasource"
INFINITY_UID = "aa-infinity"
JSON_UID = "aa-json"

# Infinity column types by Grafana field type. Infinity has no boolean type: booleans arrive as
# the strings "true"/"false", which value mappings keyed "true" match either way.
_INFINITY_TYPES = {"time": "timestamp_epoch", "number": "number", "string": "string", "boolean": "string"}


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


def field_label(column: Column) -> str:
    """What Grafana shows for a column: the title, else the name."""
    return column.title or column.name


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


def infinity_url(metric: Metric, variables: tuple[str, ...], extras: dict[str, str],
                 backend_macros: bool) -> str:
    """`/api/v1/query/<id>?from=..&to=..&var-user=..`: dashboards use the panel macros
    ${__from}/${__to} and `${var:queryparam}` (repeated var-NAME=value, what Grafana puts in
    its own URLs); alert rules have no dashboard variables and use the backend macros."""
    if backend_macros:
        parts = ["from=${__timeFrom}", "to=${__timeTo}"]
    else:
        # The viewer's zone (the dashboards use the browser's): daily buckets start at local midnight.
        parts = ["from=${__from}", "to=${__to}", f"tz={TIMEZONE}"]
    if metric.paged:
        # The JSON API pages by default; ask for every ranked row and let Grafana paginate.
        parts.append(f"page_size={MAX_ROWS}")
    parts += [f"{k}={v}" for k, v in extras.items()]
    parts += [f"${{{name}:queryparam}}" for name in variables if name in metric.filters]
    return f"/api/v1/query/{metric.id}?" + "&".join(parts)


def infinity_model(metric: Metric, ref_id: str, datasource: dict[str, str], url: str) -> dict[str, Any]:
    return {
        "refId": ref_id,
        "datasource": datasource,
        "type": "json",
        "source": "url",
        "parser": "backend",
        # A frame with a time field is a time series to Grafana; "table" keeps every column.
        "format": "table",
        "url": url,
        "url_options": {"method": "GET", "data": ""},
        "root_selector": "rows",
        "columns": [{"selector": c.name, "text": field_label(c), "type": _INFINITY_TYPES[c.type]}
                    for c in metric.columns],
        "filters": [],
    }


MARKER_TAG = "agent-analytics"  # on every dashboard we make
INFINITY = Variant("infinity", INFINITY_TYPE, INFINITY_UID, "", "aa-tab-infinity")
JSON = Variant("json", JSON_TYPE, JSON_UID, "-json", "aa-tab-json")
VARIANTS = (INFINITY, JSON)
