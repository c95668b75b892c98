/**
 * The plotting library, inlined into every page so a report opens with no network: Vega,
 * Vega-Lite and vega-embed's browser builds, read from node_modules (versions pinned in package.json).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
let cached: string | undefined;

function build(pkg: string, file: string): string {
  // Their package.json `exports` hide the build folder from resolve(): look in the node_modules paths.
  for (const dir of require.resolve.paths(pkg) ?? []) {
    const path = join(dir, pkg, 'build', file);
    if (existsSync(path)) return readFileSync(path, 'utf8');
  }
  throw new Error(`${pkg}/build/${file} not found: run npm ci (${pkg} is a dependency)`);
}

/** `<script>` blocks defining `vega`, `vegaLite` and `vegaEmbed` globals. */
export function plotScripts(): string {
  cached ??= [build('vega', 'vega.min.js'), build('vega-lite', 'vega-lite.min.js'), build('vega-embed', 'vega-embed.min.js')]
    // A literal "</script>" inside the code would end the inline block early.
    .map((js) => `<script>${js.replace(/<\/script/gi, '<\\/script')}</script>`)
    .join('\n');
  return cached;
}
