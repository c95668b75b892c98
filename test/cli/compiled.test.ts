/**
 * The compiled build (scripts/build.mjs → dist/) and the entry points that choose between it and
 * the TypeScript sources (bin/dist.mjs): when a build counts as fresh, that compiled modules find
 * the repo's files as the sources do, that a quick command loads no client library, and that the
 * worker process the stack starts (bin/worker.mjs) runs a run the CLI launches.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_BUNDLE_DIR, manifestOf, staleReason } from '../../bin/dist.mjs';
import { MIGRATIONS_FOLDER } from '../../db/migrate.js';
import { REPO_ROOT } from '../../runtime/stack.js';
import { PACKAGE_ROOT } from '../../spec/load.js';
import { startSimulator, type SimHandle } from '../../sim/server.js';
import { DEFAULT_WORKFLOWS_PATH } from '../../worker.js';
import { runCli } from '../helpers/cli.js';
import { REPO, testDatabaseUrl, testTemporalAddress, uniqueName } from '../helpers/env.js';
import { writeSpec } from '../helpers/spec.js';

function node(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('when a build is fresh', () => {
  let root: string;
  const file = (rel: string, text: string) => {
    mkdirSync(join(root, rel, '..'), { recursive: true });
    writeFileSync(join(root, rel), text);
  };
  const build = () => {
    mkdirSync(join(root, 'dist'), { recursive: true });
    writeFileSync(join(root, 'dist', 'build.json'), JSON.stringify(manifestOf(root)));
  };
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'jf-build-'));
    file('cli/main.ts', 'export const a = 1;\n');
    file('spec/load.ts', 'export const b = 2;\n');
    file('worker.ts', 'export {};\n');
    file('package-lock.json', '{}\n');
    file('test/ignored.ts', 'not a build input\n');
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('no build: stale; after a build: fresh, and a file touched without a change stays fresh', () => {
    expect(staleReason(root)).toBe('no build in dist/');
    build();
    expect(Object.keys(manifestOf(root).files)).toEqual(['cli/main.ts', 'package-lock.json', 'spec/load.ts', 'worker.ts']);
    expect(staleReason(root)).toBeUndefined();
    utimesSync(join(root, 'cli/main.ts'), new Date(), new Date(Date.now() + 5_000));
    expect(staleReason(root)).toBeUndefined();
    file('test/ignored.ts', 'edited, still not a build input\n');
    expect(staleReason(root)).toBeUndefined();
  });

  it('an edit of the same size, a new source, a removed source and a changed lock file each make it stale, named', () => {
    build();
    file('cli/main.ts', 'export const a = 7;\n');
    expect(staleReason(root)).toBe('cli/main.ts changed since the build');
    build();
    file('runtime/net.ts', 'export {};\n');
    expect(staleReason(root)).toBe('runtime/net.ts is new since the build');
    build();
    rmSync(join(root, 'spec/load.ts'));
    expect(staleReason(root)).toBe('spec/load.ts was removed since the build');
    build();
    file('package-lock.json', '{ "lockfileVersion": 3 }\n');
    expect(staleReason(root)).toBe('package-lock.json changed since the build');
  });
});

describe('the compiled build', () => {
  const out = join(REPO, '.test-state', `dist-${process.pid}`);
  beforeAll(async () => {
    const res = await node([join(REPO, 'scripts', 'build.mjs'), '--out', out]);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
  });
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('finds the repo root, the migrations and the workflows where the sources do, and bundles the workflows', async () => {
    const probe = [
      `const { PACKAGE_ROOT } = await import(${JSON.stringify(pathToFileURL(join(out, 'spec/load.js')).href)});`,
      `const { MIGRATIONS_FOLDER } = await import(${JSON.stringify(pathToFileURL(join(out, 'db/migrate.js')).href)});`,
      `const { REPO_ROOT } = await import(${JSON.stringify(pathToFileURL(join(out, 'runtime/stack.js')).href)});`,
      `const { DEFAULT_WORKFLOWS_PATH } = await import(${JSON.stringify(pathToFileURL(join(out, 'worker.js')).href)});`,
      'console.log(JSON.stringify({ PACKAGE_ROOT, MIGRATIONS_FOLDER, REPO_ROOT, DEFAULT_WORKFLOWS_PATH }));',
    ].join('\n');
    const res = await node(['--input-type=module', '-e', probe]);
    expect(res.stderr).toBe('');
    expect(JSON.parse(res.stdout)).toEqual({ PACKAGE_ROOT, MIGRATIONS_FOLDER, REPO_ROOT, DEFAULT_WORKFLOWS_PATH });
    expect(existsSync(join(MIGRATIONS_FOLDER, 'meta', '_journal.json'))).toBe(true);

    const bundle = readFileSync(join(out, 'workflow-bundle.js'), 'utf8');
    for (const workflow of ['experimentWorkflow', 'evaluateStage']) expect(bundle).toContain(workflow);
    const manifest = JSON.parse(readFileSync(join(out, 'build.json'), 'utf8')) as { files: Record<string, unknown> };
    expect(Object.keys(manifest.files)).toEqual(expect.arrayContaining(['worker.ts', 'cli/main.ts', 'workflows/experiment.ts', 'package-lock.json']));
  });
});

describe('entry points', () => {
  // The packages a command loads: those an ES import resolves in node_modules, and those inlined in
  // the files of the CLI bundle it loads (the bundle's meta.json lists each file's inputs).
  async function packagesLoaded(args: string[]): Promise<{ res: Awaited<ReturnType<typeof node>>; packages: Set<string>; bundleFiles: number }> {
    // Hooks (off-thread) see every module an ES import resolves; they report on stderr.
    const hooks = `export async function resolve(s, c, next) { const r = await next(s, c); process._rawDebug('loaded ' + r.url); return r; }`;
    const register = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hooks)}`)});`;
    const res = await node(['--import', `data:text/javascript,${encodeURIComponent(register)}`, join(REPO, 'bin', 'judgeflow.mjs'), ...args]);
    const meta = JSON.parse(readFileSync(join(CLI_BUNDLE_DIR, 'meta.json'), 'utf8')) as { outputs: Record<string, string[]> };
    const packageOf = (path: string) => /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path)?.[1];
    const packages = new Set<string>();
    let bundleFiles = 0;
    for (const [, url] of res.stderr.matchAll(/^loaded (\S+)$/gm)) {
      const direct = packageOf(url!);
      if (direct) packages.add(direct);
      const inBundle = url!.startsWith(pathToFileURL(CLI_BUNDLE_DIR).href + '/') ? meta.outputs[url!.split('/').pop()!] : undefined;
      if (inBundle) bundleFiles++;
      for (const input of inBundle ?? []) if (packageOf(input)) packages.add(packageOf(input)!);
    }
    return { res, packages, bundleFiles };
  }

  it('`judgeflow kinds` runs the CLI bundle and loads no Temporal, pg, openai or drizzle code', async () => {
    const { res, packages, bundleFiles } = await packagesLoaded(['kinds']);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^evaluate\s+-\s+judge evaluation/m);
    expect(bundleFiles).toBeGreaterThan(0);
    expect(packages).toContain('zod');
    for (const heavy of ['@temporalio/client', '@temporalio/worker', 'pg', 'openai', 'drizzle-orm', 'yaml', 'hyparquet']) expect(packages).not.toContain(heavy);
  });

  it("`judgeflow run` loads Temporal's client, pg and drizzle from the bundle, not module by module", async () => {
    // --help stops after loading the command: what a launch loads before it connects.
    const { res, packages } = await packagesLoaded(['run', '--help']);
    expect(res.code).toBe(0);
    for (const pkg of ['@temporalio/client', 'pg', 'drizzle-orm']) expect(packages).toContain(pkg);
    const direct = new Set([...res.stderr.matchAll(/^loaded (\S+)$/gm)].filter(([, url]) => url!.includes('/node_modules/')).map(([, url]) => url));
    expect([...direct]).toEqual([]);
  });

  describe('the worker process the stack starts (bin/worker.mjs)', () => {
    let sim: SimHandle;
    let worker: ReturnType<typeof spawn>;
    let workerOut = '';
    const taskQueue = uniqueName('bin-worker');
    beforeAll(async () => {
      sim = await startSimulator({ seed: 2, truth: join(REPO, 'data/vl-rewardbench/data.jsonl'), models: { judge: { behaviour: 'judge', accuracy: 0.8 } } });
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        DATABASE_URL: testDatabaseUrl(),
        TEMPORAL_ADDRESS: testTemporalAddress(),
        JUDGEFLOW_TASK_QUEUE: taskQueue,
      };
      delete env.JUDGEFLOW_WORKFLOW_BUNDLE;
      worker = spawn(process.execPath, [join(REPO, 'bin', 'worker.mjs')], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
      await new Promise<void>((resolve, reject) => {
        worker.stdout!.on('data', (d: Buffer) => {
          workerOut += d.toString();
          if (/judgeflow worker: task queue/.test(workerOut)) resolve();
        });
        worker.stderr!.on('data', (d: Buffer) => (workerOut += d.toString()));
        worker.once('exit', (code) => reject(new Error(`worker exited (${code}):\n${workerOut}`)));
      });
    });
    afterAll(async () => {
      if (worker && worker.exitCode === null) {
        worker.removeAllListeners('exit');
        const exited = new Promise((r) => worker.once('exit', r));
        worker.kill('SIGTERM');
        await exited;
      }
      await sim?.close();
    });

    it('runs the prebuilt workflow bundle when dist/ is fresh, the sources otherwise, and runs a launched run to its results', async () => {
      const fresh = staleReason() === undefined;
      expect(workerOut).toContain(
        fresh ? `prebuilt workflow bundle ${join(REPO, 'dist', 'workflow-bundle.js')}` : 'workflows bundled from the sources at start',
      );
      const spec = {
        name: uniqueName('bin-worker'),
        endpoints: { judge: { base_url: sim.url, model: 'judge', concurrency: 8 } },
        datasets: { vlrb: { path: join(REPO, 'data/vl-rewardbench/data.jsonl'), limit: 20 } },
        stages: [{ id: 'eval', uses: 'evaluate', with: { dataset: 'vlrb', judge: 'judge', bootstrap: 50 } }],
      };
      const res = await runCli(['run', writeSpec(spec)], { JUDGEFLOW_TASK_QUEUE: taskQueue });
      expect(res.stderr).toMatch(/started/);
      expect(res.code).toBe(0);
      expect(res.stdout).toMatch(/^eval\s+20\/20\s+\d+\.\d \[/m);
      expect(res.stdout).toMatch(/40 \(0 cached\)/);
    });
  });
});
