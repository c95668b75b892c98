/**
 * Short-jobs benchmark: how long the whole `judgeflow` process takes for the things a user does
 * many times a day, with the CLI compiled (bin/judgeflow.mjs running dist/) beside the same CLI
 * transpiled by tsx at every start (`node --import tsx cli/main.ts`, what bin/ ran before dist/).
 *
 *   npx tsx bench/short-jobs.ts [--rounds 5] [--requests 1000] [--latency 50] [--concurrency 32] [--worker-rounds 2] [--baseline DIR] [--idle S] [--worker-prof DIR]
 *
 * Against an already-up stack: a scratch database on DATABASE_URL's server, a Temporal dev server
 * (or TEMPORAL_ADDRESS), the simulator (fixed latency) and one compiled worker, all started first.
 * Then, whole process from spawn to exit, rounds alternating which CLI goes first:
 *  - CLI start: `judgeflow kinds`;
 *  - the job: `judgeflow run` of an evaluate stage making `requests` calls (items x 2 orders) at
 *    `concurrency`, a new seed each time so nothing is cached; beside its ideal network time,
 *    ceil(requests / concurrency) x latency;
 *  - the cached re-run: the same spec under a new label, every request answered by the cache;
 *  - worker start (spawn to polling): `node bin/worker.mjs` (dist/, prebuilt workflow bundle) vs
 *    `node --import tsx worker.ts` (webpack bundles the workflows at every start).
 * Medians are printed, with the min-max (the machine's noise) and the CLI process's CPU time (user +
 * sys, from the shell's `times`), which contention on a shared machine changes far less than wall time.
 *
 * `--baseline DIR`: another checkout of judgeflow, built (`npm run build` there), e.g. the commit
 * before a change (`git archive <commit> | tar -x -C DIR`, node_modules linked). Its compiled CLI
 * and its own worker (on a queue of its own, same database and Temporal) run the same jobs in the
 * same rounds, in place of the tsx CLI: old and new code side by side under the same load.
 *
 * `--idle S`: S seconds of nothing before each job and re-run, as between a user's jobs (idle pools
 * have closed their connections by then).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import YAML from 'yaml';
import { staleReason } from '../bin/dist.mjs';
import { Cleanups, REPO, median, spawnSimulator, temporalAddress, temporaryDatabase } from './lib.js';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    requests: { type: 'string', default: '1000' },
    latency: { type: 'string', default: '50' },
    concurrency: { type: 'string', default: '32' },
    'worker-rounds': { type: 'string', default: '2' },
    idle: { type: 'string', default: '0' },
    baseline: { type: 'string' },
    'worker-prof': { type: 'string' },
  },
});
const BASELINE = args.baseline;
const ROUNDS = Number(args.rounds);
const REQUESTS = Number(args.requests);
const LATENCY = Number(args.latency);
const CONCURRENCY = Number(args.concurrency);
const WORKER_ROUNDS = Number(args['worker-rounds']);
// Seconds of nothing before each job and re-run: a user's next job comes minutes later, after the
// processes' idle timeouts (Postgres pools close idle connections after 10 s).
const IDLE_S = Number(args.idle);
// A V8 CPU profile of this checkout's stack worker, written to this folder when it stops.
const WORKER_PROF = args['worker-prof'];
const DATA = join(REPO, 'data', 'vl-rewardbench', 'data.jsonl');
const IDEAL_S = (Math.ceil(REQUESTS / CONCURRENCY) * LATENCY) / 1000;

// The second column: this checkout's CLI through tsx, or with --baseline the other checkout's compiled CLI.
type Cli = 'compiled' | 'tsx';
const CLI: Record<Cli, string[]> = {
  compiled: [join(REPO, 'bin', 'judgeflow.mjs')],
  tsx: BASELINE ? [join(BASELINE, 'bin', 'judgeflow.mjs')] : ['--import', 'tsx', join(REPO, 'cli', 'main.ts')],
};
const OTHER = BASELINE ? 'baseline' : 'tsx';

interface Exit {
  seconds: number;
  /** CPU time (user + sys) of the process and its children, from the shell's `times`. */
  cpu: number;
  /** Wall-clock spawn and exit (ms since the epoch), to set beside the rows' timestamps. */
  startedAt: number;
  exitedAt: number;
  code: number | null;
  stdout: string;
  stderr: string;
}

