/**
 * Generates raw judge outputs of a real model for the parser's fixture corpus
 * (test/fixtures/judge-outputs/). It renders judge prompts from the real VL-RewardBench records
 * with the project's own renderer, under several templates, label styles and temperatures, sends
 * them to an OpenAI-compatible server (e.g. `transformers serve` with SmolLM2-135M-Instruct), and
 * appends one JSON line per output to OUT. Lines already in OUT are not asked again, so an
 * interrupted run resumes. Labels are NOT written here: a person reads each output and adds them.
 *
 *   npx tsx scripts/make-judge-corpus.ts --base-url http://127.0.0.1:8731/v1 --model <id> \
 *     --out .cache/judge-corpus/smollm2.raw.jsonl [--items 21] [--max-tokens 64] [--tag smollm2] [--reverse]
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import OpenAI from 'openai';
import { loadDataset } from '../activities/datasets/mc.js';
import { DEFAULT_JUDGE_TEMPLATE, renderJudgePrompt, type LabelStyle } from '../activities/evaluate/prompt.js';
import { applyView, seededPermutation } from '../activities/evaluate/views.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The prompt variants: the default MR. Judge template and the wordings judges meet elsewhere. */
export const CORPUS_TEMPLATES: Record<string, { template: string; labels: LabelStyle; system?: string }> = {
  'mr-judge': { template: DEFAULT_JUDGE_TEMPLATE, labels: 'letters' },
  'mr-judge-numbers': { template: DEFAULT_JUDGE_TEMPLATE, labels: 'numbers', system: 'You are a careful and fair judge.' },
  'letter-only': {
    template: `Question: {query}\n\n{candidates}\nWhich response answers the question better, {labels_or}? Reply with the letter of the better response only.`,
    labels: 'letters',
  },
  'overall-judgment': {
    template: `You compare two answers to a question about an image. Point out the mistakes of each, then end with one line of the form "Overall Judgment: Response {first_label} is better" or "Overall Judgment: Response {last_label} is better".\n\n[Question]\n{query}\n\n{candidates}`,
    labels: 'numbers',
  },
  'best-is': {
    template: `Read the question and the {k} responses, then say which response is best. Finish with the sentence "The best response is X." where X is one of {labels}.\n\nQuestion: {query}\n\n{candidates}`,
    labels: 'letters',
  },
};

export const CORPUS_TEMPERATURES = [0, 0.6, 1.0];

interface RawLine {
  id: string;
  model: string;
  template: string;
  labels: LabelStyle;
  k: number;
  system: string | null;
  temperature: number;
  max_tokens: number;
  seed: number;
  item_key: string;
  permutation: number[];
  prompt_chars: number;
  output: string;
  finish_reason: string | null;
  completion_tokens: number | null;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'base-url': { type: 'string' },
      model: { type: 'string' },
      out: { type: 'string' },
      tag: { type: 'string', default: 'smollm2' },
      items: { type: 'string', default: '21' },
      'max-tokens': { type: 'string', default: '64' },
      seed: { type: 'string', default: '8' },
      // A second server can fill the corpus from the other end: `--reverse --out OTHER_FILE`.
      reverse: { type: 'boolean', default: false },
    },
  });
  const baseURL = values['base-url'];
  const model = values.model;
  const out = values.out;
  if (!baseURL || !model || !out) throw new Error('usage: make-judge-corpus.ts --base-url URL --model ID --out FILE [--items N] [--max-tokens N] [--tag NAME]');
  const perCombo = Number(values.items);
  const maxTokens = Number(values['max-tokens']);
  const seed = Number(values.seed);

  const { items } = await loadDataset({ path: join(REPO, 'data/vl-rewardbench/data.jsonl') });
  const done = new Set<string>();
  if (existsSync(out)) for (const line of readFileSync(out, 'utf8').split('\n')) if (line.trim()) done.add((JSON.parse(line) as RawLine).id);
  mkdirSync(dirname(out), { recursive: true });
  // No client retries: a timed-out request keeps running on a serial server, and a retry would queue behind it.
  const client = new OpenAI({ baseURL, apiKey: 'none', maxRetries: 0, timeout: 900_000 });

  const combos = Object.keys(CORPUS_TEMPLATES).flatMap((t) => CORPUS_TEMPERATURES.map((temp) => ({ t, temp })));
  // Every combination gets its own items, spread over the whole file (all categories).
  const stride = Math.floor(items.length / (combos.length * perCombo));
  let asked = 0;
  const started = Date.now();
  // Items outer, variants inner: a run stopped early still covers every variant evenly.
  for (let step = 0; step < perCombo; step++) {
    const i = values.reverse ? perCombo - 1 - step : step;
    for (const [ci, { t, temp }] of combos.entries()) {
      const variant = CORPUS_TEMPLATES[t]!;
      const item = items[(i * combos.length + ci) * stride]!;
      const id = `${values.tag}/${t}/t${temp}/${item.itemKey}`;
      if (done.has(id)) continue;
      const perm = seededPermutation(item.candidates.length, seed, item.itemKey);
      const text = renderJudgePrompt({ template: variant.template, query: item.query, candidates: applyView(item.candidates, perm), labels: variant.labels });
      const messages: OpenAI.ChatCompletionMessageParam[] = [];
      if (variant.system) messages.push({ role: 'system', content: variant.system });
      messages.push({ role: 'user', content: text });
      const res = await client.chat.completions.create({ model, messages, temperature: temp, max_tokens: maxTokens, seed });
      const choice = res.choices[0];
      const line: RawLine = {
        id,
        model: values.tag!,
        template: t,
        labels: variant.labels,
        k: item.candidates.length,
        system: variant.system ?? null,
        temperature: temp,
        max_tokens: maxTokens,
        seed,
        item_key: item.itemKey,
        permutation: perm,
        prompt_chars: text.length,
        output: choice?.message.content ?? '',
        finish_reason: choice?.finish_reason ?? null,
        completion_tokens: res.usage?.completion_tokens ?? null,
      };
      appendFileSync(out, JSON.stringify(line) + '\n');
      asked++;
      if (asked % 10 === 0) console.log(`${asked} asked, ${((Date.now() - started) / 1000).toFixed(0)} s`);
    }
  }
  console.log(`done: ${asked} new outputs in ${((Date.now() - started) / 1000).toFixed(0)} s → ${out}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
