import { WorkflowFailedError } from '@temporalio/client';
import { getRun } from '../../db/queries.js';
import { parseFlags } from '../args.js';
import { connect } from '../connect.js';
import { EXIT, UsageError } from '../errors.js';
import { groupRuns } from '../../db/groups.js';
import { groupCancel } from './group.js';

const USAGE = `usage: judgeflow cancel <run|group> [--json]

Cancels a run (or every running run of an ablation group): its running stages are cancelled, pending ones never start. Launching the same
experiment again resumes it.`;

export async function cancelCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, { json: { type: 'boolean' } }, USAGE);
  if (positionals.length !== 1) throw new UsageError(`expected one run id\n\n${USAGE}`);
  const runId = positionals[0]!;
  const conn = await connect();
  try {
    if (!(await getRun(conn.db.db, runId))) {
      if ((await groupRuns(conn.db.db, runId)).length > 0) return await groupCancel(conn, runId, Boolean(values.json));
      throw new UsageError(`no run or group "${runId}"; \`judgeflow list\` shows the runs`);
    }
    const handle = conn.client.workflow.getHandle(runId);
    const desc = await handle.describe();
    if (desc.status.name !== 'RUNNING') {
      console.log(
        values.json ? JSON.stringify({ runId, status: desc.status.name.toLowerCase() }) : `run ${runId} is not running (${desc.status.name.toLowerCase()})`,
      );
      return EXIT.ok;
    }
    await handle.cancel();
    await handle.result().catch((err: unknown) => {
      if (!(err instanceof WorkflowFailedError)) throw err;
    });
    console.log(values.json ? JSON.stringify({ runId, status: 'cancelled' }) : `run ${runId}: cancelled`);
    return EXIT.ok;
  } finally {
    await conn.close();
  }
}
