/** Spec-time checks of `datasets:` entries: where the file is, and whether it has valid rows. */
import { existsSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { DatasetError, importedSource, loadSource, type LoadedSource } from '../activities/datasets/index.js';
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
      const loaded = await loadSource(importedSource(ref));
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
