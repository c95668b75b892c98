import pg from 'pg';
import { openDb } from '../../db/client.js';
import { applyMigrations } from '../../db/migrate.js';
import { startSimulator } from '../../sim/server.js';
import { activitiesFor, activityEnv, batchRows, endpoint, prepareBatch } from './helpers.js';
import { loadResults, stageUsage } from '../../activities/inference/index.js';

const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
await admin.connect();
const name = `jf_smoke_${Date.now()}`;
await admin.query(`create database ${name}`);
const h = openDb(`postgres://postgres@127.0.0.1:5432/${name}`);
await applyMigrations(h.db);
const sim = await startSimulator({ latency: { kind: 'fixed', ms: Number(process.env.LAT ?? 0) }, faults: { rate_429: Number(process.env.F429 ?? 0), rate_500: 0.0, rate_malformed: 0.0 } });
try {
  const ep = endpoint(process.env.URL ?? sim.url, { concurrency: 64, timeout_s: 10, max_retry_after_s: 5 });
  const N = Number(process.env.N ?? 2000);
  const range = await prepareBatch(h.db, batchRows('r1', 's1', N), ep);
  console.log(range);
  const outcomes: Record<string, number> = {};
  const { activities } = activitiesFor(h.db, { backoff: { baseMs: 100 }, onAttempt: (e) => { outcomes[e.outcome] = (outcomes[e.outcome] ?? 0) + 1; if (e.outcome !== 'ok' && outcomes[e.outcome]! < 3) console.log(e); } });
  const { env, heartbeats } = activityEnv();
  const t0 = Date.now();
  const out = await env.run(activities.executeRequests, { runId: 'r1', stageId: 's1', endpointName: 'ep', endpoint: ep, ...range });
  const dt = Date.now() - t0;
  console.log(out, dt, 'ms', (N / dt * 1000).toFixed(0), 'req/s', 'heartbeats', heartbeats.length, heartbeats.at(-1));
  console.log(sim.stats(), outcomes);
  console.log(await stageUsage(h.db, 'r1', 's1'));
  const res = await loadResults(h.db, 'r1', 's1');
  console.log(res[0], res.length);
  // rerun same batch under new stage
  await prepareBatch(h.db, batchRows('r1', 's2', N).map(r => ({...r, request: batchRows('r1','s1',N)[Number(r.itemKey.slice(5))]!.request})), ep);
  sim.reset();
  const range2 = await (await import('../../activities/inference/index.js')).requestIdRange(h.db, 'r1', 's2');
  const out2 = await activityEnv().env.run(activities.executeRequests, { runId: 'r1', stageId: 's2', endpointName: 'ep', endpoint: ep, ...range2 });
  console.log(out2, sim.stats().requests);
} finally {
  await sim.close();
  await h.close();
  await admin.query(`drop database ${name} with (force)`);
  await admin.end();
}
