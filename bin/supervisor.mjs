#!/usr/bin/env node
// The supervisor of the local stack's worker (runtime/supervisor.ts): from dist/ when the build is
// fresh, else from the sources through tsx. Its arguments after `--` are the worker command.
import { importEntry } from './dist.mjs';

await importEntry('runtime/supervisor');
