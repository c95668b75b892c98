import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { DeterminismViolationError } from '@temporalio/workflow';
import { bundleWorkflowCode, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils.js';
import type { temporal } from '@temporalio/proto';
import { REPO, TEST_WORKFLOWS } from '../helpers/env.js';

type History = temporal.api.history.v1.IHistory;
const HISTORIES = join(REPO, 'test', 'replay', 'histories');

function load(file: string): History {
  const raw = readFileSync(join(HISTORIES, file));
  return historyFromJSON(JSON.parse((file.endsWith('.gz') ? gunzipSync(raw) : raw).toString('utf8')));
}

const history = load('experiment-diamond.json');

describe('replay of committed experiment histories', () => {
  it('the recorded history has the stages it should (guards against an empty fixture)', () => {
    const children = (history.events ?? []).filter((e) => e.startChildWorkflowExecutionInitiatedEventAttributes);
    expect(children.map((e) => e.startChildWorkflowExecutionInitiatedEventAttributes!.workflowId!.split('/')[1]).sort()).toEqual([
      'a',
      'b',
      'broken',
      'c',
      'd',
    ]);
  });

  it('replays cleanly with the current workflow code', async () => {
    await Worker.runReplayHistory({ workflowsPath: TEST_WORKFLOWS }, history, 'experiment-diamond');
  });

  it('fails replay after a deliberately incompatible change', async () => {
    await expect(
      Worker.runReplayHistory({ workflowsPath: join(REPO, 'test', 'replay', 'incompatible-workflows.ts') }, history, 'experiment-diamond'),
    ).rejects.toBeInstanceOf(DeterminismViolationError);
  });
});

/** Patch ids recorded in a history (`patched()` taken), in order. */
function patches(h: History): string[] {
  return (h.events ?? [])
    .filter((e) => e.markerRecordedEventAttributes?.markerName === 'core_patch')
    .map((e) => JSON.parse(new TextDecoder().decode(e.markerRecordedEventAttributes!.details!['patch-data']!.payloads![0]!.data!)).id as string);
}
const activities = (h: History, type: string) => (h.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === type).length;
const localActivities = (h: History) =>
  (h.events ?? [])
    .filter((e) => e.markerRecordedEventAttributes?.markerName === 'core_local_activity')
    .map(
      (e) =>
        (JSON.parse(new TextDecoder().decode(e.markerRecordedEventAttributes!.details!.data!.payloads![0]!.data!)) as { activity_type: string }).activity_type,
    );
const signalsSent = (h: History) => (h.events ?? []).filter((e) => e.signalExternalWorkflowExecutionInitiatedEventAttributes).length;
const signalsReceived = (h: History) => (h.events ?? []).filter((e) => e.workflowExecutionSignaledEventAttributes).length;

const ALL = ['evaluate-chunks-by-views', 'evaluate-max-chunks', 'inference-max-chunks', 'progress-by-query'];

/**
 * Histories of the evaluate stage, its experiment and `runInference`, recorded with the code before
 * and after each patch (test/replay/README.md says how). Each is sized so that the other branch of
 * its patches would issue other commands: the chunk counts below are those of the recorded branch.
 */
const STAGE_HISTORIES: {
  file: string;
  recorded: string;
  patches: string[];
  counts: (h: History) => Record<string, number | string>;
  expected: Record<string, number | string>;
}[] = [
  {
    // 8 items, chunk_size 4, one view: 4 items a chunk (unpatched: 2 views, 2 items a chunk, 4 chunks).
    file: 'evaluate-views.json.gz',
    recorded: 'current',
    patches: ALL,
    counts: (h) => ({ chunks: activities(h, 'prepareEvaluationChunk'), signals: signalsSent(h) }),
    expected: { chunks: 2, signals: 0 },
  },
  {
    // 401 items, chunk_size 1: 400 chunks at most, so 2 items a chunk (unpatched: 401 chunks).
    file: 'evaluate-max-chunks.json.gz',
    recorded: 'current',
    patches: ALL,
    counts: (h) => ({ chunks: activities(h, 'prepareEvaluationChunk'), signals: signalsSent(h) }),
    expected: { chunks: 201, signals: 0 },
  },
  {
    // Its experiment: no progress signal reached it.
    file: 'evaluate-max-chunks-experiment.json.gz',
    recorded: 'current',
    patches: [],
    counts: (h) => ({ stages: (h.events ?? []).filter((e) => e.startChildWorkflowExecutionInitiatedEventAttributes).length, signals: signalsReceived(h) }),
    expected: { stages: 1, signals: 0 },
  },
  {
    // An experiment with 'records-local': its run and stage records are local-activity markers,
    // not activity tasks (4 workflow tasks; 8 in evaluate-max-chunks-experiment, recorded before).
    file: 'evaluate-records-local-experiment.json.gz',
    recorded: 'current',
    patches: ['records-local', 'endpoint-check-per-queue'],
    counts: (h) => ({
      stages: (h.events ?? []).filter((e) => e.startChildWorkflowExecutionInitiatedEventAttributes).length,
      recordTasks: ['beginRun', 'markStageRunning', 'finishStage', 'finishRun'].reduce((n, type) => n + activities(h, type), 0),
      localActivities: (h.events ?? []).filter((e) => e.markerRecordedEventAttributes?.markerName === 'core_local_activity').length,
      workflowTasks: (h.events ?? []).filter((e) => e.workflowTaskCompletedEventAttributes).length,
    }),
    expected: { stages: 1, recordTasks: 0, localActivities: 4, workflowTasks: 4 },
  },
  {
    // 'stage-reuse' taken, the stage claimed and run: one claimStage, then the stage's child workflow.
    file: 'evaluate-stage-reuse-run.json.gz',
    recorded: 'current',
    patches: ['records-local', 'endpoint-check-per-queue', 'stage-reuse'],
    counts: (h) => ({
      claims: activities(h, 'claimStage'),
      timers: (h.events ?? []).filter((e) => e.timerStartedEventAttributes).length,
      stages: (h.events ?? []).filter((e) => e.startChildWorkflowExecutionInitiatedEventAttributes).length,
    }),
    expected: { claims: 1, timers: 0, stages: 1 },
  },
  {
    // The same stage in a second run of the experiment, launched while the first ran it: claims
    // answered "wait" (a 2 s timer each) until the first run's stage succeeded, then "reused": no
    // child workflow at all.
    file: 'evaluate-stage-reuse-reused.json.gz',
    recorded: 'current',
    patches: ['records-local', 'endpoint-check-per-queue', 'stage-reuse'],
    counts: (h) => ({
      claims: activities(h, 'claimStage'),
      timers: (h.events ?? []).filter((e) => e.timerStartedEventAttributes).length,
      stages: (h.events ?? []).filter((e) => e.startChildWorkflowExecutionInitiatedEventAttributes).length,
    }),
    expected: { claims: 5, timers: 4, stages: 0 },
  },
  {
    // 'evaluate-short-steps' taken: 100 items, chunk_size 64, one view: a first chunk of 16 items, then
    // 64 and 20 (unpatched: 64 and 36); the artifact look-up a local activity; the last chunk judged
    // and scored by one activity (unpatched: a judge activity per chunk, then the metrics).
    file: 'evaluate-short-steps.json.gz',
    recorded: 'current',
    patches: ['evaluate-short-steps', ...ALL],
    counts: (h) => ({
      chunks: activities(h, 'prepareEvaluationChunk'),
      imports: activities(h, 'importEvaluationDataset'),
      judged: activities(h, 'judgeEvaluationChunk'),
      judgedAndScored: activities(h, 'judgeAndScoreEvaluation'),
      metrics: activities(h, 'computeEvaluationMetrics'),
      localActivities: localActivities(h).join(','),
    }),
    expected: { chunks: 3, imports: 0, judged: 2, judgedAndScored: 1, metrics: 0, localActivities: 'importEvaluationDataset' },
  },
  {
    // Its experiment, with 'endpoint-check-local': the run queue's endpoint check is a local activity
    // of the first workflow task (an activity task in evaluate-records-local-experiment).
    file: 'evaluate-short-steps-experiment.json.gz',
    recorded: 'current',
    patches: ['records-local', 'endpoint-check-per-queue', 'endpoint-check-local', 'stage-reuse'],
    counts: (h) => ({ checkTasks: activities(h, 'checkEndpoints'), localActivities: localActivities(h).join(',') }),
    expected: { checkTasks: 0, localActivities: 'beginRun,checkEndpoints,markStageRunning,finishStage,finishRun' },
  },
  {
    // An experiment with 'claim-local' (stage reuse on): the claim too is a local activity, so
    // everything up to the stage's start is one workflow task (3 in all; 4 in the fixture above).
    file: 'experiment-claim-local.json.gz',
    recorded: 'current',
    patches: ['records-local', 'endpoint-check-per-queue', 'endpoint-check-local', 'stage-reuse', 'claim-local'],
    counts: (h) => ({
      activityTasks: (h.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes).length,
      localActivities: localActivities(h).join(','),
      workflowTasks: (h.events ?? []).filter((e) => e.workflowTaskCompletedEventAttributes).length,
    }),
    expected: { activityTasks: 0, localActivities: 'beginRun,checkEndpoints,claimStage,markStageRunning,finishStage,finishRun', workflowTasks: 3 },
  },
  {
    // 401 requests, chunk size 1: 2 a chunk (unpatched: 401 chunks).
    file: 'inference-max-chunks.json.gz',
    recorded: 'current',
    patches: ['inference-max-chunks'],
    counts: (h) => ({ chunks: activities(h, 'executeRequests') }),
    expected: { chunks: 201 },
  },
  {
    // The distill stage (no distill patch yet): 150 items, 3 attempts, in rounds over every item
    // still pending: 3 reasoning rounds, 3 verdict rounds, one caption chunk and 3 reasoning chunks.
    file: 'distill-rounds.json.gz',
    recorded: 'current',
    patches: ['inference-max-chunks', 'progress-by-query'],
    counts: (h) => ({
      prepared: activities(h, 'prepareDistillReasonRound'),
      judged: activities(h, 'judgeDistillRound'),
      chunks: activities(h, 'executeRequests'),
    }),
    expected: { prepared: 3, judged: 3, chunks: 4 },
  },
  {
    // Before all patches (d714440^): 401 items, chunk_size 2 sized for 2 views: 1 item a chunk, 401
    // chunks (the views patch would make 2 items a chunk, the max-chunks patch 2 too), and a
    // progress signal per chunk.
    file: 'evaluate-before-patches.json.gz',
    recorded: 'd714440^',
    patches: [],
    counts: (h) => ({ chunks: activities(h, 'prepareEvaluationChunk'), signals: signalsSent(h) }),
    expected: { chunks: 401, signals: 401 },
  },
  {
    // Its experiment, which received the 401 signals.
    file: 'evaluate-before-patches-experiment.json.gz',
    recorded: 'd714440^',
    patches: [],
    counts: (h) => ({ stages: (h.events ?? []).filter((e) => e.startChildWorkflowExecutionInitiatedEventAttributes).length, signals: signalsReceived(h) }),
    expected: { stages: 1, signals: 401 },
  },
  {
    // Before all patches: 8 items, chunk_size 4 sized for 2 views: 4 chunks.
    file: 'evaluate-views-before-patches.json.gz',
    recorded: 'd714440^',
    patches: [],
    counts: (h) => ({ chunks: activities(h, 'prepareEvaluationChunk'), signals: signalsSent(h) }),
    expected: { chunks: 4, signals: 4 },
  },
  {
    // Between the patches (2b52256^): chunks by views, no cap: 401 items, chunk_size 1, 401 chunks.
    file: 'evaluate-before-max-chunks.json.gz',
    recorded: '2b52256^',
    patches: ['evaluate-chunks-by-views'],
    counts: (h) => ({ chunks: activities(h, 'prepareEvaluationChunk'), signals: signalsSent(h) }),
    expected: { chunks: 401, signals: 401 },
  },
  {
    // Before the inference cap (2b52256^): 401 requests, chunk size 1: 401 chunks.
    file: 'inference-before-max-chunks.json.gz',
    recorded: '2b52256^',
    patches: [],
    counts: (h) => ({ chunks: activities(h, 'executeRequests') }),
    expected: { chunks: 401 },
  },
];

// The bundler's webpack (not a dependency of ours), for its DefinePlugin.
const webpack = createRequire(createRequire(import.meta.url).resolve('@temporalio/worker'))('webpack') as {
  DefinePlugin: new (defs: Record<string, string>) => unknown;
};

/** The replay workflows as shipped, or with `patched(forced)` always true (test/replay/forced/patched.ts). */
function bundle(forced?: string): Promise<WorkflowBundleWithSourceMap> {
  return bundleWorkflowCode({
    workflowsPath: join(REPO, 'test', 'replay', 'workflows.ts'),
    logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} } as never,
    webpackConfigHook: forced
      ? (config) => ({
          ...config,
          resolve: { ...config.resolve, alias: { ...config.resolve?.alias, '@temporalio/workflow$': join(REPO, 'test', 'replay', 'forced', 'patched.ts') } },
          plugins: [...(config.plugins ?? []), new webpack.DefinePlugin({ __FORCED_PATCH__: JSON.stringify(forced) }) as never],
        })
      : undefined,
  });
}

