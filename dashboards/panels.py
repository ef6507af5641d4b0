"""Panel factories: one per kind of metric in the catalog, the same for both variants.

Units, titles and columns come from the catalog (datasource/catalog.py), so a panel cannot
drift from what the service answers."""
from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import barchart, common as cb, dashboard as db, stat, table, text, timeseries
from grafana_foundation_sdk.models import common, dashboard as dm
from grafana_foundation_sdk.models import text as text_model

from agent_analytics.datasource.catalog import Column, Metric

from .variants import Variant, field_label, field_order

PREVIOUS = "Previous period"
# Grafana >= 11.6 regex matcher options are strings like "/.../".
PREVIOUS_MATCHER = "/^Previous period.*/"
DASHED = dm.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})
# Rows a top table shows per page: the panel height is chosen so that Grafana's client-side
# pagination (which fills the panel) shows ten rows of the default cell height.
ROWS_PER_PAGE = 10
TABLE_HEIGHT = 13
ID_COLUMNS = {"user_id", "agent_id", "agent_instance_id", "mcp_server_id", "policy_id"}


TOP_5PCT_BADGE = {"type": "value", "options": {
    "true": {"text": "top 5%", "color": "red", "index": 0},
    "false": {"text": "", "color": "transparent", "index": 1}}}


def organize(metric: Metric) -> dm.DataTransformerConfig:
    """Grafana's "Organize fields" with an explicit index: every panel shows the metric's columns in
    their declared order whatever order the data source answers them in (Infinity's backend parser
    sorts them by name). It runs before any other transformation."""
    return dm.DataTransformerConfig(id_val="organize", options={
        "indexByName": field_order(metric), "excludeByName": {}, "renameByName": {}, "includeByName": {}})


def _prop(id_: str, value: Any) -> dm.DynamicConfigValue:
    return dm.DynamicConfigValue(id_val=id_, value=value)


def _by_name(name: str) -> dm.MatcherConfig:
    return dm.MatcherConfig(id_val="byName", options=name)


def _unit_overrides(panel: Any, variant: Variant, columns: tuple[Column, ...]) -> None:
    """Per-column units and display names (the JSON face also sends them; Infinity cannot)."""
    for c in columns:
        props = []
        if c.unit:
            props.append(_prop("unit", c.unit))
        if variant.key == "json" and c.title:
            props.append(_prop("displayName", c.title))
        if props:
            panel.with_override(_by_name(variant.field_name(c)), props)


def stat_panel(variant: Variant, metric: Metric, variables: tuple[str, ...], w: int = 6, h: int = 5,
               title: str | None = None, no_value: str = "0") -> stat.Panel:
    """A headline figure with the previous period and the change against it, and any other
    number the metric answers beside them in its own unit. `no_value`: what a null value means."""
    change = next(c for c in metric.columns if c.name == "change_pct")
    previous = next(c for c in metric.columns if c.name == "previous")
    p = (stat.Panel().title(title or metric.title).description(metric.description + " Beside it: the same figure for the "
                                                      "equivalent preceding window (Today, This week...: the previous "
                                                      "period to the same point; other ranges: the same length just "
                                                      "before), and the change in %.")
         .datasource(variant.datasource).with_target(variant.query(metric, variables=variables))
         .with_transformation(organize(metric))
         .unit(metric.unit or "short").span(w).height(h)
         .reduce_options(cb.ReduceDataOptions().values(False).calcs(["lastNotNull"]).fields(""))
         .text_mode(common.BigValueTextMode.VALUE_AND_NAME).graph_mode(common.BigValueGraphMode.NONE)
         .orientation(common.VizOrientation.HORIZONTAL).color_mode(common.BigValueColorMode.VALUE)
         .no_value(no_value))
    p.with_override(_by_name(variant.field_name(previous)),
                    [_prop("color", {"mode": "fixed", "fixedColor": "text"})]
                    + ([_prop("displayName", PREVIOUS)] if variant.key == "json" else []))
    p.with_override(_by_name(variant.field_name(change)),
                    [_prop("unit", "percent"), _prop("decimals", 1),
                     _prop("displayName", "Change vs previous period"),
                     _prop("color", {"mode": "fixed", "fixedColor": "blue"})])
    for c in metric.columns:
        if c.type == "number" and c.name not in ("value", "previous", "change_pct"):
            p.with_override(_by_name(variant.field_name(c)),
                            [_prop("unit", c.unit or "short"), _prop("displayName", c.title or c.name),
                             _prop("color", {"mode": "fixed", "fixedColor": "orange"})])
    return p


