import { runArtifacts, type ArtifactListing } from '../../db/artifacts.js';
import { getRun } from '../../db/queries.js';
import { parseFlags } from '../args.js';
import { connect } from '../connect.js';
import { EXIT, UsageError } from '../errors.js';
import { table } from '../render.js';

const USAGE = `usage: judgeflow artifacts <run> [--json]

Lists the artifacts of a run: the datasets it imported and what its stages produced, with kind,
rows, content hash and parent artifacts (lineage).
  --json   the artifacts as JSON (with their summaries)`;

export async function artifactsCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, { json: { type: 'boolean' } }, USAGE);
  if (positionals.length !== 1) throw new UsageError(`expected one run id\n\n${USAGE}`);
  const conn = await connect();
  try {
    const runId = positionals[0]!;
    if (!(await getRun(conn.db.db, runId))) throw new UsageError(`no run "${runId}"; \`judgeflow list\` shows the runs`);
    const list = await runArtifacts(conn.db.db, runId);
    console.log(values.json ? JSON.stringify(list) : renderArtifacts(list));
    return EXIT.ok;
  } finally {
    await conn.close();
  }
}

export function renderArtifacts(list: readonly ArtifactListing[]): string {
  if (list.length === 0) return 'no artifacts yet';
  return table(
    ['id', 'kind', 'name', 'producer', 'rows', 'hash', 'parents'],
    list.map((a) => [
      a.id,
      a.kind,
      a.name,
      a.stageId ? `stage ${a.stageId}${a.sealed ? '' : ' (open)'}` : `import ${a.format ?? ''}`,
      a.rows,
      a.contentHash.slice(0, 12),
      a.parents.join(', '),
    ]),
  );
}
