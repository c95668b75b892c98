#!/usr/bin/env node
// The judgeflow CLI: the compiled build in dist/ (made by `npm ci` / `npm run build`) when it
// matches the sources, else the TypeScript sources through tsx (a checkout with edited sources).
import { importEntry } from './dist.mjs';

await importEntry('cli/main', { bundle: true });
