/**
 * Prompts of `sweep` (pure): the policy's question prompt, the judge's multiple-choice prompt over
 * a candidate set and its per-response score prompt, and the score parser.
 */
import { renderJudgePrompt, validateJudgeTemplate } from '../evaluate/prompt.js';

/** The policy prompt; `{question}` is the dataset's question. */
export const DEFAULT_POLICY_TEMPLATE = '{question}\n\nAnswer the question about the image. Reason briefly, then end with a line "Final answer: <answer>".';

/** The multiple-choice judge prompt (placeholders of the evaluate template: `{query}`, `{candidates}`, `{k}`, `{labels}`, `{labels_or}`, `{first_label}`, `{last_label}`). */
export const DEFAULT_SELECT_TEMPLATE = `You are given an image, a question about it and {k} candidate answers labelled {labels}, written by an AI assistant. Decide which answer is correct; if several are, pick the clearest one.

First think inside <think></think>: check each answer against the image and the question. Then give only the label of the best answer inside <answer></answer>, for example <answer>{first_label}</answer>.

[Question]
{query}

{candidates}
Which answer is the best: {labels_or}?`;

/** The per-response score prompt; `{question}` and `{response}`. The phrase "on a scale of 1 to 10" is what simulated judges recognize. */
export const DEFAULT_SCORE_TEMPLATE = `You are given an image, a question about it and one answer written by an AI assistant. Rate the answer's correctness and helpfulness on a scale of 1 to 10 (10: correct and clear, 1: wrong).

[Question]
{question}

[Answer]
{response}

Think inside <think></think> if needed, then give the score as <score>N</score>.`;

export function renderPolicyPrompt(template: string, question: string): string {
  return template.replace(/\{question\}/g, () => question);
}

export function renderSelectPrompt(template: string, question: string, candidates: readonly string[]): string {
  return renderJudgePrompt({ template, query: question, candidates, labels: 'letters' });
}

export function renderScorePrompt(template: string, question: string, response: string): string {
  return template.replace(/\{(question|response)\}/g, (_, p: string) => (p === 'question' ? question : response));
}

/** Problems of the spec's templates (unknown placeholders, a missing required one); empty when fine. */
export function templateIssues(t: { policy: string; select: string; score: string }): { field: string; message: string }[] {
  const out: { field: string; message: string }[] = [];
  if (!t.policy.includes('{question}')) out.push({ field: 'policy_template', message: 'must contain {question}' });
  try {
    validateJudgeTemplate(t.select);
  } catch (err) {
    out.push({ field: 'select_template', message: (err as Error).message });
  }
  if (!t.select.includes('{candidates}')) out.push({ field: 'select_template', message: 'must contain {candidates}' });
  for (const p of ['{question}', '{response}']) if (!t.score.includes(p)) out.push({ field: 'score_template', message: `must contain ${p}` });
  return out;
}

/** The 1–10 score of a score output: `<score>N</score>`, `\boxed{N}`, "Score: N", "N/10"; undefined when none. */
export function parseScore(output: string): number | undefined {
  const text = output.replace(/<think>[\s\S]*?<\/think>/gi, '');
  const forms = [
    /<score>\s*(\d+(?:\.\d+)?)\s*<\/score>/gi,
    /\\boxed\s*\{\s*(\d+(?:\.\d+)?)\s*\}/g,
    /score\s*[:：=]\s*(\d+(?:\.\d+)?)/gi,
    /\b(\d+(?:\.\d+)?)\s*\/\s*10\b/g,
  ];
  for (const re of forms) {
    const all = [...text.matchAll(re)];
    if (all.length > 0) {
      const v = Number(all[all.length - 1]![1]);
      if (v >= 1 && v <= 10) return v;
    }
  }
  return undefined;
}
