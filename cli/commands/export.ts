import { resolve } from 'node:path';
import { EXPORT_FORMATS, ExportError, exportArtifact, type ExportFormat } from '../../activities/datasets/export.js';
import { TRAINING_FORMATS, type TrainingFormat } from '../../activities/distill/export.js';
import { runArtifacts } from '../../db/artifacts.js';
import { getRun } from '../../db/queries.js';
import { parseFlags } from '../args.js';
import { connect } from '../connect.js';
import { EXIT, UsageError } from '../errors.js';

const USAGE = `usage: judgeflow export <run> <stage> [--artifact NAME] --format F --out PATH [--split train|validation] [--json]

Writes an artifact of a stage to a file (images beside it in PATH.images/).
  --artifact NAME   which artifact of the stage (default: its only one)
  --format F        ${Object.entries(EXPORT_FORMATS)
    .map(([f, k]) => `${f} (${k})`)
    .join(', ')},
                    ${Object.entries(TRAINING_FORMATS)
                      .map(([f, k]) => `${f} (${k.join(', ')})`)
                      .join(', ')}
  --out PATH        the file to write
  --split S         training sets: only the train or validation rows (default: all)
  --json            print {artifact, rows, images, out} as JSON`;

export async function exportCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    { artifact: { type: 'string' }, format: { type: 'string' }, out: { type: 'string' }, split: { type: 'string' }, json: { type: 'boolean' } },
    USAGE,
  );
  if (positionals.length !== 2) throw new UsageError(`expected a run id and a stage id\n\n${USAGE}`);
  const formats = [...Object.keys(EXPORT_FORMATS), ...Object.keys(TRAINING_FORMATS)];
  if (!values.format || !formats.includes(values.format)) throw new UsageError(`--format must be one of ${formats.join(', ')}\n\n${USAGE}`);
  if (!values.out) throw new UsageError(`--out PATH is required\n\n${USAGE}`);
  if (values.split !== undefined && values.split !== 'train' && values.split !== 'validation')
    throw new UsageError(`--split must be train or validation\n\n${USAGE}`);
  if (values.split !== undefined && !(values.format in TRAINING_FORMATS))
    throw new UsageError(`--split applies to the training-set formats (${Object.keys(TRAINING_FORMATS).join(', ')})\n\n${USAGE}`);
  const [runId, stageId] = positionals as [string, string];
  const conn = await connect();
  try {
    if (!(await getRun(conn.db.db, runId))) throw new UsageError(`no run "${runId}"; \`judgeflow list\` shows the runs`);
    const all = await runArtifacts(conn.db.db, runId);
    const ofStage = all.filter((a) => a.stageId === stageId);
    if (ofStage.length === 0) {
      const producers = [...new Set(all.map((a) => a.stageId).filter(Boolean))];
      throw new UsageError(`stage "${stageId}" of run ${runId} produced no artifact; stages with artifacts: ${producers.join(', ') || 'none'}`);
    }
    const picked = values.artifact ? ofStage.filter((a) => a.name === values.artifact) : ofStage;
    if (picked.length !== 1) {
      throw new UsageError(
        `${values.artifact ? `no artifact "${values.artifact}"` : 'several artifacts'} in stage "${stageId}": ${ofStage.map((a) => `${a.name} (${a.kind})`).join(', ')}; name one with --artifact`,
      );
    }
    const out = resolve(values.out);
    let res: { rows: number; images: number; sha256?: string };
    try {
      res = await exportArtifact(conn.db.db, picked[0]!.id, {
        format: values.format as ExportFormat | TrainingFormat,
        out,
        ...(values.split ? { split: values.split as 'train' | 'validation' } : {}),
      });
    } catch (err) {
      if (err instanceof ExportError) throw new UsageError(err.message);
      throw err;
    }
    if (values.json)
      console.log(JSON.stringify({ artifact: picked[0]!.id, rows: res.rows, images: res.images, out, ...(res.sha256 ? { sha256: res.sha256 } : {}) }));
    else
      console.log(
        `wrote ${res.rows} ${picked[0]!.kind} row(s) and ${res.images} image(s) of artifact ${picked[0]!.id} to ${out}${res.sha256 ? ` (sha256 ${res.sha256}; file hashes in ${out}.sha256)` : ''}`,
      );
    return EXIT.ok;
  } finally {
    await conn.close();
  }
}