describe('replay of evaluate and runInference histories, before and after each patch', () => {
  let shipped: WorkflowBundleWithSourceMap;
  beforeAll(async () => {
    shipped = await bundle();
  });

  for (const h of STAGE_HISTORIES) {
    it(`${h.file} (recorded with ${h.recorded} code) replays with the current code`, async () => {
      const recorded = load(h.file);
      expect(patches(recorded)).toEqual(h.patches);
      expect(h.counts(recorded)).toEqual(h.expected);
      await Worker.runReplayHistory({ workflowBundle: shipped }, recorded, h.file);
    });
  }

  // The branches matter: a history recorded before a patch fails to replay if that one patch's
  // branch is taken (chunking or progress signals differ from what was recorded), while the same
  // substitution with an unknown patch id replays. ('evaluate-chunks-by-views' is not here: runs
  // begun before it have no `maxCandidates` in their recorded dataset result, which keeps them at
  // 2 views whatever patched() answers.)
  const BEFORE: [file: string, patch: string][] = [
    ['evaluate-before-patches.json.gz', 'evaluate-max-chunks'],
    ['evaluate-before-patches.json.gz', 'progress-by-query'],
    ['evaluate-views-before-patches.json.gz', 'progress-by-query'],
    ['evaluate-before-max-chunks.json.gz', 'evaluate-max-chunks'],
    ['inference-before-max-chunks.json.gz', 'inference-max-chunks'],
    ['evaluate-max-chunks-experiment.json.gz', 'records-local'],
    ['evaluate-records-local-experiment.json.gz', 'stage-reuse'],
    ['evaluate-views.json.gz', 'evaluate-short-steps'],
    ['evaluate-records-local-experiment.json.gz', 'endpoint-check-local'],
    ['evaluate-short-steps-experiment.json.gz', 'claim-local'],
  ];
  it('a history recorded before a patch takes the unpatched branch: the patched one fails replay', async () => {
    const control = await bundle('no-such-patch');
    for (const file of new Set(BEFORE.map(([f]) => f))) await Worker.runReplayHistory({ workflowBundle: control }, load(file), file);
    const bundles = new Map<string, WorkflowBundleWithSourceMap>();
    for (const [file, patch] of BEFORE) {
      if (!bundles.has(patch)) bundles.set(patch, await bundle(patch));
      await expect(Worker.runReplayHistory({ workflowBundle: bundles.get(patch)! }, load(file), file), `${file} with ${patch}`).rejects.toBeInstanceOf(
        DeterminismViolationError,
      );
    }
  });
});
