/**
 * Artifacts in specs: the kinds of data stages hand each other, the dataset formats that import
 * into them, the `with:` syntax of a parameter that takes data, and the check of those references.
 */
import { z } from 'zod';
import type { SpecIssue } from './kinds.js';
import type { ExperimentSpec } from './schema.js';

/** What an artifact holds; its rows live in a table per kind. */
export const ARTIFACT_KINDS = ['mc-items', 'qa-items', 'sft-set', 'rl-set', 'checkpoint', 'curve', 'endpoint'] as const;
export type ArtifactKind = (typeof ARTIFACT_KINDS)[number];

/** Dataset formats (`datasets.<name>.format`) and the artifact kind each imports into. */
export const DATASET_FORMATS = {
  'vl-rewardbench': 'mc-items',
  'vl-rewardbench-parquet': 'mc-items',
  'mc-jsonl': 'mc-items',
  'qa-jsonl': 'qa-items',
  llava: 'qa-items',
  'hf-parquet': 'qa-items',
  'easy-vqa': 'qa-items',
  'mm-vet': 'qa-items',
} as const satisfies Record<string, ArtifactKind>;
export type DatasetFormat = keyof typeof DATASET_FORMATS;
export const DATASET_FORMAT_NAMES = Object.keys(DATASET_FORMATS) as [DatasetFormat, ...DatasetFormat[]];
/** The formats that import into artifact kind `K` (the loaders' format types derive from this). */
export type FormatOf<K extends ArtifactKind> = { [F in DatasetFormat]: (typeof DATASET_FORMATS)[F] extends K ? F : never }[DatasetFormat];
export function formatsOf<K extends ArtifactKind>(kind: K): FormatOf<K>[] {
  return DATASET_FORMAT_NAMES.filter((f): f is FormatOf<K> => DATASET_FORMATS[f] === kind);
}

/**
 * A parameter that takes data: the name of a dataset under `datasets:`, or an upstream stage's
 * artifact, `{ from: <stage id> }` (its one artifact of the kind the parameter takes) or
 * `{ from: <stage id>, artifact: <name> }`.
 */
export const dataRefSchema = z.union([z.string().min(1), z.strictObject({ from: z.string().min(1), artifact: z.string().min(1).optional() })]);
export type DataRef = z.infer<typeof dataRefSchema>;

/** One data parameter of a stage: where it sits under `with:` and the artifact kind it takes. */
export interface ConsumedData {
  /** Field under `with:`, e.g. `items`. */
  param: string;
  ref: DataRef;
  kind: ArtifactKind;
}

/** The names of the datasets a stage's data parameters name. */
export function datasetNamesOf(consumed: readonly ConsumedData[]): string[] {
  return consumed.flatMap((c) => (typeof c.ref === 'string' ? [c.ref] : []));
}

/** Stage ids a stage transitively needs. */
export function upstreamOf(stages: ExperimentSpec['stages'], id: string): Set<string> {
  const byId = new Map(stages.map((s) => [s.id, s]));
  const seen = new Set<string>();
  const stack = [...(byId.get(id)?.needs ?? [])];
  while (stack.length > 0) {
    const n = stack.pop()!;
    if (seen.has(n)) continue;
    seen.add(n);
    stack.push(...(byId.get(n)?.needs ?? []));
  }
  return seen;
}

/**
 * Checks the data parameters of stage `index`: a dataset reference names a dataset whose format
 * imports into the wanted kind; a `from:` names a stage this one transitively needs, whose kind
 * produces an artifact of the wanted kind (and of that name, when one is given).
 */
export function checkDataRefs(opts: {
  spec: ExperimentSpec;
  index: number;
  consumed: readonly ConsumedData[];
  /** The artifacts the kind of a stage produces, by stage id (undefined: unknown kind). */
  producesOf: (stageId: string) => Record<string, ArtifactKind> | undefined;
}): SpecIssue[] {
  const { spec, index, consumed } = opts;
  const stage = spec.stages[index]!;
  const issues: SpecIssue[] = [];
  for (const c of consumed) {
    const path = `stages[${index}].with.${c.param}`;
    if (typeof c.ref === 'string') {
      const ds = spec.datasets[c.ref];
      const format = ds?.format;
      if (format !== undefined && DATASET_FORMATS[format] !== c.kind) {
        issues.push({ path, message: `dataset "${c.ref}" has format ${format}, which gives ${DATASET_FORMATS[format]}; ${c.param} takes ${c.kind}` });
      }
      continue;
    }
    const from = c.ref.from;
    const producer = spec.stages.find((s) => s.id === from);
    if (!producer) {
      issues.push({ path: `${path}.from`, message: `no stage "${from}"; stages: ${spec.stages.map((s) => s.id).join(', ')}` });
      continue;
    }
    if (!upstreamOf(spec.stages, stage.id).has(from)) {
      issues.push({
        path: `${path}.from`,
        message: `stage "${from}" is not upstream of "${stage.id}": add it to needs (directly or through a stage it needs)`,
      });
      continue;
    }
    const produces = opts.producesOf(from);
    if (produces === undefined) continue; // its unknown kind is reported at its own `uses`
    const named = c.ref.artifact;
    const offered =
      Object.entries(produces)
        .map(([n, k]) => `${n} (${k})`)
        .join(', ') || 'nothing';
    if (named !== undefined) {
      if (produces[named] !== c.kind)
        issues.push({ path: `${path}.artifact`, message: `stage "${from}" (${producer.uses}) has no ${c.kind} artifact "${named}"; it produces ${offered}` });
    } else {
      const matching = Object.values(produces).filter((k) => k === c.kind).length;
      if (matching === 0)
        issues.push({ path: `${path}.from`, message: `stage "${from}" (${producer.uses}) produces ${offered}, not ${c.kind} that ${c.param} takes` });
      else if (matching > 1)
        issues.push({ path: `${path}.from`, message: `stage "${from}" produces several ${c.kind} artifacts (${offered}): name one with artifact:` });
    }
  }
  return issues;
}
