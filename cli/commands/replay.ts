import { parseFlags } from '../args.js';
import { connect } from '../connect.js';
import { EXIT, UsageError } from '../errors.js';
import { launchRun } from '../launch.js';
import { planReplay } from '../replay-plan.js';
import { ensureSimulator } from '../simulator.js';
import { watchRun } from './status.js';

const USAGE = `usage: judgeflow replay <run> --from <stage> [--set path=value]... [--label L] [--failed-items] [--detach] [--json]

Launches a new run of the run's experiment (its spec as recorded, with its overrides and these)
that takes every stage not downstream of <stage> from the run, by reference (same artifact ids,
nothing re-run or copied), and recomputes <stage> and the stages that need it. Requests already
answered anywhere come from the cache and cost nothing.
  --from S          the first stage to recompute
  --set path=value  overrides for the recomputed stages (a change to an upstream stage is refused)
  --label L         the new run's label (default replay-<stage>)
  --failed-items    recompute <stage> unchanged: only its failed requests are sent again
  --detach          start and return
  --json            machine-readable output`;

export async function replayCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    {
      from: { type: 'string' },
      set: { type: 'string', multiple: true },
      label: { type: 'string' },
      'failed-items': { type: 'boolean' },
      detach: { type: 'boolean' },
      json: { type: 'boolean' },
    },
    USAGE,
  );
  if (positionals.length !== 1) throw new UsageError(`expected one run id\n\n${USAGE}`);
  if (!values.from) throw new UsageError(`--from <stage> is required\n\n${USAGE}`);
  if (values.label !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(values.label))
    throw new UsageError(`--label "${values.label}": use letters, digits, ".", "_" and "-"`);
  const log = values.json ? () => {} : (line: string) => console.error(line);
  const conn = await connect({ startWorker: true, log });
  try {
    const plan = await planReplay(conn.db.db, {
      runId: positionals[0]!,
      from: values.from,
      sets: values.set ?? [],
      label: values.label,
      failedItems: values['failed-items'],
    });
    for (const w of plan.loaded.warnings) console.error(`warning: ${w}`);
    if (plan.loaded.spec.simulator) await ensureSimulator({ stateDir: conn.cfg.stateDir, specPath: plan.loaded.specPath, ...plan.loaded.spec.simulator, log });
    const launched = await launchRun({
      loaded: plan.loaded,
      label: values.label,
      db: conn.db.db,
      client: conn.client,
      taskQueue: conn.cfg.taskQueue,
      ...plan.extras,
    });
    const kept = Object.keys(plan.extras.reused ?? {});
    if (!values.json) {
      console.error(
        launched.attached
          ? `run ${launched.runId} already exists: attaching to it`
          : `run ${launched.runId}: replay of ${positionals[0]} from ${values.from}; kept ${kept.join(', ') || 'nothing'}, recomputing ${plan.recomputed.join(', ')}`,
      );
    }
    if (values.detach) {
      if (values.json) console.log(JSON.stringify({ runId: launched.runId, attached: launched.attached, kept, recomputed: plan.recomputed }));
      return EXIT.ok;
    }
    return await watchRun(conn, launched.runId, { json: Boolean(values.json), attached: launched.attached });
  } finally {
    await conn.close();
  }
}
