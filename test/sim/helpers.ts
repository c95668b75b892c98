/** Shared fixtures for the simulator tests: a real OpenAI client and judge prompts built from VL-RewardBench. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';

export const VLRB_PATH = fileURLToPath(new URL('../../data/vl-rewardbench/data.jsonl', import.meta.url));

export interface VlrbRecord {
  id: string;
  query: string;
  response: [string, string];
  human_ranking: [number, number];
}

export function loadVlrb(): VlrbRecord[] {
  return readFileSync(VLRB_PATH, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as VlrbRecord);
}

export function client(url: string, opts: { apiKey?: string; timeoutMs?: number } = {}): OpenAI {
  return new OpenAI({ baseURL: url, apiKey: opts.apiKey ?? 'sk-none', maxRetries: 0, timeout: opts.timeoutMs ?? 30_000 });
}

/** Prompt layouts a judge spec might use; the simulator must find the candidates in each. */
export const LAYOUTS: Record<string, (options: string[]) => string> = {
  doubleBrackets: (o) => o.map((t, i) => `[[${String.fromCharCode(65 + i)}]] ${t}`).join('\n\n'),
  headingLine: (o) => o.map((t, i) => `Response ${String.fromCharCode(65 + i)}:\n${t}`).join('\n\n'),
  boldNumbered: (o) => o.map((t, i) => `**Response ${i + 1}:** ${t}`).join('\n'),
  parenLetters: (o) => o.map((t, i) => `(${String.fromCharCode(65 + i)}) ${t}`).join('\n'),
  xmlTags: (o) => o.map((t, i) => `<response_${i + 1}>\n${t}\n</response_${i + 1}>`).join('\n'),
  letterDot: (o) => o.map((t, i) => `${String.fromCharCode(65 + i)}. ${t}`).join('\n'),
  markdownHeading: (o) => o.map((t, i) => `### Candidate ${i + 1}\n\n${t}`).join('\n\n'),
};

export function judgePrompt(query: string, options: string[], layout: keyof typeof LAYOUTS = 'doubleBrackets'): string {
  return [
    'You are an impartial judge. Compare the responses to the query about the image.',
    'Criteria, in priority order: harmlessness, accuracy, detail.',
    `Query: ${query}`,
    '',
    LAYOUTS[layout]!(options),
    '',
    'Think inside <think></think>, then give the best response as <answer>X</answer>.',
  ].join('\n');
}

/** Reads the chosen option from a judge output: <answer>B</answer>, \boxed{B}, Answer: B. Letters or numbers. */
export function parseChoice(text: string): number | undefined {
  const m = /<answer>\s*([A-Z]|\d+)\s*<\/answer>|\\boxed\{([A-Z]|\d+)\}|Answer:\s*([A-Z]|\d+)\s*$/.exec(text);
  const label = m?.[1] ?? m?.[2] ?? m?.[3];
  if (label === undefined) return undefined;
  return /\d/.test(label) ? Number(label) - 1 : label.charCodeAt(0) - 65;
}

/** Runs `fn` over `items` with at most `concurrency` calls in flight. */
export async function pool<T, R>(items: T[], concurrency: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!, i);
      }
    }),
  );
  return out;
}
