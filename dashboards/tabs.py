"""The dashboards: MCP Usage, LLM Usage (with sessions), Security, the Session timeline that
stands for the session drawer, and Telemetry (what is arriving). Each function builds one
dashboard for one variant."""
from __future__ import annotations

from typing import Any, Callable

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from agent_analytics import connect
from agent_analytics.config import ATTRIBUTION, Config
from agent_analytics.datasource import budget_forecast, catalog
from agent_analytics.datasource.catalog import LLM_FILTERS, MCP_FILTERS, SESSION_FILTERS, VALUE_FILTERS
from agent_analytics.datasource.filters import FILTERS
from agent_analytics.datasource.query import MAX_ROWS

from . import panels as P
from .variants import MARKER_TAG, Variant

# Fixed uids keep every URL (and the data links between dashboards) stable.
UIDS = {"mcp": "aa-mcp-usage", "llm": "aa-llm-usage", "security": "aa-security", "session": "aa-session-timeline",
        "telemetry": "aa-telemetry", "value": "aa-value"}
SLUGS = {"mcp": "mcp-usage", "llm": "llm-usage", "security": "security", "session": "session-timeline",
         "telemetry": "telemetry", "value": "value"}
TITLES = {"mcp": "MCP Usage", "llm": "LLM Usage", "security": "Security", "session": "Session timeline",
          "telemetry": "Telemetry", "value": "Value"}

# The seed's date-range picker: rolling windows, then period-to-date.
QUICK_RANGES = (
    ("Last 1h", "now-1h", "now"), ("Last 24h", "now-24h", "now"), ("Last 7 days", "now-7d", "now"),
    ("Last 30 days", "now-30d", "now"), ("Last 90 days", "now-90d", "now"),
    ("Today", "now/d", "now"), ("This week", "now/w", "now"), ("This month", "now/M", "now"),
    ("This quarter", "now/Q", "now"), ("This year", "now/y", "now"),
)
DEFAULT_RANGE = ("now-7d", "now")
SESSION_ORDER_VARIABLE = "order_by"
ALL = "$__all"

metric = catalog.BY_ID.__getitem__
# Panel titles in the seed's own words where they differ from the catalog's titles.
SEED_TITLES = {
    "mcp_hourly_distribution": "Hourly distribution (UTC)",
    "llm_total_cost": "Total cost (USD)",
    "llm_top_users_by_cost": "Top users by cost (USD)",
    "llm_top_models_by_cost": "Top models by cost (USD)",
}


def session_url(variant: Variant) -> str:
    return f"/d/{variant.uid(UIDS['session'])}/{SLUGS['session']}"


def value_url(variant: Variant) -> str:
    return f"/d/{variant.uid(UIDS['value'])}/{SLUGS['value']}"


def telemetry_url(variant: Variant) -> str:
    return f"/d/{variant.uid(UIDS['telemetry'])}/{SLUGS['telemetry']}"


def _variable(variant: Variant, name: str) -> db.QueryVariable:
    """The filter's variable, as its declaration (filters.py) says."""
    f = FILTERS[name]
    multi = f.multi
    v = (db.QueryVariable(name).label(f.label).datasource(variant.datasource)
         .query(variant.variable_query(name)).definition(name)
         .multi(multi).include_all(multi)
         .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
         .sort(dm.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC if f.sort_values else dm.VariableSort.DISABLED))
    if multi:
        # allValue "$__all": All means "no filter". Left unset, Grafana would expand All into the
        # list of options, dropping rows without that dimension and previous-period rows of values
        # absent from the current range. The service reads "$__all" (JSON scopedVars) and "All"
        # (what `${var:queryparam}` renders for a custom all value) as no filter.
        v.all_value(ALL).current(dm.VariableOption(selected=True, text="All", value=ALL))
    else:
        # A drill-down link may name a session that is not among the listed (recent) ones.
        v.allow_custom_value(True)
    return v


