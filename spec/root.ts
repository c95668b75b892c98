import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The judgeflow checkout: named specs (`experiments/`) and relative model paths resolve against it. */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
