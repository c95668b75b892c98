import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import YAML from 'yaml';
import type { z } from 'zod';
import { checkDag } from '../workflows/dag.js';
import type { DatasetRef, StagePlan } from '../workflows/types.js';
import { checkDataRefs, datasetNamesOf } from './artifacts.js';
import { canonicalJson, sha256Hex } from './canonical.js';
import type { LoadedSource } from '../activities/datasets/index.js';
import { checkDatasets, resolveDatasetPath } from './datasets.js';
import { getStageKind, stageKindNames, type SpecIssue } from './kinds.js';
import { experimentSpecSchema, type ExperimentSpec } from './schema.js';

import { PACKAGE_ROOT } from './root.js';

export { PACKAGE_ROOT };

/** A spec that cannot run: every issue names the file and the path inside it. */
export class SpecError extends Error {
  override readonly name = 'SpecError';
  constructor(
    readonly file: string,
    readonly issues: SpecIssue[],
  ) {
    super(issues.map((i) => `${file}: ${i.path ? `${i.path}: ` : ''}${i.message}`).join('\n'));
  }
}

export interface LoadedSpec {
  spec: ExperimentSpec;
  /** The file as written, before overrides. */
  specText: string;
  specPath: string;
  /** sha256 of the canonical JSON of the spec after overrides and defaults. */
  hash: string;
  overrides: Record<string, unknown>;
  plan: StagePlan[];
  /** Problems that do not stop a launch, formatted with file and path (e.g. skipped dataset rows). */
  warnings: string[];
  /**
   * The datasets as the check loaded them, by name: the launch imports these instead of reading
   * the files again (in-process only). The launch drops them once imported; a group drops its
   * members' (they are launched one by one, and would otherwise all be held until then).
   */
  sources?: ReadonlyMap<string, LoadedSource>;
}

/**
 * Aliases a spec may expand. A spec needs a handful at most; the cap refuses a "billion laughs"
 * document (aliases of aliases) before it exhausts memory.
 */
const MAX_YAML_ALIASES = 100;

/** `name` → experiments/<name>.yaml (cwd, then the package), or a path to a YAML file. */
export function locateSpec(nameOrPath: string, cwd = process.cwd()): string {
  const candidates = [resolve(cwd, nameOrPath)];
  if (!/[\\/]/.test(nameOrPath) && !/\.ya?ml$/.test(nameOrPath)) {
    for (const base of [cwd, PACKAGE_ROOT]) {
      candidates.push(join(base, 'experiments', `${nameOrPath}.yaml`), join(base, 'experiments', `${nameOrPath}.yml`));
    }
  }
  for (const c of candidates) if (existsSync(c) && statSync(c).isFile()) return c;
  throw new SpecError(nameOrPath, [
    {
      path: '',
      message: `no such experiment: looked for ${candidates.map((c) => relative(cwd, c) || c).join(', ')}; pass a spec path or a name from experiments/`,
    },
  ]);
}

/** Parses `--set a.b[0].c=value` flags; values are YAML scalars (numbers, booleans, lists work). */
export function parseOverrides(sets: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of sets) {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new SpecError('--set', [{ path: s, message: 'expected path=value, e.g. --set endpoints.judge.base_url=http://gpu-1:8000/v1' }]);
    try {
      out[s.slice(0, eq)] = YAML.parse(s.slice(eq + 1), { maxAliasCount: MAX_YAML_ALIASES });
    } catch (err) {
      throw new SpecError('--set', [{ path: s, message: `the value is not valid YAML: ${(err as Error).message.split('\n')[0]}; quote it` }]);
    }
  }
  return out;
}

function splitPath(path: string): string[] {
  return path
    .replace(/\[(\w[\w.-]*)\]/g, '.$1')
    .split('.')
    .filter((p) => p.length > 0);
}

