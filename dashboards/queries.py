"""The plugins' query models that need no SDK: the Infinity query on the service's JSON API,
shared by the dashboards and the alert rules (which an installation without the SDK still
provisions)."""
from __future__ import annotations

from typing import Any

from agent_analytics.datasource.catalog import Column, Metric
from agent_analytics.datasource.query import MAX_ROWS

URL_TIME_RANGE = "${__url_time_range}"
TIMEZONE = "${__timezone}"  # Grafana: the dashboard's zone, the browser's IANA zone for "browser"
INFINITY_TYPE = "yesoreyeram-infinity-datasource"
JSON_TYPE = "simpod-json-datasource"
INFINITY_UID = "aa-infinity"
JSON_UID = "aa-json"

# Infinity column types by Grafana field type (its backend parser converts each value to the
# declared type: infinity-libs lib/go/gframer field.go). `timestamp_epoch` reads epoch milliseconds;
# `boolean` keeps JSON true/false (a string other than "true" would become null, so the service
# answers real booleans).
INFINITY_TYPES = {"time": "timestamp_epoch", "number": "number", "string": "string", "boolean": "boolean"}


def field_label(column: Column) -> str:
    """What Grafana shows for a column: the title, else the name."""
    return column.title or column.name


def field_order(metric: Metric) -> dict[str, int]:
    """The metric's columns in their declared order, keyed by the name Grafana displays: the
    "Organize fields" transformation's indexByName. Infinity's backend parser builds its frame from
    the columns sorted by name (infinity-libs lib/go/gframer gframer.go, sortedKeys); the JSON face
    keeps the catalog's order. Both display `field_label`."""
    return {field_label(c): i for i, c in enumerate(metric.columns)}


def infinity_url(metric: Metric, variables: tuple[str, ...], extras: dict[str, str],
                 backend_macros: bool) -> str:
    """`/api/v1/query/<id>?from=..&to=..&var-user=..`: dashboards use the panel macros
    ${__from}/${__to}, `${var:queryparam}` (repeated var-NAME=value, what Grafana puts in its own
    URLs) and ${__url_time_range}; alert rules have no dashboard variables and use the backend
    macros."""
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
    if not backend_macros:
        # The picker's raw range (`from=now%2Fw&to=now&timezone=browser`, Scenes' UrlTimeRangeMacro):
        # a second from/to pair that decides the previous period as the JSON plugin's range.raw
        # does. Empty for a panel with its own relative time or time shift: the window decides.
        parts.append(URL_TIME_RANGE)
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
        "columns": [{"selector": c.name, "text": field_label(c), "type": INFINITY_TYPES[c.type]}
                    for c in metric.columns],
        "filters": [],
    }