// POSIX `times` prints the shell's, then its children's user and system time: "0m0.512s 0m0.064s".
const WITH_TIMES = '"$0" "$@"; code=$?; times >&2; exit $code';
const seconds = (t: string) => Number(/(\d+)m([\d.]+)s/.exec(t)![1]) * 60 + Number(/(\d+)m([\d.]+)s/.exec(t)![2]);

/** Runs `node <args>` to its exit (under sh, for its CPU time); seconds from spawn to exit. */
function timed(nodeArgs: string[], env: NodeJS.ProcessEnv): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const startedAt = Date.now();
    const child = spawn('sh', ['-c', WITH_TIMES, process.execPath, ...nodeArgs], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      const exitedAt = Date.now();
      const children = stderr.trimEnd().split('\n').at(-1)!.split(/\s+/);
      const cpu = seconds(children[0]!) + seconds(children[1]!);
      resolve({ seconds: (performance.now() - t0) / 1000, cpu, startedAt, exitedAt, code, stdout, stderr });
    });
  });
}

/** Seconds from spawning a worker until it says it polls; then it is stopped. */
function workerStart(nodeArgs: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, nodeArgs, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let seconds: number | undefined;
    const onData = (d: Buffer) => {
      out += d.toString();
      if (seconds === undefined && /judgeflow worker: task queue/.test(out)) {
        seconds = (performance.now() - t0) / 1000;
        child.kill('SIGTERM');
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('error', reject);
    child.once('exit', (code) => (seconds === undefined ? reject(new Error(`worker exited (${code}) before polling:\n${out}`)) : resolve(seconds)));
  });
}

/**
 * What a user would write instead of a judgeflow job: a plain script with the `openai` client that
 * sends the same chat completions at the same concurrency and counts the answers. No durability,
 * no cache, no records: its time is what a whole process needs for these calls on this machine,
 * beside which the job's time is read.
 */
const PLAIN_SCRIPT = `
import { readFileSync } from 'node:fs';
const { default: OpenAI } = await import(process.env.PLAIN_OPENAI);
const [url, file, concurrency, seed] = process.argv.slice(2);
const bodies = JSON.parse(readFileSync(file, 'utf8'));
const client = new OpenAI({ baseURL: url, apiKey: 'EMPTY', maxRetries: 2 });
let next = 0;
let answered = 0;
const lane = async () => {
  while (next < bodies.length) {
    const body = bodies[next++];
    const res = await client.chat.completions.create({ ...body, seed: Number(seed) + body.seed });
    if (/\\b[A-Z]\\b/.test(res.choices[0]?.message?.content ?? '')) answered++;
  }
};
await Promise.all(Array.from({ length: Number(concurrency) }, lane));
console.log(bodies.length + ' calls, ' + answered + ' answered');
`;

const fmt = (xs: number[]) => `${median(xs).toFixed(2)} s (${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)})`;

