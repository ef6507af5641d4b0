// Resolves dashboard time ranges with Grafana's own date math (@grafana/data) the way Scenes does
// for a dashboard (scenes packages/scenes/src/utils/evaluateTimeRange.ts: to, then from, with one
// `now`, the dashboard's zone and week start), and what each macro then becomes:
// - ${__from} / ${__to}: the instants in epoch ms (scenes variables/macros/timeMacros.ts,
//   TimeFromAndToMacro);
// - ${__url_time_range}: urlUtil.toUrlParams({from, to, timezone}) of the dashboard's time range
//   (timeMacros.ts, UrlTimeRangeMacro, with SceneTimeRange.getUrlState); a panel with its own time
//   override has a PanelTimeRange, which has no URL state: the macro is empty;
// - the JSON plugin's range/rangeRaw: the instants and the raw range (a time-shifted panel's raw
//   range is its shifted instants: grafana public/app/features/dashboard-scene/scene/
//   panel-timerange/PanelTimeRange.tsx, getTimeOverride).
// stdin: [{"from", "to", "timeZone", "weekStart", "now": epoch ms, "timeFrom"?, "timeShift"?}]
// stdout: [{"from_ms", "to_ms", "raw": {"from", "to"}, "url_time_range"}]
'use strict';
const data = require('@grafana/data');

function resolve(c) {
  data.setWeekStart(c.weekStart);
  const options = (roundUp) => ({ roundUp, timezone: c.timeZone, fiscalYearStartMonth: 0, now: c.now });
  let to = data.dateMath.toDateTime(c.to, options(true));
  let from = data.dateMath.toDateTime(c.from, options(false));
  let raw = { from: c.from, to: c.to };
  let urlTimeRange = data.urlUtil.toUrlParams({ from: c.from, to: c.to, timezone: c.dashboardTimeZone || c.timeZone });
  if (c.timeFrom && data.rangeUtil.isRelativeTimeRange(raw)) {
    const info = data.rangeUtil.describeTextRange(c.timeFrom);
    from = data.dateMath.parse(info.from, undefined, c.timeZone);
    to = data.dateMath.parse(info.to, undefined, c.timeZone);
    raw = { from: info.from, to: info.to };
  }
  if (c.timeShift) {
    from = data.dateMath.parseDateMath('-' + c.timeShift, from, false);
    to = data.dateMath.parseDateMath('-' + c.timeShift, to, true);
    raw = { from: from.toISOString(), to: to.toISOString() };
  }
  if (c.timeFrom || c.timeShift) {
    urlTimeRange = '';
  }
  return { from_ms: from.valueOf(), to_ms: to.valueOf(), raw, url_time_range: urlTimeRange };
}

let input = '';
process.stdin.on('data', (chunk) => (input += chunk));
process.stdin.on('end', () => process.stdout.write(JSON.stringify(JSON.parse(input).map(resolve))));
