// Runs Grafana's own transformations and field display (@grafana/data, the version package.json
// pins) on data frames and prints what a panel would show: each frame's fields in order, with
// display names, types, whether the panel hides them, and the values as Grafana displays them
// after the panel's field config and overrides.
// stdin: [{"id": any, "frames": [{"name", "fields": [{"name", "type", "values", "config"?}]}],
//          "transformations": [...], "fieldConfig": {"defaults", "overrides"}}]
// stdout: [{"id", "frames": [{"fields": [{"name", "displayName", "type", "hidden", "values", "display"}]}]}]
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

// The field config properties a panel's overrides set. Grafana's app registers its standard ones
// at start-up (and each panel plugin its custom.* ones) with these processors from @grafana/data;
// the registry itself is not published, so it is listed here by id.
const PROCESSORS = {
  unit: data.unitOverrideProcessor, decimals: data.numberOverrideProcessor, min: data.numberOverrideProcessor,
  max: data.numberOverrideProcessor, displayName: data.displayNameOverrideProcessor,
  mappings: data.valueMappingsOverrideProcessor, thresholds: data.thresholdsOverrideProcessor,
  links: data.dataLinksOverrideProcessor, noValue: data.stringOverrideProcessor,
};
function registryFor(cases) {
  const ids = new Set(Object.values(data.FieldConfigProperty));
  for (const c of cases) {
    for (const o of (c.fieldConfig && c.fieldConfig.overrides) || []) {
      for (const p of o.properties) ids.add(p.id);
    }
  }
  return new data.Registry(() => [...ids].map((id) => {
    const custom = id.startsWith('custom.');
    return {
      id, name: id, path: custom ? id.slice('custom.'.length) : id, isCustom: custom,
      process: PROCESSORS[id] || data.identityOverrideProcessor, shouldApply: () => true,
      override: () => null, editor: () => null,
    };
  }));
}

async function run(c, registry) {
  const frames = c.frames.map((f) => data.toDataFrame(f));
  const transformed = await lastValueFrom(data.transformDataFrame(c.transformations || [], frames, { interpolate: (v) => v }));
  const shown = data.applyFieldOverrides({
    data: transformed, fieldConfig: c.fieldConfig || { defaults: {}, overrides: [] }, fieldConfigRegistry: registry,
    replaceVariables: (v) => v, theme, timeZone: 'utc',
  });
  return {
    id: c.id,
    frames: shown.map((frame) => ({
      fields: frame.fields.map((field) => ({
        name: field.name,
        displayName: data.getFieldDisplayName(field, frame, shown),
        type: field.type,
        hidden: Boolean(field.config.custom && field.config.custom.hidden),
        values: Array.from(field.values),
        display: Array.from(field.values).map((v) => data.formattedValueToString(field.display(v))),
      })),
    })),
  };
}

let input = '';
process.stdin.on('data', (chunk) => (input += chunk));
process.stdin.on('end', async () => {
  const cases = JSON.parse(input);
  const registry = registryFor(cases);
  const out = [];
  for (const c of cases) {
    out.push(await run(c, registry));
  }
  process.stdout.write(JSON.stringify(out));
});
