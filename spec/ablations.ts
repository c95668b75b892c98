/**
 * `ablations:` in a spec: named axes over spec paths, each with a list of values, crossed into a
 * full grid or listed combination by combination. `judgeflow run` launches one run per
 * combination as a group; each run's spec is the base spec with that combination's values set
 * (and no `ablations:` block), so stages identical across combinations are reused, not re-run.
 *
 * ```yaml
 * ablations:
 *   axes:
 *     judge: { path: stages.eval.with.judge, values: [judge-a, judge-b] }
 *     stages.synth.with.min_negatives: [1, 2, 3]      # a path is its own axis name
 *   combinations: grid                                # default; or a list of { axis: value } maps
 * ```
 */
import { z } from 'zod';
import type { SpecIssue } from './kinds.js';

const value = z.union([z.string(), z.number(), z.boolean(), z.null()]);
const axisSchema = z.union([z.array(value).min(1), z.strictObject({ path: z.string().min(1), values: z.array(value).min(1) })]);

export const ablationsSchema = z.strictObject({
  axes: z.record(z.string().min(1), axisSchema).refine((a) => Object.keys(a).length > 0, 'name at least one axis'),
  combinations: z.union([z.literal('grid'), z.array(z.record(z.string(), value)).min(1)]).default('grid'),
});
export type AblationsSpec = z.infer<typeof ablationsSchema>;
export type AxisValue = z.infer<typeof value>;

export interface Axis {
  name: string;
  path: string;
  values: AxisValue[];
}

/** One run of the group: its axis values and the `--set` overrides that make its spec. */
export interface Combination {
  values: Record<string, AxisValue>;
  sets: string[];
  /** Suffix of the run id after the group id, from the values (`judge-a.2`). */
  slug: string;
}

export function axesOf(ab: AblationsSpec): Axis[] {
  return Object.entries(ab.axes).map(([name, a]) => (Array.isArray(a) ? { name, path: name, values: a } : { name, path: a.path, values: a.values }));
}

const slugPart = (v: AxisValue) => String(v).replace(/[^A-Za-z0-9._-]+/g, '_');

/**
 * The combinations of a group, in order (grid: the first axis varies slowest). Problems are
 * returned as spec issues: an axis value outside its list, a listed combination missing an axis,
 * two combinations that are the same run, a path that names nothing (`exists`).
 */
export function expandAblations(ab: AblationsSpec, exists: (path: string) => boolean): { combinations: Combination[]; issues: SpecIssue[] } {
  const axes = axesOf(ab);
  const issues: SpecIssue[] = [];
  for (const a of axes) {
    if (!exists(a.path))
      issues.push({
        path: `ablations.axes.${a.name}`,
        message: `path "${a.path}" names nothing in the spec; use a path like stages.<id>.with.<param> or endpoints.<name>.model`,
      });
  }
  let rows: Record<string, AxisValue>[];
  if (ab.combinations === 'grid') {
    rows = [{}];
    for (const a of axes) rows = rows.flatMap((r) => a.values.map((v) => ({ ...r, [a.name]: v })));
  } else {
    rows = ab.combinations;
    ab.combinations.forEach((c, i) => {
      for (const a of axes) {
        if (!(a.name in c)) issues.push({ path: `ablations.combinations[${i}]`, message: `no value for axis "${a.name}"` });
        else if (!a.values.some((v) => v === c[a.name]))
          issues.push({
            path: `ablations.combinations[${i}].${a.name}`,
            message: `${JSON.stringify(c[a.name])} is not among the axis values ${JSON.stringify(a.values)}`,
          });
      }
      for (const k of Object.keys(c))
        if (!axes.some((a) => a.name === k))
          issues.push({ path: `ablations.combinations[${i}].${k}`, message: `no axis "${k}"; axes: ${axes.map((a) => a.name).join(', ')}` });
    });
  }
  const combinations = rows.map((values) => ({
    values,
    sets: axes.map((a) => `${a.path}=${JSON.stringify(values[a.name])}`),
    slug: axes.map((a) => slugPart(values[a.name] ?? null)).join('.'),
  }));
  const seen = new Map<string, number>();
  combinations.forEach((c, i) => {
    if (seen.has(c.slug)) issues.push({ path: `ablations.combinations[${i}]`, message: `same run as combination ${seen.get(c.slug)} (${c.slug})` });
    else seen.set(c.slug, i);
  });
  return { combinations, issues };
}

/** Whether `path` (dots, `[i]`, stage ids inside lists) names a value of `doc`. */
export function pathExists(doc: unknown, path: string): boolean {
  let cur: unknown = doc;
  for (const part of path
    .replace(/\[(\w[\w.-]*)\]/g, '.$1')
    .split('.')
    .filter(Boolean)) {
    if (Array.isArray(cur)) cur = /^\d+$/.test(part) ? cur[Number(part)] : cur.find((e) => e && typeof e === 'object' && (e as { id?: unknown }).id === part);
    else if (cur && typeof cur === 'object') cur = (cur as Record<string, unknown>)[part];
    else return false;
    if (cur === undefined) return false;
  }
  return true;
}
