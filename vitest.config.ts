import { defineConfig } from 'vitest/config';

// Test files run in parallel against one shared stack (the global setup's database and Temporal
// server): every file uses its own task queues, runs and simulators. Most of a file's time is
// waiting (servers, timeouts, kill -9 recovery), so more files than cores keeps CI short.
// JF_TEST_WORKERS overrides the number of files at once.
const workers = Number(process.env.JF_TEST_WORKERS ?? 4);

export default defineConfig({
  test: {
    // Temporal workers load a native addon: keep them in forked processes.
    pool: 'forks',
    globalSetup: ['./test/helpers/global-setup.ts'],
    testTimeout: 240_000,
    hookTimeout: 240_000,
    include: ['test/**/*.test.ts'],
    fileParallelism: workers > 1,
    maxWorkers: workers,
  },
});
