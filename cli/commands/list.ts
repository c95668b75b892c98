import { listRuns } from '../../db/queries.js';
import { parseFlags } from '../args.js';
import { connect } from '../connect.js';
import { EXIT } from '../errors.js';
import { duration, table } from '../render.js';

const USAGE = `usage: judgeflow list [--limit N] [--json]

Lists runs, newest first, from Postgres.`;

export async function listCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { limit: { type: 'string' }, json: { type: 'boolean' } }, USAGE);
  const limit = values.limit === undefined ? 50 : Number(values.limit);
  if (!Number.isInteger(limit) || limit <= 0) throw new (await import('../errors.js')).UsageError(`--limit must be a positive whole number, got "${values.limit}"`);
  const conn = await connect();
  try {
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
