import { listRuns } from '../../db/queries.js';
import { parseFlags } from '../args.js';
import { connect } from '../connect.js';
import { EXIT, UsageError } from '../errors.js';
import { groupRuns } from '../../db/groups.js';
import { renderGroup } from './group.js';
import { duration, table } from '../render.js';

const USAGE = `usage: judgeflow list [--limit N] [--group G] [--json]

Lists runs, newest first, from Postgres. --group G lists the runs of an ablation group with their axis values.`;

export async function listCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { limit: { type: 'string' }, group: { type: 'string' }, json: { type: 'boolean' } }, USAGE);
  const limit = values.limit === undefined ? 50 : Number(values.limit);
  if (!Number.isInteger(limit) || limit <= 0) throw new UsageError(`--limit must be a positive whole number, got "${values.limit}"`);
  const conn = await connect();
  try {
    if (values.group !== undefined) {
      const runs = await groupRuns(conn.db.db, values.group);
      if (runs.length === 0) throw new UsageError(`no group "${values.group}"; \`judgeflow list\` shows runs with their groups`);
      console.log(values.json ? JSON.stringify(runs) : renderGroup(values.group, runs));
      return EXIT.ok;
    }
    const rows = await listRuns(conn.db.db, limit);
    if (values.json) {
      console.log(JSON.stringify(rows));
      return EXIT.ok;
    }
    if (rows.length === 0) {
      console.log('no runs yet: `judgeflow run <experiment>` launches one');
      return EXIT.ok;
    }
    console.log(
      table(
        ['run', 'experiment', 'label', 'status', 'created', 'took'],
        rows.map((r) => [
          r.id,
          r.experiment,
          r.label,
          r.status,
          r.createdAt.toISOString().replace('T', ' ').slice(0, 19),
          r.startedAt && r.finishedAt ? duration((r.finishedAt.getTime() - r.startedAt.getTime()) / 1000) : '',
        ]),
      ),
    );
    return EXIT.ok;
  } finally {
    await conn.close();
  }
}
