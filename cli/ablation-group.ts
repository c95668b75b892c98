/**
 * Ablation groups: a spec with `ablations:` becomes one run per combination (spec/ablations.ts).
 * The group id is the run id the spec would have (name, hash, label); a member's id is the group
 * id and its axis values, e.g. `grid-1a2b3c4d5e6f-judge-a.2`.
 */
import { relative } from 'node:path';
import { expandAblations, pathExists, type AxisValue } from '../spec/ablations.js';
import { loadSpec, runIdFor, SpecError, type LoadedSpec } from '../spec/load.js';

export interface GroupMember {
  runId: string;
  axes: Record<string, AxisValue>;
  loaded: LoadedSpec;
}

export interface GroupPlan {
  groupId: string;
  members: GroupMember[];
}

/** Expands and loads every combination; any problem throws SpecError (exit 2) before anything starts. */
export async function planGroup(loaded: LoadedSpec, opts: { sets: readonly string[]; label?: string; cwd?: string }): Promise<GroupPlan> {
  const ab = loaded.spec.ablations;
  if (!ab) throw new Error('planGroup: the spec has no ablations');
  const file = relative(opts.cwd ?? process.cwd(), loaded.specPath) || loaded.specPath;
  const { combinations, issues } = expandAblations(ab, (p) => pathExists(loaded.spec, p));
  if (issues.length > 0) throw new SpecError(file, issues);
  const groupId = runIdFor(loaded.spec.name, loaded.hash, opts.label);
  const members: GroupMember[] = [];
  for (const c of combinations) {
    const member = await loadSpec(loaded.specPath, { sets: [...opts.sets, ...c.sets], withoutAblations: true, cwd: opts.cwd }).catch((err: unknown) => {
      if (err instanceof SpecError)
        throw new SpecError(
          file,
          err.issues.map((i) => ({ ...i, path: `ablations (${c.slug}): ${i.path}` })),
        );
      throw err;
    });
    // Every member's checked loads held until its turn to launch would be one copy of the data per
    // member: members read their files again at import instead.
    member.sources = undefined;
    members.push({ runId: `${groupId}-${c.slug}`, axes: c.values, loaded: member });
  }
  loaded.sources = undefined;
  return { groupId, members };
}
