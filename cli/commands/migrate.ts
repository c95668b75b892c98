import { parseFlags } from '../args.js';
import { connect, redactUrl } from '../connect.js';
import { EXIT } from '../errors.js';

const USAGE = `usage: judgeflow migrate

Applies the committed database migrations (they also apply at every worker and CLI start).`;

export async function migrateCommand(argv: string[]): Promise<number> {
  parseFlags(argv, {}, USAGE);
  const conn = await connect();
  try {
    const { rows } = await conn.db.pool.query<{ n: string }>('select count(*)::text as n from drizzle.__drizzle_migrations');
    console.log(`migrations applied on ${redactUrl(conn.databaseUrl)}: ${rows[0]?.n ?? 0}`);
    return EXIT.ok;
  } finally {
    await conn.close();
  }
}
