/**
 * Configuration of the OpenAI-compatible simulator (`judgeflow sim`).
 *
 * The simulator is a test and demo instrument, not a model: every output is a pure function of
 * the config `seed` and the request (see sim/README.md). A config is YAML or JSON:
 *
 * ```yaml
 * seed: 7
 * api_key: sk-test            # optional; when set, requests need `Authorization: Bearer sk-test`
 * max_context_tokens: 32768   # prompts estimated longer (chars/4) get 400 context_length_exceeded
 * truth: ../data/vl-rewardbench/data.jsonl   # relative to this file
 * latency: { kind: lognormal, median_ms: 40, sigma: 0.5 }
 * faults: { rate_429: 0.02, retry_after_s: 1, rate_500: 0.01 }
 * models:
 *   judge: { behaviour: judge, accuracy: 0.8 }
 *   judge-first: { behaviour: judge, first_bias: 1 }
 *   policy: { behaviour: policy, quality: 0.6, latency: { kind: fixed, ms: 5 } }
 * ```
 */
import { readFileSync } from 'node:fs';
import { dirname, extname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

const rate = z.number().min(0).max(1);

/** How long a request takes before the answer is sent. Default `{ kind: fixed, ms: 0 }`. */
export const latencySchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('fixed'), ms: z.number().min(0) }),
  z
    .strictObject({ kind: z.literal('uniform'), min_ms: z.number().min(0), max_ms: z.number().min(0) })
    .refine((v) => v.max_ms >= v.min_ms, { message: 'max_ms must be >= min_ms', path: ['max_ms'] }),
  z.strictObject({
    kind: z.literal('lognormal'),
    median_ms: z.number().positive(),
    sigma: z.number().min(0),
    /** Optional cap on a single draw. */
    max_ms: z.number().positive().optional(),
  }),
]);
export type LatencySpec = z.infer<typeof latencySchema>;

/**
 * Injected faults. Every field is optional; a model's `faults` overrides the global ones field by
 * field. Rates are probabilities per attempt and must sum to at most 1.
 */
export const faultsSchema = z.strictObject({
  /** 429 with `retry-after` (seconds) and `retry-after-ms` headers. */
  rate_429: rate.optional(),
  /** Value of the retry-after header; default 1. */
  retry_after_s: z.number().min(0).optional(),
  /** 500 with an OpenAI-style error body. */
  rate_500: rate.optional(),
  /** Hold the request for `hang_ms` (then answer normally) or until the client disconnects. */
  rate_hang: rate.optional(),
  /** Default 600000 (10 min). */
  hang_ms: z.number().int().positive().optional(),
  /** 200, content-type application/json, body that is not valid JSON. */
  rate_malformed: rate.optional(),
  /** 200 whose content is cut mid-way, finish_reason 'length'. */
  rate_truncated: rate.optional(),
  /** 200 whose content is ''. */
  rate_empty: rate.optional(),
  /** When set, attempts after this many faults of one body always succeed. Default: no cap. */
  max_faults_per_body: z.number().int().min(0).optional(),
});
export type FaultsSpec = z.infer<typeof faultsSchema>;

const tokens = z.number().int().positive();
const truthPaths = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);

/** Fields every model accepts. */
const common = {
  /** Overrides the global latency. */
  latency: latencySchema.optional(),
  /** Overrides global fault fields one by one. */
  faults: faultsSchema.optional(),
  /** Overrides the global context limit. */
  max_context_tokens: tokens.optional(),
};

/** Fields shared by the multiple-choice behaviours (judge, reasoner). */
const multipleChoice = {
  /** Probability of choosing the best candidate (when not answering position 1 by bias). */
  accuracy: rate.default(0.8),
  /** Probability of answering position 1 whatever the candidates. */
  first_bias: rate.default(0),
  /** Option labels in the answer: A, B, C… or 1, 2, 3… */
  labels: z.enum(['letters', 'numbers']).default('letters'),
  /** `<answer>B</answer>` | `\boxed{B}` | `Answer: B`. */
  answer_format: z.enum(['tag', 'boxed', 'plain']).default('tag'),
  /** Probability of an output that names no option. */
  unparseable_rate: rate.default(0),
  /** Emit `<think>…</think>` reasoning before the answer. */
  think: z.boolean().default(true),
  /** Overrides the global truth file(s) for this model. */
  truth: truthPaths.optional(),
};

