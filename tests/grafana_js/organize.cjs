// Runs Grafana's own transformations (@grafana/data, the version package.json pins) on data frames
// and prints what a panel would show: each frame's fields in order, with display names, types and
// the values formatted by Grafana's display processor.
// stdin: [{"id": any, "frames": [{"name", "fields": [{"name", "type", "values", "config"?}]}],
//          "transformations": [...]}]
// stdout: [{"id", "frames": [{"fields": [{"name", "displayName", "type", "values", "display"}]}]}]
'use strict';
const data = require('@grafana/data');
// Dashboards are Scenes in Grafana 13: transformDataFrame leaves option interpolation to Scenes
// when window.__grafanaSceneContext is set (read when a transformation runs).
globalThis.window = { __grafanaSceneContext: {} };
// A browser's locale for date formats (Node 20 has no navigator).
if (typeof navigator === 'undefined') globalThis.navigator = { language: 'en-US', languages: ['en-US'] };
const { lastValueFrom } = require('rxjs');

// Grafana's app registers the standard transformers at start-up; @grafana/data exports them.
data.standardTransformersRegistry.setInit(() =>
  [...new Map(Object.values(data.standardTransformers).map((t) => [t.id, t])).values()].map((t) => ({
    id: t.id, aliasIds: t.aliasIds, name: t.name, description: t.description, transformation: () => t, editor: () => null,
  }))
);

const theme = data.createTheme();

async function run(c) {
  const frames = c.frames.map((f) => data.toDataFrame(f));
  const transformed = await lastValueFrom(data.transformDataFrame(c.transformations || [], frames, { interpolate: (v) => v }));
  // Field display (units, value to text) from each field's own config: the panel's overrides need
  // the field-config registry Grafana's app fills at start-up, which no published package exports.
  const shown = transformed;
  return {
    id: c.id,
    frames: shown.map((frame) => ({
      fields: frame.fields.map((field) => ({
        name: field.name,
        displayName: data.getFieldDisplayName(field, frame, shown),
        type: field.type,
        hidden: Boolean(field.config.custom && field.config.custom.hidden),
        values: Array.from(field.values),
        display: ((display) => Array.from(field.values).map((v) => data.formattedValueToString(display(v))))(
          data.getDisplayProcessor({ field, theme, timeZone: 'utc' })),
      })),
    })),
  };
}

let input = '';
process.stdin.on('data', (chunk) => (input += chunk));
process.stdin.on('end', async () => {
  const cases = JSON.parse(input);
  const out = [];
  for (const c of cases) {
    out.push(await run(c));
  }
  process.stdout.write(JSON.stringify(out));
});
