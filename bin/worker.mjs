#!/usr/bin/env node
// The worker process the local stack starts (runtime/stack.ts): worker.ts from dist/ with the
// prebuilt workflow bundle when the build is fresh, else from the sources through tsx.
import { importEntry } from './dist.mjs';

const { module } = await importEntry('worker');
await module.main();