async function main(cleanups: Cleanups): Promise<void> {
  const stale = staleReason();
  if (stale !== undefined) throw new Error(`dist/ is not usable (${stale}): run \`npm run build\` first`);
  const staleBaseline = BASELINE ? staleReason(BASELINE) : undefined;
  if (staleBaseline !== undefined) throw new Error(`${BASELINE}/dist/ is not usable (${staleBaseline}): run \`npm run build\` there first`);

  const databaseUrl = await temporaryDatabase(cleanups);
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  cleanups.add(() => db.end());
  const address = await temporalAddress(cleanups);
  const simUrl = await spawnSimulator(
    { seed: 3, truth: DATA, latency: { kind: 'fixed', ms: LATENCY }, models: { judge: { behaviour: 'judge', accuracy: 0.8 } } },
    cleanups,
  );
  const dir = mkdtempSync(join(tmpdir(), 'jf-bench-short-'));
  cleanups.add(() => rmSync(dir, { recursive: true, force: true }));
  const taskQueue = `bench-short-${Date.now()}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: databaseUrl,
    TEMPORAL_ADDRESS: address,
    JUDGEFLOW_TASK_QUEUE: taskQueue,
    JUDGEFLOW_STATE_DIR: join(dir, 'state'),
  };

  // Worker start first, each on a queue of its own, so no job is picked up by them.
  const workerTimes: Record<Cli, number[]> = { compiled: [], tsx: [] };
  for (let r = 0; r < WORKER_ROUNDS; r++) {
    for (const which of (r % 2 === 0 ? ['compiled', 'tsx'] : ['tsx', 'compiled']) as Cli[]) {
      const cmd = which === 'compiled' ? [join(REPO, 'bin', 'worker.mjs')] : ['--import', 'tsx', join(REPO, 'worker.ts')];
      workerTimes[which].push(await workerStart(cmd, { ...env, JUDGEFLOW_TASK_QUEUE: `${taskQueue}-start-${which}-${r}` }));
    }
  }

  // The stack's worker: compiled, started once, up for every job below (and the baseline's, on its own queue).
  const startStackWorker = async (root: string, workerEnv: NodeJS.ProcessEnv) => {
    const prof = WORKER_PROF !== undefined && root === REPO ? ['--cpu-prof', `--cpu-prof-dir=${WORKER_PROF}`] : [];
    const worker = spawn(process.execPath, [...prof, join(root, 'bin', 'worker.mjs')], { cwd: root, env: workerEnv, stdio: ['ignore', 'pipe', 'ignore'] });
    await new Promise<void>((resolve, reject) => {
      let out = '';
      worker.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (/judgeflow worker: task queue/.test(out)) resolve();
      });
      worker.once('exit', (code) => reject(new Error(`the worker exited (${code}):\n${out}`)));
    });
    worker.removeAllListeners('exit');
    cleanups.add(async () => {
      const exited = new Promise((r) => worker.once('exit', r));
      worker.kill('SIGTERM');
      await exited;
    });
  };
  await startStackWorker(REPO, env);
  const envOf: Record<Cli, NodeJS.ProcessEnv> = { compiled: env, tsx: env };
  if (BASELINE) {
    envOf.tsx = { ...env, JUDGEFLOW_TASK_QUEUE: `${taskQueue}-baseline` };
    await startStackWorker(BASELINE, envOf.tsx);
  }

  const spec = join(dir, 'short-job.yaml');
  writeFileSync(
    spec,
    YAML.stringify({
      name: 'bench-short-job',
      seed: 1,
      endpoints: { judge: { base_url: simUrl, model: 'judge', concurrency: CONCURRENCY } },
      datasets: { vlrb: { path: DATA, limit: Math.ceil(REQUESTS / 2) } },
      // reuse: false, so the re-run under a new label measures the request cache, not stage reuse.
      stages: [{ id: 'eval', uses: 'evaluate', reuse: false, with: { dataset: 'vlrb', judge: 'judge', positions: 'swap', samples: 1 } }],
    }),
  );
  let seed = 1000;
  let label = 0;
  const check = (what: string, res: Exit, cached: boolean): Exit => {
    if (res.code !== 0) throw new Error(`${what} exited ${res.code}:\n${res.stderr}\n${res.stdout}`);
    const m = /(\d+) \((\d+) cached\)/.exec(res.stdout);
    if (!m || Number(m[1]) !== REQUESTS || (Number(m[2]) === REQUESTS) !== cached) {
      throw new Error(`${what}: expected ${REQUESTS} requests, ${cached ? 'all' : 'none'} cached; got "${m?.[0] ?? '(no results table)'}"`);
    }
    return res;
  };
  const kinds = async (cli: Cli) => {
    const res = await timed([...CLI[cli], 'kinds'], envOf[cli]);
    if (res.code !== 0 || !/evaluate/.test(res.stdout)) throw new Error(`kinds exited ${res.code}:\n${res.stderr}`);
    return res;
  };
  // Where a compiled job's time goes, from its own rows' timestamps (the run row is written at launch).
  const segments: number[][] = [];
  const timeline = async (res: Exit, into: number[][]): Promise<void> => {
    const runId = /run (\S+): started/.exec(res.stderr)?.[1];
    const { rows } = await db.query<Record<string, string>>(
      `select extract(epoch from r.created_at) * 1000 as launched,
              (select extract(epoch from min(x.finished_at)) * 1000 from inference_requests q join inference_results x on x.request_id = q.id where q.run_id = r.id) as first_result,
              (select extract(epoch from max(x.finished_at)) * 1000 from inference_requests q join inference_results x on x.request_id = q.id where q.run_id = r.id) as last_result,
              extract(epoch from r.finished_at) * 1000 as finished
       from runs r where r.id = $1`,
      [runId],
    );
    const t = rows[0];
    if (!t) throw new Error(`no run row for ${runId}`);
    const points = [res.startedAt, Number(t.launched), Number(t.first_result), Number(t.last_result), Number(t.finished), res.exitedAt];
    into.push(points.slice(1).map((p, i) => p - points[i]!));
  };
  const otherSegments: number[][] = [];
  const job = async (cli: Cli) => {
    const res = check('job', await timed([...CLI[cli], 'run', spec, '--set', `seed=${seed++}`], envOf[cli]), false);
    if (cli === 'compiled') await timeline(res, segments);
    else if (BASELINE) await timeline(res, otherSegments);
    return res;
  };
  const rerun = async (cli: Cli) => check('re-run', await timed([...CLI[cli], 'run', spec, '--label', `again-${label++}`], envOf[cli]), true);

  console.log(
    `short-jobs benchmark: ${REQUESTS} calls (${REQUESTS / 2} items x 2 orders) at ${LATENCY} ms, concurrency ${CONCURRENCY}; ideal network time ${IDEAL_S.toFixed(2)} s; ${ROUNDS} rounds`,
  );
  // Warm-up: JIT, connections, the worker's first workflow, the dataset import, the cache.
  const warm = check('warm-up', await timed([...CLI.compiled, 'run', spec], env), false);

  // The plain script's calls: the warm-up job's request bodies, as sent (seed + sample index).
  const warmRun = /run (\S+): started/.exec(warm.stderr)?.[1];
  const { rows: bodies } = await db.query<{ body: { messages: unknown[]; params: Record<string, unknown> }; sample_index: number }>(
    `select b.body, q.sample_index from inference_requests q join request_bodies b on b.hash = q.body_hash where q.run_id = $1 order by q.id`,
    [warmRun],
  );
  if (bodies.length !== REQUESTS) throw new Error(`the warm-up run ${warmRun} has ${bodies.length} request rows, expected ${REQUESTS}`);
  if (JSON.stringify(bodies).includes('"image_ref"')) throw new Error('the plain script sends text only; this dataset has images');
  const plainBodies = join(dir, 'plain-requests.json');
  writeFileSync(plainBodies, JSON.stringify(bodies.map((r) => ({ ...r.body.params, model: 'judge', messages: r.body.messages, seed: r.sample_index }))));
  const plainScript = join(dir, 'plain.mjs');
  writeFileSync(plainScript, PLAIN_SCRIPT);
  const plainEnv = { ...env, PLAIN_OPENAI: pathToFileURL(join(REPO, 'node_modules', 'openai', 'index.mjs')).href };
  const plain = async (): Promise<Exit> => {
    const res = await timed([plainScript, simUrl, plainBodies, String(CONCURRENCY), String(seed++)], plainEnv);
    if (res.code !== 0 || !res.stdout.includes(`${REQUESTS} calls`)) throw new Error(`the plain script exited ${res.code}:\n${res.stderr}`);
    return res;
  };
  await plain();
  for (const cli of ['compiled', 'tsx'] as Cli[]) await job(cli);
  segments.length = 0;
  otherSegments.length = 0;

  const both = () => ({ compiled: [] as number[], tsx: [] as number[] });
  const times = { kinds: both(), job: both(), rerun: both() };
  const plainTimes: number[] = [];
  const cpu = { kinds: both(), job: both(), rerun: both() };
  const runs = { kinds, job, rerun };
  for (let r = 0; r < ROUNDS; r++) {
    const order: Cli[] = r % 2 === 0 ? ['compiled', 'tsx'] : ['tsx', 'compiled'];
    for (const what of ['kinds', 'job', 'rerun'] as const) {
      for (const cli of order) {
        if (IDLE_S > 0 && what !== 'kinds') await new Promise((r) => setTimeout(r, IDLE_S * 1000));
        const res = await runs[what](cli);
        times[what][cli].push(res.seconds);
        cpu[what][cli].push(res.cpu);
      }
    }
    plainTimes.push((await plain()).seconds);
    console.log(
      `  round ${r + 1}: ` +
        (['kinds', 'job', 'rerun'] as const).map((k) => `${k} ${times[k].compiled.at(-1)!.toFixed(2)} / ${times[k].tsx.at(-1)!.toFixed(2)} s`).join(', ') +
        ` (compiled / ${OTHER}); plain script ${plainTimes.at(-1)!.toFixed(2)} s`,
    );
  }

  const row = (what: string, xs: Record<Cli, number[]>, target: string, cpus?: Record<Cli, number[]>) =>
    `| ${what} | ${fmt(xs.compiled)} | ${fmt(xs.tsx)} | ${(median(xs.tsx) / median(xs.compiled)).toFixed(2)}x | ` +
    `${cpus ? `${median(cpus.compiled).toFixed(2)} / ${median(cpus.tsx).toFixed(2)} s` : ''} | ${target} |`;
  console.log("\nwhole process, wall time median (min-max); the CLI process's CPU time (user + sys) median:");
  console.log(`| what | compiled CLI | ${OTHER} CLI | ${OTHER} / compiled | CPU compiled / ${OTHER} | target (compiled, wall) |`);
  console.log('|---|---|---|---|---|---|');
  console.log(row('`judgeflow kinds` (CLI start)', times.kinds, '≤ 0.30 s', cpu.kinds));
  console.log(row(`the ${REQUESTS}-call job (ideal ${IDEAL_S.toFixed(2)} s)`, times.job, `≤ ${(1.3 * IDEAL_S).toFixed(2)} s (1.3x ideal)`, cpu.job));
  console.log(row('its cached re-run', times.rerun, '≤ 1.00 s', cpu.rerun));
  if (WORKER_ROUNDS > 0) console.log(row(`worker start to polling (${WORKER_ROUNDS} rounds, this checkout: compiled / tsx)`, workerTimes, 'none'));
  console.log(
    `\nthe job / its ideal network time: ${(median(times.job.compiled) / IDEAL_S).toFixed(2)}x compiled, ${(median(times.job.tsx) / IDEAL_S).toFixed(2)}x ${OTHER}`,
  );
  console.log(
    `the same ${REQUESTS} calls from a plain openai script (whole process; no durability, cache or records): ${fmt(plainTimes)}, ` +
      `${(median(plainTimes) / IDEAL_S).toFixed(2)}x ideal; the job / the plain script: ${(median(times.job.compiled) / median(plainTimes)).toFixed(2)}x compiled, ` +
      `${(median(times.job.tsx) / median(plainTimes)).toFixed(2)}x ${OTHER}`,
  );
  const where = (what: string, segs: number[][]) => {
    const seg = (i: number) => `${median(segs.map((s) => s[i]!)).toFixed(0)} ms`;
    console.log(
      `where the ${what} job's time goes (medians): spawn → run row ${seg(0)}, → first result ${seg(1)}, ` +
        `first → last result ${seg(2)} (ideal ${(IDEAL_S * 1000).toFixed(0)}), → run finished ${seg(3)}, → process exit ${seg(4)}`,
    );
  };
  where('compiled', segments);
  if (BASELINE) where('baseline', otherSegments);
}

const cleanups = new Cleanups();
try {
  await main(cleanups);
} finally {
  await cleanups.run();
}
