import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Temporal workers load a native addon: keep them in forked processes.
    pool: 'forks',
    globalSetup: ['./test/helpers/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
  },
});