def timeseries_panel(variant: Variant, metric: Metric, variables: tuple[str, ...], w: int = 12,
                     h: int = 9, title: str | None = None) -> timeseries.Panel:
    """A line chart; the 'Previous period' series (when the metric has one) is dashed."""
    p = (timeseries.Panel().title(title or metric.title).description(metric.description)
         .datasource(variant.datasource).with_target(variant.query(metric, variables=variables))
         .with_transformation(organize(metric))
         .unit(metric.unit or "short").span(w).height(h)
         .line_width(2).fill_opacity(10).show_points(common.VisibilityMode.NEVER)
         .span_nulls(False).axis_soft_min(0)
         .legend(cb.VizLegendOptions().show_legend(True).display_mode(common.LegendDisplayMode.LIST)
                 .placement(common.LegendPlacement.BOTTOM))
         .tooltip(cb.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.NONE)))
    if any(c.name == "previous" for c in metric.columns):
        p.override_by_regexp(PREVIOUS_MATCHER, [DASHED, _prop("color", {"mode": "fixed", "fixedColor": "text"})])
    _unit_overrides(p, variant, tuple(c for c in metric.columns if c.type != "time"))
    return p


def bars_panel(variant: Variant, metric: Metric, variables: tuple[str, ...], w: int = 12, h: int = 9,
               title: str | None = None) -> barchart.Panel:
    """Bars by category (hour of day in UTC, token type), or by bucket over a session's lifespan:
    a bar chart's x axis comes from the data, not from the dashboard's time range."""
    category, measure = metric.columns[0], metric.columns[1]
    p = (barchart.Panel().title(title or metric.title).description(metric.description)
         .datasource(variant.datasource).with_target(variant.query(metric, variables=variables))
         .with_transformation(organize(metric))
         .unit(measure.unit or metric.unit or "short").span(w).height(h)
         .x_field(variant.field_name(category)).show_value(common.VisibilityMode.AUTO)
         .legend(cb.VizLegendOptions().show_legend(False).display_mode(common.LegendDisplayMode.LIST)
                 .placement(common.LegendPlacement.BOTTOM)))
    if category.type == "number":
        # The hour of day is a category, not a quantity: bar charts need a string x field.
        p.with_transformation(dm.DataTransformerConfig(
            id_val="convertFieldType",
            options={"conversions": [{"targetField": variant.field_name(category), "destinationType": "string"}],
                     "fields": {}}))
    _unit_overrides(p, variant, (measure,))
    return p


def table_panel(variant: Variant, metric: Metric, variables: tuple[str, ...], w: int = 12,
                h: int = TABLE_HEIGHT, extras: dict[str, str] | None = None, title: str | None = None,
                links: list[db.DashboardLink] | None = None, link_column: str | None = None,
                hidden: set[str] | None = None, description: str | None = None,
                no_value: str = "No data for this range and these filters") -> table.Panel:
    """A ranked table, paginated 10 rows per page; id columns hidden (names shown instead)."""
    # No page parameter: the service answers every ranked row (up to its cap) and Grafana
    # paginates them client-side, 10 per page.
    extras = dict(extras or {})
    p = (table.Panel().title(title or metric.title).description(description or metric.description)
         .datasource(variant.datasource).with_target(variant.query(metric, variables=variables, extras=extras))
         .with_transformation(organize(metric))
         .span(w).height(h).cell_height(common.TableCellHeight.SM)
         .footer(cb.TableFooterOptions().show(False).reducer([]).enable_pagination(True))
         .no_value(no_value))
    _unit_overrides(p, variant, metric.columns)
    for c in metric.columns:
        if c.name.endswith("top_5pct"):
            p.with_override(_by_name(variant.field_name(c)), [_prop("mappings", [TOP_5PCT_BADGE]),
                                                             _prop("custom.cellOptions", {"type": "color-text"})])
        if c.name in ID_COLUMNS or c.name in (hidden or set()):
            p.with_override(_by_name(variant.field_name(c)), [_prop("custom.hidden", True)])
    if links and link_column:
        col = next(c for c in metric.columns if c.name == link_column)
        p.with_override(_by_name(variant.field_name(col)),
                        [_prop("links", [_link_json(l) for l in links])])
    return p


