/** Spec-time checks of `datasets:` entries: where the file is, and whether it has valid rows. */
import { existsSync, statSync, type BigIntStats } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { DatasetError, importedSource, loadSource, type DatasetSource, type LoadedSource } from '../activities/datasets/index.js';
import { locateEasyVqa } from '../activities/datasets/qa.js';
import type { DatasetRef, StagePlan } from '../workflows/types.js';
import type { SpecIssue } from './kinds.js';
import type { DatasetSpec } from './schema.js';

/** The dataset's absolute path (easy-vqa without `path`: the installed package's data folder), or an issue. */
export function resolveDatasetPath(ds: DatasetSpec, specDir: string, at: string, issues: SpecIssue[]): string | undefined {
  if (ds.path === undefined) {
    if (ds.format !== 'easy-vqa') {
      issues.push({ path: `${at}.path`, message: 'path is required (only format easy-vqa finds its data by itself)' });
      return undefined;
    }
    try {
      return locateEasyVqa();
    } catch (err) {
      if (!(err instanceof DatasetError)) throw err;
      issues.push({ path: at, message: err.message });
      return undefined;
    }
  }
  const abs = isAbsolute(ds.path) ? ds.path : resolve(specDir, ds.path);
  if (!existsSync(abs)) {
    issues.push({ path: `${at}.path`, message: `file not found: ${abs}` });
    return undefined;
  }
  return abs;
}

/**
 * Loads every dataset the plan reads, once and whole (as the import will): a dataset with no
 * valid row is an error; rows it skips (an unreadable or undownloadable image among them) are a
 * warning. The check writes nothing; the loads are returned by dataset name so the launch imports
 * them without reading the files (and downloading their URL images) a second time.
 */
export async function checkDatasets(plan: readonly StagePlan[]): Promise<{ issues: SpecIssue[]; sources: Map<string, LoadedSource> }> {
  const seen = new Map<string, DatasetRef>();
  for (const s of plan) for (const d of Object.values(s.datasets)) seen.set(d.name, d);
  const issues: SpecIssue[] = [];
  const sources = new Map<string, LoadedSource>();
  for (const ref of seen.values()) {
    try {
      const loaded = await loadSourceOnce(importedSource(ref));
      sources.set(ref.name, loaded);
      if (loaded.issues.length > 0) {
        const shown = loaded.issues
          .slice(0, 5)
          .map((i) => `line ${i.line}: ${i.reason}`)
          .join('; ');
        const more = loaded.issues.length > 5 ? `; … ${loaded.issues.length - 5} more (stored with the dataset)` : '';
        issues.push({ path: `datasets.${ref.name}`, warning: true, message: `${loaded.issues.length} row(s) skipped: ${shown}${more}` });
      }
    } catch (err) {
      if (!(err instanceof DatasetError)) throw err;
      issues.push({ path: `datasets.${ref.name}`, message: err.message });
    }
  }
  return { issues, sources };
}

/**
 * The last loads, by path, for the next check of the same file: the resident launcher checks spec
 * after spec over the same dataset (a new seed, a new label), and each check would otherwise read
 * and parse it again. A load is used again only for the same options and the same file: same
 * device, inode, size, modification and change times (a file written since, even to the same
 * size with its modification time set back, has a new change time and is read again).
 *
 * Kept only: loads that read nothing but the file (no image folder, no URL image: those can change
 * without the file changing); files of at most MEMO_MAX_FILE_BYTES, MEMO_MAX_FILES of them; files
 * last changed at least MEMO_SETTLED_MS before the load began (a write in the same tick of the
 * file system's clock as the load would not change the times the next check compares).
 */
const MEMO_MAX_FILES = 4;
const MEMO_MAX_FILE_BYTES = 32 * 1024 * 1024;
const MEMO_SETTLED_MS = 1_000;
const memo = new Map<string, { key: string; loaded: LoadedSource }>();

async function loadSourceOnce(source: DatasetSource): Promise<LoadedSource> {
  let st: BigIntStats;
  try {
    st = statSync(source.path, { bigint: true });
  } catch {
    return loadSource(source); // the load reports the unreadable file
  }
  const statedAt = Date.now();
  const key = JSON.stringify([source, ...[st.dev, st.ino, st.size, st.mtimeNs, st.ctimeNs].map(String)]);
  const kept = memo.get(source.path);
  memo.delete(source.path);
  if (kept?.key === key) {
    memo.set(source.path, kept); // the most recently used last
    return kept.loaded;
  }
  const loaded = await loadSource(source);
  const settled = Math.max(Number(st.mtimeMs), Number(st.ctimeMs)) <= statedAt - MEMO_SETTLED_MS;
  const fileOnly =
    source.images === undefined && loaded.kind === 'mc-items' && (loaded.format === 'vl-rewardbench-parquet' || loaded.items.every((i) => !i.image?.bytes));
  if (settled && fileOnly && st.size <= MEMO_MAX_FILE_BYTES) {
    memo.set(source.path, { key, loaded });
    while (memo.size > MEMO_MAX_FILES) memo.delete(memo.keys().next().value!);
  }
  return loaded;
}
