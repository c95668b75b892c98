#!/usr/bin/env node
// Compiles the CLI and the worker to JavaScript in dist/ and bundles the Temporal workflows once,
// so no process transpiles TypeScript or runs webpack at start. Run by `npm ci` (the `prepare`
// script) and `npm run build`. `--out DIR` builds elsewhere (a folder inside the repo, so the
// compiled modules still find node_modules); bin/ only ever runs dist/.
//
// Each .ts file becomes one .js file at the same place under the output (esbuild, transpile only:
// the same transform tsx applies; types are checked by `npm run typecheck`). A compiled module
// sees `import.meta.url` as its source file's URL, so paths it derives from it (the repo root,
// db/migrations, data/) are the same compiled or not. build.json, written last, records every
// input's size, mtime and hash: bin/dist.mjs runs dist/ only while it matches the sources.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';
import { bundleWorkflowCode } from '@temporalio/worker';
import { CLI_BUNDLE_DIR, CLI_BUNDLE_EXTERNAL, DIST, manifestOf, MANIFEST, ROOT, SOURCE_DIRS, SOURCE_FILES, WORKFLOW_BUNDLE } from '../bin/dist.mjs';

const { values: args } = parseArgs({ options: { out: { type: 'string' } } });
const out = args.out ? resolve(args.out) : DIST;

const started = Date.now();
// Taken before compiling: a source edited during the build then reads as changed, never as built.
const manifest = manifestOf(ROOT);
const sources = Object.keys(manifest.files).filter(
  (rel) => rel.endsWith('.ts') && (SOURCE_FILES.includes(rel) || SOURCE_DIRS.some((dir) => rel.startsWith(`${dir}/`))),
);

// No manifest until the end: a CLI starting mid-build sees no build and runs the sources.
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const sourceUrlPlugin = {
  name: 'source-import-meta-url',
  setup(b) {
    b.onLoad({ filter: /\.ts$/ }, (file) => {
      let text = readFileSync(file.path, 'utf8');
      if (text.includes('import.meta.url')) {
        const compiled = join(out, relative(ROOT, file.path)).replace(/\.ts$/, '.js');
        const back = relative(dirname(compiled), file.path).split(sep).join('/');
        // Prepended on the first line, so line numbers stay those of the source.
        text = `const __judgeflowSourceUrl = new URL(${JSON.stringify(back)}, import.meta.url).href; ${text.replaceAll('import.meta.url', '__judgeflowSourceUrl')}`;
      }
      return { contents: text, loader: 'ts' };
    });
  },
};

await build({
  entryPoints: sources.map((rel) => join(ROOT, rel)),
  outdir: out,
  outbase: ROOT,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: 'linked',
  logLevel: 'warning',
  plugins: [sourceUrlPlugin],
});

// The CLI once more, as one bundle with its dependencies inlined (code-split at the commands' lazy
// imports, so `kinds` still loads only what it uses): Node 20 has no compile cache, and resolving
// and compiling the ~1,000 modules of @temporalio/client, drizzle, pg and openai one by one was
// most of a `run`'s start. Left outside: packages with native code or files of their own, and
// the worker (`judgeflow worker` imports the per-file build of worker.ts, so a worker's Temporal
// SDK is the one node_modules holds, as in bin/worker.mjs). Every file lands in one folder, so a
// module's import.meta.url is rewritten relative to that folder. meta.json: which inputs (source
// files, packages) each output holds.
const cliOut = join(out, basename(CLI_BUNDLE_DIR));
const workerEntry = join(ROOT, 'worker.ts');
const bundleUrlPlugin = {
  name: 'cli-bundle',
  setup(b) {
    b.onResolve({ filter: /(^|\/)worker\.js$/ }, async (args) => {
      if (!args.importer.startsWith(ROOT) || args.importer.includes(`${sep}node_modules${sep}`)) return undefined;
      if (resolve(args.resolveDir, args.path).replace(/\.js$/, '.ts') !== workerEntry) return undefined;
      return { path: `./${relative(cliOut, join(out, 'worker.js')).split(sep).join('/')}`, external: true };
    });
    b.onLoad({ filter: /\.ts$/ }, (file) => {
      let text = readFileSync(file.path, 'utf8');
      if (text.includes('import.meta.url')) {
        const back = relative(cliOut, file.path).split(sep).join('/');
        text = `const __judgeflowSourceUrl = new URL(${JSON.stringify(back)}, import.meta.url).href; ${text.replaceAll('import.meta.url', '__judgeflowSourceUrl')}`;
      }
      return { contents: text, loader: 'ts' };
    });
  },
};
const bundled = await build({
  entryPoints: [join(ROOT, 'cli', 'main.ts')],
  outdir: cliOut,
  entryNames: '[name]',
  chunkNames: 'chunk-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: 'linked',
  metafile: true,
  logLevel: 'warning',
  external: CLI_BUNDLE_EXTERNAL,
  // Inlined CommonJS packages call require(); an ES module has none of its own.
  banner: { js: "import { createRequire as __judgeflowCreateRequire } from 'node:module'; const require = __judgeflowCreateRequire(import.meta.url);" },
  plugins: [bundleUrlPlugin],
});
const outputs = Object.fromEntries(
  Object.entries(bundled.metafile.outputs)
    .filter(([file]) => file.endsWith('.js'))
    .map(([file, o]) => [basename(file), Object.keys(o.inputs).sort()]),
);
writeFileSync(join(cliOut, 'meta.json'), JSON.stringify({ outputs }, null, 1));
const compiledAt = Date.now();

const logger = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: (message, meta) => console.error(message, meta ?? '') };
const { code } = await bundleWorkflowCode({ workflowsPath: join(ROOT, 'workflows', 'index.ts'), logger });
writeFileSync(join(out, basename(WORKFLOW_BUNDLE)), code);

writeFileSync(join(out, basename(MANIFEST)), JSON.stringify(manifest, null, 1));
console.log(
  `judgeflow build: ${sources.length} modules compiled to ${relative(ROOT, out)}/ and the CLI bundled (${Object.keys(outputs).length} files) in ${compiledAt - started} ms, workflow bundle (${Math.round(code.length / 1024)} KiB) in ${Date.now() - compiledAt} ms`,
);
