import { WorkflowFailedError } from '@temporalio/client';
import { loadSpec, type LoadedSpec } from '../../spec/load.js';
import { parseFlags } from '../args.js';
import { connect, type Connected } from '../connect.js';
import { EXIT, UsageError } from '../errors.js';
import { processIo, type Io } from '../io.js';
import { launchRun, type LaunchResult } from '../launch.js';
import { ensureSimulator } from '../simulator.js';
import { noWorkerHint, queuesWithoutWorkers } from '../workers.js';
import { planGroup } from '../ablation-group.js';
import { runGroup } from './group.js';
import { watchRun } from './status.js';

const USAGE = `usage: judgeflow run <name|path> [--set path=value]... [--label L] [--strict] [--detach] [--json]

Launches the named experiment (experiments/<name>.yaml) or the spec at path. The run id derives
from the experiment name, the spec version (hash after overrides) and the label, so running the
same command again attaches to the existing run; a failed or cancelled run is resumed (stages
that succeeded are kept, cached inference is not paid twice).
  --set path=value   override any spec field, e.g. --set endpoints.judge.base_url=http://gpu-1:8000/v1
                     or --set stages.eval.with.samples=5 (a stage may be named by its id)
  --label L          a label for this run (part of its id): ablations of one spec
  --strict           refuse to launch (exit 2) when a dataset row would be skipped (spec: strict: true)
  --detach           start and return; follow with \`judgeflow status <run> --watch\`
  --json             machine-readable output
Following ends with exit 0 (succeeded) or 1 (failed); 3 when contact with Temporal is lost for
longer than JUDGEFLOW_RECONNECT_TIMEOUT_S (default 300) and 130 on Ctrl-C: in both the run goes on,
and \`judgeflow status <run> --watch\` follows it again.`;

/** How a `run` is carried out when a worker's resident launcher (runtime/launcher.ts) runs it. */
export interface RunContext {
  io?: Io;
  /** Servers already connected (left open at the end): the launcher's. */
  connection?: Connected;
  /**
   * Called once the spec is loaded and checked, before anything is printed, started or written:
   * a reason returned hands the command back to the user's own process (the launcher's fallback).
   */
  handOver?: (loaded: LoadedSpec, keys: string[]) => string | undefined | Promise<string | undefined>;
  /** Called once the run is started or attached to. */
  onLaunched?: (launched: LaunchResult) => void;
}

/** Thrown when `handOver` declines the command: the client runs it itself. */
export class HandOver extends Error {
  override readonly name = 'HandOver';
}

export async function runCommand(argv: string[], ctx: RunContext = {}): Promise<number> {
  const io = ctx.io ?? processIo;
  const { values, positionals } = parseFlags(
    argv,
    { set: { type: 'string', multiple: true }, label: { type: 'string' }, strict: { type: 'boolean' }, detach: { type: 'boolean' }, json: { type: 'boolean' } },
    USAGE,
  );
  if (positionals.length !== 1) throw new UsageError(`expected one experiment name or spec path\n\n${USAGE}`);
  if (values.label !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(values.label)) {
    throw new UsageError(`--label "${values.label}": use letters, digits, ".", "_" and "-"`);
  }
  // Everything about the spec is checked before any server is touched or any row written.
  const loaded = await loadSpec(positionals[0]!, { sets: values.set ?? [], strict: Boolean(values.strict), cwd: io.cwd });
  // The embedded worker must see the API keys the endpoints name (restarted with them if not).
  const workerEnv = loaded.plan.flatMap((s) =>
    Object.entries(s.endpoints).flatMap(([name, e]) => (e.api_key_env ? [{ name: e.api_key_env, usedBy: `endpoint "${name}"` }] : [])),
  );
  const declined = await ctx.handOver?.(loaded, [...new Set(workerEnv.map((k) => k.name))]);
  if (declined !== undefined) throw new HandOver(declined);
  const log = values.json ? () => {} : (line: string) => io.err(line);
  for (const w of loaded.warnings) io.err(`warning: ${w}`);
  // A spec with ablations: is a group of runs (cli/commands/group.ts).
  const group = loaded.spec.ablations ? await planGroup(loaded, { sets: values.set ?? [], label: values.label }) : undefined;
  const conn = ctx.connection ?? (await connect({ startWorker: true, log, workerEnv }));
  try {
    if (loaded.spec.simulator) {
      await ensureSimulator({ stateDir: conn.cfg.stateDir, specPath: loaded.specPath, ...loaded.spec.simulator, log });
    }
    if (group) return await runGroup(conn, group, { detach: Boolean(values.detach), json: Boolean(values.json), log });
    const queues = [conn.cfg.taskQueue, ...loaded.plan.flatMap((s) => (s.taskQueue ? [s.taskQueue] : []))];
    // The launch first, then the worker check: a run with no worker waits for one, so the check only
    // warns, and its calls (each the first of its kind for the gRPC client to encode) are not in the
    // way of the run's start.
    const launched = await launchRun({
      loaded,
      label: values.label,
      db: conn.db.db,
      client: conn.client,
      eagerStartClient: conn.eagerStartClient,
      taskQueue: conn.cfg.taskQueue,
    });
    ctx.onLaunched?.(launched);
    const idle = await queuesWithoutWorkers(conn, queues);
    for (const queue of idle) log(`warning: ${noWorkerHint(conn, queue)}`);
    if (!values.json) {
      if (launched.attached) io.err(`run ${launched.runId} already exists for this spec version: attaching to it (no second run started)`);
      else if (launched.resumed) io.err(`run ${launched.runId}: resuming (succeeded stages are kept)`);
      else io.err(`run ${launched.runId}: started`);
    }
    if (values.detach) {
      if (values.json) io.out(JSON.stringify({ runId: launched.runId, attached: launched.attached, resumed: launched.resumed }));
      return EXIT.ok;
    }
    return await watchRun(conn, launched.runId, { json: Boolean(values.json), attached: launched.attached, taskQueues: queues, io });
  } finally {
    if (!ctx.connection) await conn.close();
  }
}

export function isRunFailure(err: unknown): boolean {
  return err instanceof WorkflowFailedError;
}
