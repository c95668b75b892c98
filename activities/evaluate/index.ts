/** The pure core of the `evaluate` stage; see README.md for formats and metric definitions. */
export { applyView, seededPermutation, VIEW_MODES, viewsFor, type ViewMode } from './views.js';
export {
  DEFAULT_JUDGE_TEMPLATE,
  JUDGE_TEMPLATE_PLACEHOLDERS,
  JudgeTemplateError,
  labelFor,
  renderCandidates,
  renderJudgePrompt,
  validateJudgeTemplate,
  type JudgeTemplatePlaceholder,
  type LabelStyle,
  type RenderJudgePromptInput,
} from './prompt.js';
export { parseChoice, type ChoiceForm, type ParsedChoice } from './parse.js';
export {
  computeMetrics,
  HEADLINE_POLICY,
  majority,
  MetricsInputError,
  UNPARSEABLE_POLICIES,
  type ComputeMetricsOptions,
  type JudgmentRecord,
  type MetricRow,
  type ScoredItem,
  type UnparseablePolicy,
} from './metrics.js';
export { createRng, type Rng } from './rng.js';