/** Sets a value at a path; inside an array a segment may be an index or a stage `id`. */
function applyOverride(doc: Record<string, unknown>, path: string, value: unknown, file: string): void {
  const parts = splitPath(path);
  if (parts.length === 0) throw new SpecError(file, [{ path, message: 'empty --set path' }]);
  let cur: unknown = doc;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    const last = i === parts.length - 1;
    const where = parts.slice(0, i + 1).join('.');
    if (Array.isArray(cur)) {
      const idx = /^\d+$/.test(part) ? Number(part) : cur.findIndex((e) => e && typeof e === 'object' && (e as { id?: unknown }).id === part);
      if (idx < 0 || idx > cur.length || (idx === cur.length && !last)) {
        throw new SpecError(file, [
          { path: `--set ${path}`, message: `"${part}" is neither an index nor an id in ${parts.slice(0, i).join('.') || 'the list'}` },
        ]);
      }
      if (last) cur[idx] = value;
      else {
        if (cur[idx] === undefined || cur[idx] === null) cur[idx] = {};
        cur = cur[idx];
      }
    } else if (cur && typeof cur === 'object') {
      const obj = cur as Record<string, unknown>;
      if (last) obj[part] = value;
      else {
        if (obj[part] === undefined || obj[part] === null) obj[part] = /^\d+$/.test(parts[i + 1]!) ? [] : {};
        cur = obj[part];
      }
    } else {
      throw new SpecError(file, [{ path: `--set ${path}`, message: `${where} is a ${typeof cur}, not an object or list` }]);
    }
  }
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out;
}

function zodIssues(err: z.ZodError, prefix: readonly PropertyKey[] = []): SpecIssue[] {
  return err.issues.map((i) => {
    const path = [...prefix, ...i.path];
    if (i.code === 'unrecognized_keys') {
      return {
        path: formatPath(path),
        message: `unknown field(s) ${i.keys.map((k) => `"${k}"`).join(', ')}; check the spelling against the spec reference in the README`,
      };
    }
    return { path: formatPath(path), message: i.message };
  });
}

