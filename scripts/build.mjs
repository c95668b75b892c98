#!/usr/bin/env node
// Compiles the CLI and the worker to JavaScript in dist/ and bundles the Temporal workflows once,
// so no process transpiles TypeScript or runs webpack at start. Run by `npm ci` (the `prepare`
// script) and `npm run build`.
//
// Each .ts file becomes one .js file at the same place under dist/ (esbuild, transpile only: the
// same transform tsx applies; types are checked by `npm run typecheck`). A compiled module sees
// `import.meta.url` as its source file's URL, so paths it derives from it (the repo root,
// db/migrations, data/) are the same compiled or not. dist/build.json, written last, records every
// input's size, mtime and hash: bin/dist.mjs runs dist/ only while it matches the sources.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { build } from 'esbuild';
import { bundleWorkflowCode } from '@temporalio/worker';
import { buildInputs, describeFile, DIST, MANIFEST, ROOT, SOURCE_DIRS, SOURCE_FILES, WORKFLOW_BUNDLE } from '../bin/dist.mjs';

const started = Date.now();
// Recorded before compiling: a source edited during the build then reads as changed, never as built.
const inputs = buildInputs();
const files = Object.fromEntries(inputs.map((rel) => [rel, describeFile(rel)]));
const sources = inputs.filter((rel) => rel.endsWith('.ts') && (SOURCE_FILES.includes(rel) || SOURCE_DIRS.some((d) => rel.startsWith(`${d}/`))));

rmSync(DIST, { recursive: true, force: true });
mkdirSync(DIST, { recursive: true });

const sourceUrlPlugin = {
  name: 'source-import-meta-url',
  setup(b) {
    b.onLoad({ filter: /\.ts$/ }, (args) => {
      let text = readFileSync(args.path, 'utf8');
      if (text.includes('import.meta.url')) {
        const out = join(DIST, relative(ROOT, args.path)).replace(/\.ts$/, '.js');
        const back = relative(dirname(out), args.path).split(sep).join('/');
        // Prepended on the first line, so line numbers stay those of the source.
        text = `const __judgeflowSourceUrl = new URL(${JSON.stringify(back)}, import.meta.url).href; ${text.replaceAll('import.meta.url', '__judgeflowSourceUrl')}`;
      }
      return { contents: text, loader: 'ts' };
    });
  },
};

await build({
  entryPoints: sources.map((rel) => join(ROOT, rel)),
  outdir: DIST,
  outbase: ROOT,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: 'linked',
  logLevel: 'warning',
  plugins: [sourceUrlPlugin],
});
const compiledAt = Date.now();

const quiet = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: (message, meta) => console.error(message, meta ?? '') };
const { code } = await bundleWorkflowCode({ workflowsPath: join(ROOT, 'workflows', 'index.ts'), logger: quiet });
writeFileSync(WORKFLOW_BUNDLE, code);

writeFileSync(MANIFEST, JSON.stringify({ version: 1, builtAt: new Date().toISOString(), files }, null, 1));
console.log(
  `judgeflow build: ${sources.length} modules compiled to dist/ in ${compiledAt - started} ms, workflow bundle (${Math.round(code.length / 1024)} KiB) in ${Date.now() - compiledAt} ms`,
);
