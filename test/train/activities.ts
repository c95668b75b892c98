import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Db } from '../../db/client.js';

export function createTrainTestActivities(db: Db) {
  return {
    /** Records a TRL JSONL file as a sealed sft-set artifact of the stage (idempotent). */
    async registerSftFile({ runId, stageId, path }: { runId: string; stageId: string; path: string }): Promise<{ artifactId: number; rows: number }> {
      const text = readFileSync(path, 'utf8');
      const rows = text.split('\n').filter((l) => l.trim() !== '').length;
      const hash = createHash('sha256').update(text).digest('hex');
      const r = await db.$client.query<{ id: number }>(
        `insert into artifacts (kind, name, run_id, stage_id, source, format, content_hash, rows, summary, sealed_at)
         values ('sft-set', 'sft', $1, $2, $3, 'trl-jsonl', $4, $5, '{}', now())
         on conflict (run_id, stage_id, name) do update set source = excluded.source returning id`,
        [runId, stageId, path, hash, rows],
      );
      return { artifactId: r.rows[0]!.id, rows };
    },
  };
}
export type TrainTestActivities = ReturnType<typeof createTrainTestActivities>;
