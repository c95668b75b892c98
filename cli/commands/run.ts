import { WorkflowFailedError } from '@temporalio/client';
import { loadSpec } from '../../spec/load.js';
import { parseFlags } from '../args.js';
import { connect, type Connected } from '../connect.js';
import { EXIT, UsageError } from '../errors.js';
import { launchRun } from '../launch.js';
import { ensureSimulator } from '../simulator.js';
import { planGroup } from '../ablation-group.js';
import { runGroup } from './group.js';
import { watchRun } from './status.js';

const USAGE = `usage: judgeflow run <name|path> [--set path=value]... [--label L] [--detach] [--json]

Launches the named experiment (experiments/<name>.yaml) or the spec at path. The run id derives
from the experiment name, the spec version (hash after overrides) and the label, so running the
same command again attaches to the existing run; a failed or cancelled run is resumed (stages
that succeeded are kept, cached inference is not paid twice).
  --set path=value   override any spec field, e.g. --set endpoints.judge.base_url=http://gpu-1:8000/v1
                     or --set stages.eval.with.samples=5 (a stage may be named by its id)
  --label L          a label for this run (part of its id): ablations of one spec
  --detach           start and return; follow with \`judgeflow status <run> --watch\`
  --json             machine-readable output`;

export async function runCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    { set: { type: 'string', multiple: true }, label: { type: 'string' }, detach: { type: 'boolean' }, json: { type: 'boolean' } },
    USAGE,
  );
  if (positionals.length !== 1) throw new UsageError(`expected one experiment name or spec path\n\n${USAGE}`);
  if (values.label !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(values.label)) {
    throw new UsageError(`--label "${values.label}": use letters, digits, ".", "_" and "-"`);
  }
  // Everything about the spec is checked before any server is touched or any row written.
  const loaded = await loadSpec(positionals[0]!, { sets: values.set ?? [] });
  const log = values.json ? () => {} : (line: string) => console.error(line);
  for (const w of loaded.warnings) console.error(`warning: ${w}`);
  // A spec with ablations: is a group of runs (cli/commands/group.ts).
  const group = loaded.spec.ablations ? await planGroup(loaded, { sets: values.set ?? [], label: values.label }) : undefined;
  const conn = await connect({ startWorker: true, log });
  try {
    if (loaded.spec.simulator) {
      await ensureSimulator({ stateDir: conn.cfg.stateDir, specPath: loaded.specPath, ...loaded.spec.simulator, log });
    }
    if (group) return await runGroup(conn, group, { detach: Boolean(values.detach), json: Boolean(values.json), log });
    await warnWithoutWorkers(conn, [conn.cfg.taskQueue, ...loaded.plan.flatMap((s) => (s.taskQueue ? [s.taskQueue] : []))], log);
    const launched = await launchRun({ loaded, label: values.label, db: conn.db.db, client: conn.client, taskQueue: conn.cfg.taskQueue });
    if (!values.json) {
      if (launched.attached) console.error(`run ${launched.runId} already exists for this spec version: attaching to it (no second run started)`);
      else if (launched.resumed) console.error(`run ${launched.runId}: resuming (succeeded stages are kept)`);
      else console.error(`run ${launched.runId}: started`);
    }
    if (values.detach) {
      if (values.json) console.log(JSON.stringify({ runId: launched.runId, attached: launched.attached, resumed: launched.resumed }));
      return EXIT.ok;
    }
    return await watchRun(conn, launched.runId, { json: Boolean(values.json), attached: launched.attached });
  } finally {
    await conn.close();
  }
}

export function isRunFailure(err: unknown): boolean {
  return err instanceof WorkflowFailedError;
}

/** A run on a queue no worker polls waits forever: say so, with the command that fixes it. */
async function warnWithoutWorkers(conn: Connected, queues: string[], log: (line: string) => void): Promise<void> {
  for (const queue of new Set(queues)) {
    const res = await conn.client.workflowService.describeTaskQueue({
      namespace: conn.cfg.namespace,
      taskQueue: { name: queue },
      taskQueueType: queue === conn.cfg.taskQueue ? 1 : 2,
    });
    if ((res.pollers ?? []).length === 0) {
      log(`warning: no worker polls task queue "${queue}" yet; the run waits until one does (start one with \`judgeflow worker${queue === conn.cfg.taskQueue ? '' : ` --task-queue ${queue}`}\`)`);
    }
  }
}