/** Reads, overrides, validates and plans a spec. Throws SpecError before anything is written. */
export async function loadSpec(
  nameOrPath: string,
  opts: {
    sets?: readonly string[];
    cwd?: string;
    /** Refuse skipped dataset rows like errors (the CLI's --strict). */
    strict?: boolean;
    /** The spec's text as recorded (replay), instead of the file's current text; paths still resolve against the file's folder. */
    text?: string;
    /** One combination of an ablation group: the `ablations:` block is dropped (spec/ablations.ts). */
    withoutAblations?: boolean;
  } = {},
): Promise<LoadedSpec> {
  const cwd = opts.cwd ?? process.cwd();
  const specPath = opts.text === undefined ? locateSpec(nameOrPath, cwd) : resolve(cwd, nameOrPath);
  const file = relative(cwd, specPath) || specPath;
  const specText = opts.text ?? readFileSync(specPath, 'utf8');
  const parsedDoc = YAML.parseDocument(specText, { prettyErrors: true });
  if (parsedDoc.errors.length > 0) {
    throw new SpecError(
      file,
      parsedDoc.errors.map((e) => ({ path: `line ${e.linePos?.[0]?.line ?? '?'}`, message: `YAML: ${e.message.split('\n')[0]}` })),
    );
  }
  let raw: unknown;
  try {
    raw = parsedDoc.toJS({ maxAliasCount: MAX_YAML_ALIASES }) as unknown;
  } catch (err) {
    // toJS throws on alias abuse (ReferenceError) and on unresolvable documents: a spec error, never a crash.
    throw new SpecError(file, [{ path: '', message: `YAML: ${(err as Error).message.split('\n')[0]} (at most ${MAX_YAML_ALIASES} aliases are expanded)` }]);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new SpecError(file, [{ path: '', message: 'the spec must be a YAML mapping with name, stages, …' }]);
  }
  if (opts.withoutAblations) delete (raw as Record<string, unknown>).ablations;
  const overrides = parseOverrides(opts.sets ?? []);
  for (const [path, value] of Object.entries(overrides)) applyOverride(raw as Record<string, unknown>, path, value, file);

  const result = experimentSpecSchema.safeParse(raw);
  if (!result.success) throw new SpecError(file, zodIssues(result.error));
  const spec = result.data;
  const specDir = dirname(specPath);

  const issues: SpecIssue[] = [];
  const plan: StagePlan[] = [];
  for (const [i, stage] of spec.stages.entries()) {
    const kind = getStageKind(stage.uses);
    if (!kind) {
      issues.push({ path: `stages[${i}].uses`, message: `unknown stage kind "${stage.uses}"; allowed: ${stageKindNames().join(', ') || '(none registered)'}` });
      continue;
    }
    const params = kind.params.safeParse(stage.with);
    if (!params.success) {
      issues.push(...zodIssues(params.error, ['stages', i, 'with']));
      continue;
    }
    stage.with = params.data as Record<string, unknown>;
    const endpointNames = kind.endpoints?.(params.data) ?? [];
    const consumed = kind.consumes?.(params.data) ?? [];
    const datasetNames = datasetNamesOf(consumed);
    issues.push(
      ...checkDataRefs({ spec, index: i, consumed, producesOf: (id) => getStageKind(spec.stages.find((s) => s.id === id)?.uses ?? '')?.produces ?? {} }),
    );
    for (const e of endpointNames) {
      if (!spec.endpoints[e])
        issues.push({
          path: `stages[${i}].with`,
          message: `endpoint "${e}" is not defined under endpoints:; defined: ${Object.keys(spec.endpoints).join(', ') || '(none)'}`,
        });
    }
    const datasets: Record<string, DatasetRef> = {};
    for (const d of datasetNames) {
      const ds = spec.datasets[d];
      if (!ds) {
        issues.push({
          path: `stages[${i}].with`,
          message: `dataset "${d}" is not defined under datasets:; defined: ${Object.keys(spec.datasets).join(', ') || '(none)'}`,
        });
        continue;
      }
      const abs = resolveDatasetPath(ds, specDir, `datasets.${d}`, issues);
      if (abs === undefined) continue;
      datasets[d] = { ...ds, name: d, path: abs, images: ds.images ? resolve(specDir, ds.images) : undefined };
    }
    issues.push(...((await kind.check?.({ spec, index: i, params: params.data, specDir })) ?? []));
    plan.push({
      id: stage.id,
      kind: stage.uses,
      workflowType: kind.workflowType,
      needs: stage.needs,
      params: params.data,
      taskQueue: stage.task_queue,
      version: kind.version ?? 1,
      ...(stage.reuse === false || kind.reusable === false ? { reuse: false } : {}),
      endpoints: Object.fromEntries(endpointNames.filter((e) => spec.endpoints[e]).map((e) => [e, spec.endpoints[e]!])),
      datasets,
    });
  }
  issues.push(...checkDag(spec.stages));
  // Every dataset a stage reads is loaded once here: no valid row stops the launch, skipped rows warn.
  const checked = await checkDatasets(plan);
  issues.push(...checked.issues);
  // Strict (the spec's `strict: true` or the CLI's --strict): a warning, such as skipped dataset
  // rows, refuses the launch like an error.
  const strict = spec.strict === true || opts.strict === true;
  const errors = issues
    .filter((i) => !i.warning || strict)
    .map((i) =>
      i.warning ? { path: i.path, message: `${i.message} (strict: no row may be skipped; fix the rows, or run without --strict / strict: true)` } : i,
    );
  if (errors.length > 0) throw new SpecError(file, dedupeIssues(errors));
  const warnings = [...new Set(issues.filter((i) => i.warning).map((i) => `${file}: ${i.path}: ${i.message}`))];

  const hash = sha256Hex(canonicalJson(spec));
  return { spec, specText, specPath, hash, overrides, plan, warnings, sources: checked.sources };
}

/** One line per problem: a check that fails the same way twice does not say it twice. */
function dedupeIssues(issues: SpecIssue[]): SpecIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const key = `${i.path}\0${i.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** The run (and workflow) id: experiment name + spec version + optional label. */
export function runIdFor(name: string, hash: string, label?: string): string {
  return label ? `${name}-${hash.slice(0, 12)}-${label}` : `${name}-${hash.slice(0, 12)}`;
}