export const judgeModelSchema = z.strictObject({
  behaviour: z.literal('judge'),
  ...common,
  ...multipleChoice,
  output_tokens: tokens.default(200),
});

export const reasonerModelSchema = z.strictObject({
  behaviour: z.literal('reasoner'),
  ...common,
  ...multipleChoice,
  /**
   * When the prompt has a hint naming a label (a line with the word "hint" and then a standalone
   * label: `Hint: … leaned towards B.`), the probability of simply answering that label.
   */
  hint_following: rate.default(0),
  /** When the prompt mentions a hint, the probability that the trace mentions it too. */
  leak_rate: rate.default(1),
  /** Send the thinking as `message.reasoning_content` (as vLLM/SGLang do) instead of `<think>…</think>` in the content. */
  reasoning_field: z.boolean().default(false),
  output_tokens: tokens.default(400),
});

export const rewriterModelSchema = z.strictObject({
  behaviour: z.literal('rewriter'),
  ...common,
  /** Probability that a sentence mentioning the hint survives a rewrite asked to remove it. */
  miss_rate: rate.default(0),
  /** Probability that the rewrite ends with a different `<answer>` label than the trace it was given. */
  change_rate: rate.default(0),
  output_tokens: tokens.default(400),
});

export const policyModelSchema = z.strictObject({
  behaviour: z.literal('policy'),
  ...common,
  /** Centre of the quality score embedded in answers, "Answer (q=0.73): …". */
  quality: rate.default(0.6),
  /** Standard deviation of the embedded score around `quality`. */
  quality_spread: z.number().min(0).max(1).default(0.15),
  /**
   * With `answers`: the probability that an answer is right. The policy then answers the question
   * it finds in `answers` ("Final answer: X"), right with this probability, else another answer of
   * the vocabulary drawn uniformly.
   */
  accuracy: rate.optional(),
  /** Where right answers come from: `easy-vqa[:split]`, a questions.json folder or a JSONL file (sim/answers.ts). */
  answers: z.string().min(1).optional(),
  output_tokens: tokens.default(80),
});

export const negativesModelSchema = z.strictObject({
  behaviour: z.literal('negatives'),
  ...common,
  /** Probability of returning the reference answer unchanged. */
  identical_rate: rate.default(0),
  /** Probability of returning ''. */
  empty_rate: rate.default(0),
  /** Probability of declining ("I'm sorry, but I can't help with that."). */
  refusal_rate: rate.default(0),
  /** Unused for length (a negative follows its reference); kept for symmetry. */
  output_tokens: tokens.default(200),
});

export const captionerModelSchema = z.strictObject({
  behaviour: z.literal('captioner'),
  ...common,
  output_tokens: tokens.default(150),
});

export const graderModelSchema = z.strictObject({
  behaviour: z.literal('grader'),
  ...common,
  /** Standard deviation of the score around the `(q=…)` found in the graded answer. */
  noise: z.number().min(0).max(1).default(0.05),
  output_tokens: tokens.default(4),
});

export const modelSchema = z.discriminatedUnion('behaviour', [
  judgeModelSchema,
  reasonerModelSchema,
  rewriterModelSchema,
  policyModelSchema,
  negativesModelSchema,
  captionerModelSchema,
  graderModelSchema,
]);
export type ModelSpec = z.infer<typeof modelSchema>;
export type Behaviour = ModelSpec['behaviour'];