def _link_json(link: db.DashboardLink) -> dict[str, Any]:
    built = link.build()
    return {"title": built.title, "url": built.url, "targetBlank": False}


def record_panel(variant: Variant, metric: Metric, variables: tuple[str, ...], fields: tuple[str, ...],
                 w: int = 24, h: int = 5, title: str | None = None) -> stat.Panel:
    """A row of figures from a one-row record (session metrics, session totals)."""
    chosen = tuple(c for c in metric.columns if c.name in fields)
    # Match either the field name or its display name: the two variants name fields differently.
    names = sorted({variant.field_name(c) for c in chosen} | {field_label(c) for c in chosen})
    pattern = "/^(" + "|".join(_regex_escape(n) for n in names) + ")$/"
    p = (stat.Panel().title(title or metric.title).description(metric.description)
         .datasource(variant.datasource).with_target(variant.query(metric, variables=variables))
         .with_transformation(organize(metric))
         .span(w).height(h)
         .reduce_options(cb.ReduceDataOptions().values(False).calcs(["lastNotNull"]).fields(pattern))
         .text_mode(common.BigValueTextMode.VALUE_AND_NAME).graph_mode(common.BigValueGraphMode.NONE)
         .color_mode(common.BigValueColorMode.NONE).orientation(common.VizOrientation.VERTICAL)
         .no_value("-"))
    _unit_overrides(p, variant, chosen)
    return p


def _regex_escape(s: str) -> str:
    out = []
    for ch in s:
        out.append("\\" + ch if ch in r"\^$.|?*+()[]{}/" else ch)
    return "".join(out)


