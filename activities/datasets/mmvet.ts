/**
 * The MM-Vet format: one JSON object `{ "<id>": { imagename, capability: [..], question, answer } }`
 * and a folder of images (`images:`, default `<file's folder>/images`). Answers may join parts with
 * `<AND>` (all needed) or `<OR>` (any one); they are kept verbatim for the grader. The capability
 * tags go to the item's `meta.capability` (the sweep's per-capability scores). The set itself is
 * research-only licensed: judgeflow reads it from the user's path and never ships it.
 */
import type { RowIssue } from './mc.js';
import { DatasetError } from './mc.js';
import type { RawRow } from './qa.js';

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Rows of an MM-Vet file, numbered 1.. in the object's order; bad records become issues. */
export function mmvetRows(bytes: Buffer, path: string, issues: RowIssue[]): RawRow[] {
  let all: unknown;
  try {
    all = JSON.parse(bytes.toString('utf8').replace(/^\uFEFF/, ''));
  } catch (err) {
    throw new DatasetError(`${path}: MM-Vet file is not JSON: ${(err as Error).message}`, { path, cause: err });
  }
  if (!isRecord(all)) throw new DatasetError(`${path}: an MM-Vet file is one object {"<id>": {imagename, capability, question, answer}}`, { path });
  const rows: RawRow[] = [];
  Object.entries(all).forEach(([id, rec], i) => {
    const line = i + 1;
    if (!isRecord(rec)) return void issues.push({ line, reason: `record "${id}" is not an object` });
    if (typeof rec.imagename !== 'string' || rec.imagename === '') return void issues.push({ line, reason: `record "${id}" has no imagename` });
    const caps = rec.capability;
    if (caps !== undefined && !(Array.isArray(caps) && caps.every((c) => typeof c === 'string')))
      return void issues.push({ line, reason: `record "${id}": capability is not a list of strings` });
    rows.push({ line, id, question: rec.question, answer: rec.answer, image: { file: rec.imagename }, meta: { capability: caps ?? [] } });
  });
  return rows;
}

/** Whether a file's first bytes look like an MM-Vet object (`{"<id>": {"imagename": …`). */
export function looksLikeMmvet(head: string): boolean {
  return /^\s*\{\s*"[^"]+"\s*:\s*\{[^{}]*"imagename"\s*:/.test(head);
}