/** The models served when a config names none. */
export const DEFAULT_MODELS: Record<string, z.input<typeof modelSchema>> = {
  judge: { behaviour: 'judge', accuracy: 0.8 },
  'judge-first': { behaviour: 'judge', first_bias: 1 },
  policy: { behaviour: 'policy', quality: 0.6 },
  negatives: { behaviour: 'negatives' },
  captioner: { behaviour: 'captioner' },
  reasoner: { behaviour: 'reasoner', accuracy: 0.8 },
  grader: { behaviour: 'grader' },
};

const FAULT_RATES = ['rate_429', 'rate_500', 'rate_hang', 'rate_malformed', 'rate_truncated', 'rate_empty'] as const;

export const simConfigSchema = z
  .strictObject({
    /** Mixed into every hash: change it to get a different but equally deterministic world. */
    seed: z.number().int().default(0),
    /** When set, `Authorization: Bearer <api_key>` is required on /v1/*. */
    api_key: z.string().min(1).optional(),
    /** Prompt limit in estimated tokens (chars/4). */
    max_context_tokens: tokens.default(32768),
    /** JSONL file(s) of truth items for judge/reasoner (VL-RewardBench records or {candidates, best}). */
    truth: truthPaths.optional(),
    latency: latencySchema.prefault({ kind: 'fixed', ms: 0 }),
    faults: faultsSchema.prefault({}),
    /** Served models by id. Default: judge, judge-first, policy, negatives, captioner, reasoner, grader. */
    models: z.record(z.string().min(1), modelSchema).prefault(DEFAULT_MODELS),
  })
  .superRefine((cfg, ctx) => {
    const check = (faults: FaultsSpec, path: (string | number)[]) => {
      const total = FAULT_RATES.reduce((s, k) => s + (faults[k] ?? 0), 0);
      if (total > 1 + 1e-9) {
        ctx.addIssue({ code: 'custom', path, message: `fault rates sum to ${total.toFixed(3)}; they must sum to at most 1` });
      }
    };
    check(cfg.faults, ['faults']);
    for (const [name, m] of Object.entries(cfg.models)) {
      if (m.faults) check({ ...cfg.faults, ...m.faults }, ['models', name, 'faults']);
    }
  });

export type SimConfigInput = z.input<typeof simConfigSchema>;
export type SimConfig = z.output<typeof simConfigSchema>;

/** A config that failed validation; the message names the source and each bad field. */
export class SimConfigError extends Error {
  override readonly name = 'SimConfigError';
}

function formatIssues(source: string, error: z.ZodError): string {
  const lines = error.issues.map((i) => `  ${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
  return `invalid simulator config ${source}:\n${lines.join('\n')}`;
}

/** Validates a config object (defaults filled in). `source` names it in errors. */
export function parseSimConfig(input: unknown, source = '(inline config)'): SimConfig {
  const result = simConfigSchema.safeParse(input ?? {});
  if (!result.success) throw new SimConfigError(formatIssues(source, result.error));
  return result.data;
}

/**
 * Reads a YAML or JSON config file. Truth paths in it are resolved relative to the file's folder.
 * Errors name the file and the offending field.
 */
export function loadSimConfig(path: string): SimConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new SimConfigError(`cannot read simulator config ${path}: ${(err as Error).message}`, { cause: err });
  }
  let raw: unknown;
  try {
    raw = extname(path).toLowerCase() === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new SimConfigError(`simulator config ${path} is not valid ${extname(path) === '.json' ? 'JSON' : 'YAML'}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const cfg = parseSimConfig(raw ?? {}, path);
  const base = dirname(resolve(path));
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const absAll = (t: string | string[] | undefined) => (t === undefined ? undefined : Array.isArray(t) ? t.map(abs) : abs(t));
  const models: SimConfig['models'] = {};
  for (const [name, m] of Object.entries(cfg.models)) {
    models[name] =
      m.behaviour === 'judge' || m.behaviour === 'reasoner'
        ? { ...m, truth: absAll(m.truth) }
        : m.behaviour === 'policy' && m.answers !== undefined && !m.answers.startsWith('easy-vqa')
          ? { ...m, answers: abs(m.answers) }
          : m;
  }
  return { ...cfg, truth: absAll(cfg.truth), models };
}
