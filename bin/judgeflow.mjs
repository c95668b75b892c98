#!/usr/bin/env node
// The judgeflow CLI: the compiled build in dist/ (made by `npm ci` / `npm run build`) when it
// matches the sources, else the TypeScript sources through tsx (a checkout with edited sources).
//
// `judgeflow run` first offers its command to the resident launcher of a worker of the same stack
// (runtime/launcher.ts), which has everything loaded: a short job starts in milliseconds instead
// of loading the Temporal client and the spec checker here. Without one, it runs here.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { DIST, MANIFEST, importEntry, staleReason } from './dist.mjs';

let code;
if (process.argv[2] === 'run' && process.env.JUDGEFLOW_LAUNCHER !== 'off' && staleReason() === undefined) {
  const build = JSON.parse(readFileSync(MANIFEST, 'utf8')).builtAt;
  const { viaLauncher } = await import(pathToFileURL(join(DIST, 'runtime', 'launcher-client.js')).href);
  code = await viaLauncher(process.argv.slice(2), build);
}
if (code === undefined) await importEntry('cli/main', { bundle: true });
else process.exitCode = code;
