// Type-checks dashboards against the dashboard model Grafana publishes (@grafana/schema, the
// version package.json pins): each dashboard against `Dashboard`, each panel's options and custom
// field config against its panel plugin's generated types. Enum-typed fields take their values as
// strings, as dashboard JSON stores them.
// argv: dashboard JSON files. stdout: {"checked": [...], "errors": [...]}; exit 0 either way.
'use strict';
const fs = require('fs');
const path = require('path');
const ts = require('typescript');

const PANELCFG = {
  table: 'TablePanelCfg', stat: 'StatPanelCfg', timeseries: 'TimeSeriesPanelCfg', barchart: 'BarChartPanelCfg',
  text: 'TextPanelCfg',
};
const HAS_FIELD_CONFIG = new Set(['table', 'timeseries', 'barchart']);
const here = __dirname;
const virtual = path.join(here, '__dashboards_check__.ts');

const lines = [
  "import type * as schema from '@grafana/schema';",
  // A string enum's values as string literals (dashboard JSON holds "list", not LegendDisplayMode.List),
  // and every property optional: Grafana fills the schema's defaults (frameIndex, cellOptions...).
  'type Loose<T> = T extends string ? `${T}` : T extends (infer U)[] ? Loose<U>[] :',
  '  T extends object ? { [K in keyof T]?: Loose<T[K]> } : T;',
];
for (const [type, name] of Object.entries(PANELCFG)) {
  lines.push(`import type * as ${type} from '@grafana/schema/dist/esm/raw/composable/${type}/panelcfg/x/${name}_types.gen';`);
}
const files = process.argv.slice(2);
const checked = [];
files.forEach((file, i) => {
  const d = JSON.parse(fs.readFileSync(file, 'utf8'));
  lines.push(`// ${file}`);
  lines.push(`export const dashboard${i} = ${JSON.stringify(d)} satisfies Loose<schema.Dashboard>;`);
  (d.panels || []).forEach((p, j) => {
    if (!PANELCFG[p.type]) {
      return;
    }
    lines.push(`export const options${i}_${j} = ${JSON.stringify(p.options || {})} satisfies Loose<${p.type}.Options>;`);
    const custom = (p.fieldConfig && p.fieldConfig.defaults && p.fieldConfig.defaults.custom) || {};
    if (HAS_FIELD_CONFIG.has(p.type)) {
      lines.push(`export const custom${i}_${j} = ${JSON.stringify(custom)} satisfies Loose<${p.type}.FieldConfig>;`);
    }
    checked.push(`${path.basename(path.dirname(file))}/${path.basename(file)} panel ${p.id} (${p.type})`);
  });
});
const source = lines.join('\n');
const options = {
  strict: true, noEmit: true, skipLibCheck: true, target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.Node16, moduleResolution: ts.ModuleResolutionKind.Node16,
};
const host = ts.createCompilerHost(options);
const getSourceFile = host.getSourceFile;
host.getSourceFile = (name, lang, ...rest) =>
  name === virtual ? ts.createSourceFile(name, source, lang) : getSourceFile.call(host, name, lang, ...rest);
const fileExists = host.fileExists;
host.fileExists = (name) => name === virtual || fileExists.call(host, name);
const program = ts.createProgram([virtual], options, host);
const errors = ts.getPreEmitDiagnostics(program).map((diag) => {
  const text = ts.flattenDiagnosticMessageText(diag.messageText, '\n');
  if (diag.file && diag.start !== undefined) {
    const { line } = diag.file.getLineAndCharacterOfPosition(diag.start);
    const context = diag.file === program.getSourceFile(virtual) ? (source.split('\n')[line] || '').slice(0, 120) : '';
    return `${path.basename(diag.file.fileName)}:${line + 1}: ${text}${context ? ` [${context}]` : ''}`;
  }
  return text;
});
process.stdout.write(JSON.stringify({ checked: files.length, panels: checked.length, errors }));