def comparison_panels(variant: Variant, metric: Metric, variables: tuple[str, ...]) -> list[stat.Panel]:
    """The drawer's comparison chips: '2.1× median' per dimension, with a 'top 5%' badge.

    A dimension without a baseline (ratio null) is filtered out, so its chip is hidden rather
    than showing a meaningless ratio."""
    cols = {c.name: c for c in metric.columns}
    dimension, ratio, top = cols["dimension"], cols["ratio"], cols["top_5pct"]
    without_baseline = dm.DataTransformerConfig(id_val="filterByValue", options={
        "type": "exclude", "match": "any",
        "filters": [{"fieldName": variant.field_name(ratio), "config": {"id": "isNull", "options": {}}}]})
    chips = (stat.Panel().title("Compared with the median session")
             .description("This session against the median session for the current date range and filters "
                          "(cost, tokens, duration, requests). A chip is hidden when there is no baseline, or when this "
                          "session's value is unknown (a session that sent metrics only has no request count).")
             .datasource(variant.datasource).with_target(variant.query(metric, variables=variables))
             .with_transformation(organize(metric)).with_transformation(without_baseline)
             .span(16).height(5)
             .reduce_options(cb.ReduceDataOptions().values(True).calcs([])
                             .fields("/^" + _regex_escape(variant.field_name(ratio)) + "$/"))
             .decimals(1)
             .text_mode(common.BigValueTextMode.VALUE_AND_NAME).graph_mode(common.BigValueGraphMode.NONE)
             .color_mode(common.BigValueColorMode.BACKGROUND).orientation(common.VizOrientation.VERTICAL)
             .thresholds(db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps([
                 dm.Threshold(value=None, color="green"), dm.Threshold(value=1.5, color="orange"),
                 dm.Threshold(value=3, color="red")]))
             .no_value("No baseline for this filter set"))
    badges = (stat.Panel().title("Top 5%")
              .description("Flagged when this session is in the top 5% of sessions for that dimension.")
              .datasource(variant.datasource).with_target(variant.query(metric, variables=variables))
              .with_transformation(organize(metric)).with_transformation(without_baseline)
              .span(8).height(5)
              .reduce_options(cb.ReduceDataOptions().values(True).calcs([])
                              .fields("/^" + _regex_escape(variant.field_name(top)) + "$/"))
              .mappings([dm.ValueMap(options={
                  "true": dm.ValueMappingResult(text="top 5%", color="red", index=0),
                  "false": dm.ValueMappingResult(text="typical", color="transparent", index=1)})])
              .text_mode(common.BigValueTextMode.VALUE_AND_NAME).graph_mode(common.BigValueGraphMode.NONE)
              .color_mode(common.BigValueColorMode.BACKGROUND).orientation(common.VizOrientation.VERTICAL)
              .no_value(""))
    # Names and unit as overrides on the shown field: they take precedence over the field's own
    # config, which the JSON face's frame fills (displayName "ratio", unit "suffix:×").
    chip_name = _prop("displayName", "${__data.fields." + variant.field_name(dimension) + "}")
    chips.with_override(_by_name(variant.field_name(ratio)), [chip_name, _prop("unit", "suffix:× median")])
    badges.with_override(_by_name(variant.field_name(top)), [chip_name])
    return [chips, badges]


def status_panel(variant: Variant, metric: Metric, guide_url: str, telemetry_url: str) -> stat.Panel:
    """The LLM Usage empty state: the service's message, linking to the Telemetry dashboard (what
    is arriving) and the OpenTelemetry guide."""
    cols = {c.name: c for c in metric.columns}
    message, setup_url = cols["message"], cols["setup_url"]
    return (stat.Panel().title("LLM telemetry")
            .description("Until your agents send OpenTelemetry this tab is empty: the Telemetry page shows what "
                         "is arriving, and the OpenTelemetry guide how to connect Claude Code and Codex (per "
                         "machine or org-wide).")
            .datasource(variant.datasource).with_target(variant.query(metric))
            .with_transformation(organize(metric))
            .span(24).height(3)
            .reduce_options(cb.ReduceDataOptions().values(False).calcs(["lastNotNull"])
                            .fields("/^" + _regex_escape(variant.field_name(message)) + "$/"))
            .text_mode(common.BigValueTextMode.VALUE).graph_mode(common.BigValueGraphMode.NONE)
            .color_mode(common.BigValueColorMode.VALUE).justify_mode(common.BigValueJustifyMode.CENTER)
            # The service's message is empty once telemetry arrives: say so rather than show nothing.
            .mappings([dm.SpecialValueMap(options=dm.DashboardSpecialValueMapOptions(
                match=dm.SpecialValueMatch.EMPTY,
                result=dm.ValueMappingResult(text="Receiving telemetry from your agents", color="green", index=0)))])
            .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color("orange"))
            .data_links([db.DashboardLink("Open the Telemetry page: what is arriving").url(telemetry_url)
                         .target_blank(False),
                         db.DashboardLink("Open the OpenTelemetry guide")
                         .url("${__data.fields." + variant.field_name(setup_url) + "}").target_blank(True),
                         db.DashboardLink("OpenTelemetry guide (documentation)").url(guide_url).target_blank(True)])
            .no_value("No LLM telemetry yet: see the Telemetry page and the OpenTelemetry guide"))


def text_panel(title: str, content: str, w: int = 24, h: int = 3) -> text.Panel:
    return text.Panel().title(title).content(content).mode(text_model.TextMode.MARKDOWN).span(w).height(h)


def row(title: str) -> db.Row:
    return db.Row(title)
