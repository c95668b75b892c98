#!/usr/bin/env node
// Runs the TypeScript CLI through tsx's loader, so `npx judgeflow` works straight after `npm ci`.
import { register } from 'tsx/esm/api';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

register();
const here = dirname(fileURLToPath(import.meta.url));
await import(pathToFileURL(join(here, '..', 'cli', 'main.ts')).href);