def _base(variant: Variant, key: str, description: str, variables: tuple[str, ...], tags: list[str]) -> db.Dashboard:
    d = (db.Dashboard(TITLES[key]).uid(variant.uid(UIDS[key])).description(description)
         .tags(tags).timezone("browser").time(*DEFAULT_RANGE).week_start("monday")
         .tooltip(dm.DashboardCursorSync.CROSSHAIR).refresh("").editable()
         .timepicker(db.TimePicker().quick_ranges([db.TimeOption().display(d).from_val(f).to(t)
                                                   for d, f, t in QUICK_RANGES]))
         .variables([_variable(variant, name) for name in variables]))
    return d


def _tab_links(variant: Variant) -> db.DashboardLink:
    # Every tab carries the variant's tag: this link lists the other tabs and carries the time
    # range and the variables along (same names on every tab).
    return (db.DashboardLink("Analytics").type(dm.DashboardLinkType.DASHBOARDS).tags([variant.tab_tag])
            .as_dropdown(False).keep_time(True).include_vars(True).target_blank(False))


class Layout:
    """Places panels left to right, wrapping at 24 columns."""

    def __init__(self, dashboard: db.Dashboard) -> None:
        self.d = dashboard
        self.x = self.y = self.row_h = 0

    def add(self, panel: Any) -> None:
        built = panel.build()
        w, h = built.grid_pos.w, built.grid_pos.h
        if self.x + w > 24:
            self.newline()
        panel.grid_pos(dm.GridPos(x=self.x, y=self.y, w=w, h=h))
        self.d.with_panel(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def newline(self) -> None:
        if self.x:
            self.y += self.row_h
        self.x = self.row_h = 0

    def row(self, title: str) -> None:
        self.newline()
        self.d.with_row(P.row(title).grid_pos(dm.GridPos(x=0, y=self.y, w=24, h=1)))
        self.y += 1


def mcp_usage(variant: Variant, cfg: Config) -> db.Dashboard:
    v = MCP_FILTERS
    d = _base(variant, "mcp", "Tool-call activity across all agents and MCP servers.", v, [MARKER_TAG, variant.tab_tag]).link(_tab_links(variant))
    lay = Layout(d)
    for mid in ("mcp_tool_executions", "mcp_unique_tools", "mcp_active_agent_instances", "mcp_active_users"):
        lay.add(P.stat_panel(variant, metric(mid), v))
    lay.newline()
    lay.add(P.timeseries_panel(variant, metric("mcp_executions_over_time"), v, title="Tool executions over time"))
    lay.add(P.bars_panel(variant, metric("mcp_hourly_distribution"), v,
                         title=SEED_TITLES["mcp_hourly_distribution"]))
    for mid in ("mcp_top_tools", "mcp_top_agent_instances", "mcp_top_users", "mcp_top_mcps"):
        lay.add(P.table_panel(variant, metric(mid), v))
    lay.row("Attribution")
    lay.add(P.table_panel(variant, metric("mcp_executions_by_team"), v, w=24))
    return d


def llm_usage(variant: Variant, cfg: Config) -> db.Dashboard:
    v = LLM_FILTERS
    d = _base(variant, "llm", "Token consumption and cost across your coding agents, from the OpenTelemetry "
              "they send. Needs a token with the llm-analytics permission.", v, [MARKER_TAG, variant.tab_tag]).link(_tab_links(variant))
    # The time range only: the Value figures honour the user and group filters, not provider or model.
    d.link(db.DashboardLink("What the spend bought (Value)").type(dm.DashboardLinkType.LINK).url(value_url(variant))
           .keep_time(True).include_vars(False).icon("dashboard"))
    d.with_variable(db.CustomVariable(SESSION_ORDER_VARIABLE).label("Rank sessions by")
                    .values(",".join(catalog.SESSION_ORDER)).multi(False).include_all(False)
                    .current(dm.VariableOption(selected=True, text="cost", value="cost"))
                    .options([dm.VariableOption(selected=o == "cost", text=o, value=o)
                              for o in catalog.SESSION_ORDER]))
    lay = Layout(d)
    lay.add(P.status_panel(variant, metric("llm_status"), cfg.setup_guide_url, telemetry_url(variant)))
    lay.newline()
    for mid in ("llm_total_tokens", "llm_total_cost", "llm_models_used"):
        # A null cost is usage none of which could be priced: unknown, never $0.
        lay.add(P.stat_panel(variant, metric(mid), v, w=8, title=SEED_TITLES.get(mid),
                             no_value="Unpriced" if mid == "llm_total_cost" else "0"))
    lay.newline()
    lay.add(P.bars_panel(variant, metric("llm_tokens_by_type"), v, w=6))
    lay.add(P.timeseries_panel(variant, metric("llm_tokens_over_time"), v, w=9, title="Tokens over time"))
    lay.add(P.timeseries_panel(variant, metric("llm_cost_over_time"), v, w=9, title="Cost over time (USD)"))
    for mid in ("llm_top_users_by_tokens", "llm_top_users_by_cost", "llm_top_models_by_tokens",
                "llm_top_models_by_cost"):
        lay.add(P.table_panel(variant, metric(mid), v, title=SEED_TITLES.get(mid)))
    _llm_health(lay, variant, v)
    # One table per attribution dimension (config.ATTRIBUTION).
    lay.row("Attribution")
    for dim in ATTRIBUTION:
        lay.add(P.table_panel(variant, metric(f"llm_cost_by_{dim.name}"), v, w=24 // len(ATTRIBUTION)))
    lay.row("Sessions")
    sm = metric("session_metrics")
    lay.add(P.record_panel(variant, sm, v, tuple(c.name for c in sm.columns), h=6,
                           title="Session metrics"))
    link = db.DashboardLink("Open session timeline").url(
        session_url(variant) + '?var-session=${__data.fields["'
        + variant.field_name(_col("sessions_table", "session_id")) + '"]}&${__url_time_range}&${__all_variables}')
    order = "$" + SESSION_ORDER_VARIABLE if variant.key == "json" else "${" + SESSION_ORDER_VARIABLE + "}"
    # The service answers at most MAX_ROWS ranked rows to a dashboard: the panel says so.
    lay.add(P.table_panel(variant, metric("sessions_table"), v, w=24, extras={"order_by": order},
                          title=f"Sessions (ranked by $order_by; the first {MAX_ROWS:,})", links=[link],
                          link_column="session_id",
                          description=(f"{metric('sessions_table').description} The table shows the first "
                                       f"{MAX_ROWS:,} sessions in this order; Session metrics counts them all. "
                                       "Narrow the date range or the filters to reach the others, or page "
                                       "through the JSON API (page, page_size).")))
    _budgets(lay, variant)
    return d


def _budgets(lay: Layout, variant: Variant) -> None:
    """The budgets as of the range's end, whatever the filters: a budget names its own scope."""
    lay.row("Budgets")
    b = metric("llm_budgets")
    lay.add(P.table_panel(variant, b, (), w=24, hidden={"budget", "scope", "unpriced", "method"},
                          no_value="No budgets: set them with the directory API or `agent-analytics directory load`"))
    lay.add(P.text_panel("How the forecast is made", f"Spend to date and forecast in USD, per UTC period, as of "
                         f"the end of the time range. **Forecast:** {budget_forecast.METHOD}. A rate of 0 gives "
                         "no date; before a complete day of usage there is no rate and no forecast. Unpriced tokens are usage no price is known for: spend and forecast leave "
                         "them out. See docs/budgets.md.", h=3))


def _llm_health(lay: Layout, variant: Variant, v: tuple[str, ...]) -> None:
    """LLM Usage's health (API errors, durations, cache) and where the money goes."""
    lay.row("Health: API errors and latency")
    for mid, no_value in (("llm_api_errors", "0"), ("llm_error_rate", "No requests"),
                          ("llm_retries_exhausted", "0"), ("llm_latency_p95", "No durations")):
        lay.add(P.stat_panel(variant, metric(mid), v, no_value=no_value))
    lay.add(P.timeseries_panel(variant, metric("llm_errors_over_time"), v, title="API errors over time"))
    lay.add(P.table_panel(variant, metric("llm_errors_by_status"), v))
    lay.add(P.table_panel(variant, metric("llm_latency_by_model"), v, w=24))
    lay.row("Cache")
    lay.add(P.stat_panel(variant, metric("llm_cache_hit_ratio"), v, h=9, no_value="No input"))
    lay.add(P.timeseries_panel(variant, metric("llm_cache_hit_ratio_over_time"), v, w=9,
                               title="Cache hit ratio over time"))
    lay.add(P.table_panel(variant, metric("llm_cache_hit_ratio_by_user"), v, w=9))
    lay.row("Where the money goes: subagents, effort, speed")
    lay.add(P.table_panel(variant, metric("llm_cost_by_subagent"), v))
    lay.add(P.table_panel(variant, metric("llm_cost_by_effort"), v, w=6))
    lay.add(P.table_panel(variant, metric("llm_cost_by_speed"), v, w=6))


def security(variant: Variant, cfg: Config) -> db.Dashboard:
    v = MCP_FILTERS
    d = _base(variant, "security", "Tool calls blocked by policy: who hits policy boundaries, and which policies "
              "enforce the most; below, what the agents themselves enforce.", v, [MARKER_TAG, variant.tab_tag]).link(_tab_links(variant))
    lay = Layout(d)
    lay.add(P.stat_panel(variant, metric("security_blocked_calls"), v, w=6, h=9))
    lay.add(P.timeseries_panel(variant, metric("security_blocked_over_time"), v, w=18,
                               title="Blocked tool calls over time"))
    for mid in ("security_top_blocked_tools", "security_top_blocked_agent_instances", "security_top_blocked_users",
                "security_top_blocked_mcps"):
        lay.add(P.table_panel(variant, metric(mid), v))
    lay.add(P.table_panel(variant, metric("security_top_policies"), v, w=24))
    lay.row("Agent enforcement")
    for mid in ("security_agent_policy_blocks", "security_hook_blocks", "security_bypass_sessions",
                "security_mcp_connection_failures"):
        lay.add(P.stat_panel(variant, metric(mid), v, w=6))
    lay.add(P.timeseries_panel(variant, metric("security_agent_blocks_over_time"), v, w=24,
                               title="Agent policy blocks over time"))
    for mid in ("security_top_agent_policies", "security_decisions_by_source", "security_permission_modes",
                "security_mcp_connection_failures_top"):
        lay.add(P.table_panel(variant, metric(mid), v))
    lay.add(P.table_panel(variant, metric("security_decisions_by_tool_user"), v, w=24))
    return d


def session_timeline(variant: Variant, cfg: Config) -> db.Dashboard:
    # The session the dashboard is about (its single-valued variable) first, then the baseline's filters.
    filters = tuple(sorted(SESSION_FILTERS, key=lambda name: FILTERS[name].multi))
    d = _base(variant, "session", "One agent session: totals, models, token mix and its activity over time, "
              "compared with the median session for the same date range and filters.", filters,
              [MARKER_TAG, "aa-drilldown"])
    d.link(db.DashboardLink("Back to LLM Usage").type(dm.DashboardLinkType.LINK)
           .url(f"/d/{variant.uid(UIDS['llm'])}/{SLUGS['llm']}").keep_time(True).include_vars(True)
           .icon("dashboard"))
    lay = Layout(d)
    totals = metric("session_totals")
    lay.add(P.record_panel(variant, totals, filters, ("cost", "unpriced_tokens", "tokens", "duration", "requests",
                                                      "models", "agent", "user", "totals_source"), h=5,
                           title="Session totals"))
    lay.newline()
    for p in P.comparison_panels(variant, metric("session_comparison"), filters):
        lay.add(p)
    lay.newline()
    lay.add(P.table_panel(variant, metric("session_models"), filters, w=16, h=8, title="Models"))
    lay.add(P.bars_panel(variant, metric("session_token_mix"), filters, w=8, h=8))
    lay.add(P.table_panel(variant, metric("session_subagents"), filters, w=24, h=8, title="Subagents"))
    # Bars over the session's own buckets: a time series panel would stretch a half-hour session
    # across the whole date range, which stays the comparison baseline's range.
    lay.add(P.bars_panel(variant, metric("session_tokens_over_time"), filters, title="Tokens over time"))
    lay.add(P.bars_panel(variant, metric("session_cumulative_cost"), filters, title="Cumulative cost (USD)"))
    lay.newline()
    lay.add(P.text_panel("About these figures", (
        "The totals come from the agent's telemetry **metrics**; the activity charts come from its telemetry "
        "**logs** (events). An agent that exports only metrics shows totals here but empty activity charts. "
        "Costs are estimates from list prices, not billed amounts.")))
    return d


def telemetry(variant: Variant, cfg: Config) -> db.Dashboard:
    d = _base(variant, "telemetry", "What is arriving: every record the receiver answered, per source and per "
              "agent instance and user, and what became of it (stored, duplicate, ignored, rejected).", (),
              [MARKER_TAG, variant.tab_tag]).link(_tab_links(variant))
    lay = Layout(d)
    lay.add(P.table_panel(variant, metric("telemetry_sources"), (), w=24, hidden={"source_id"}))
    lay.add(P.timeseries_panel(variant, metric("telemetry_records_over_time"), (), w=14, h=13,
                               title="Records over time, by outcome"))
    lay.add(P.text_panel("How to connect", connect.markdown(cfg), w=10, h=13))
    lay.add(P.table_panel(variant, metric("telemetry_senders"), (), w=24))
    lay.add(P.table_panel(variant, metric("telemetry_rejections"), (), w=24))
    lay.row("What to set")
    for target in connect.TARGETS:
        lay.add(P.text_panel(connect.TARGET_TITLES[target], connect.target_markdown(cfg, target), w=8, h=26))
    return d


def value(variant: Variant, cfg: Config) -> db.Dashboard:
    v = VALUE_FILTERS
    d = _base(variant, "value", "What the spend bought: the spend of the agents that report their work (Claude Code) "
              "against the lines, commits, pull requests and edit decisions they report. Needs a token with the "
              "llm-analytics permission.", v, [MARKER_TAG, variant.tab_tag]).link(_tab_links(variant))
    lay = Layout(d)
    for mid in ("value_cost_per_pull_request", "value_cost_per_commit", "value_cost_per_kloc", "value_acceptance_pct"):
        # Null is unknown (nothing to divide by, or spend none of it priced), never 0.
        lay.add(P.stat_panel(variant, metric(mid), v, no_value="Unknown"))
    lay.newline()
    for mid in ("value_spend", "value_pull_requests", "value_commits", "value_lines_added", "value_lines_removed",
                "value_active_seconds"):
        lay.add(P.stat_panel(variant, metric(mid), v, w=4, no_value="Unpriced" if mid == "value_spend" else "0"))
    lay.add(P.timeseries_panel(variant, metric("value_lines_over_time"), v, w=24, title="Lines changed over time"))
    for mid in ("value_by_user", "value_by_group"):
        lay.add(P.table_panel(variant, metric(mid), v, w=24))
    lay.add(P.table_panel(variant, metric("value_by_model"), v))
    lay.add(P.table_panel(variant, metric("value_edits_by_language"), v))
    lay.add(P.text_panel("About these figures", (
        "Each figure attributes **all** of Claude Code's spend in the window (of the users the filters select) to "
        "what it counts: cost per pull request is the spend divided by the pull requests, whatever the spend was "
        "for. Codex sends no such counts: its spend is left out. Commits, pull requests and edit decisions name no "
        "model, so per model only lines of code are shown. Empty means unknown (nothing to divide by, or spend "
        "none of which has a price), never zero; see docs/dashboards.md, Value."), h=4))
    # One table per attribution dimension (config.ATTRIBUTION), team first: the one asked for.
    lay.row("Attribution")
    for dim in sorted(ATTRIBUTION, key=lambda d: d.name != "team"):
        lay.add(P.table_panel(variant, metric(f"value_by_{dim.name}"), v, w=24))
    return d


def _col(metric_id: str, name: str) -> catalog.Column:
    return next(c for c in metric(metric_id).columns if c.name == name)


DASHBOARDS: dict[str, Callable[[Variant, Config], db.Dashboard]] = {
    "mcp-usage": mcp_usage, "llm-usage": llm_usage, "security": security, "session-timeline": session_timeline,
    "telemetry": telemetry, "value": value,
}
