import { loadRuntimeConfig } from '../../runtime/config.js';
import { down, up } from '../../runtime/stack.js';
import { parseFlags } from '../args.js';
import { stopSimulator } from '../simulator.js';
import { EXIT } from '../errors.js';

const UP_USAGE = `usage: judgeflow up [--no-worker] [--json]

Starts (or reuses) the local stack in the state folder (JUDGEFLOW_STATE_DIR, default .judgeflow/):
an embedded Postgres unless DATABASE_URL is set, a Temporal dev server (with its Web UI) unless
TEMPORAL_ADDRESS is set, and a worker. Ports: JUDGEFLOW_PG_PORT, JUDGEFLOW_TEMPORAL_PORT,
JUDGEFLOW_TEMPORAL_UI_PORT.`;

export async function upCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { 'no-worker': { type: 'boolean' }, json: { type: 'boolean' } }, UP_USAGE);
  const cfg = loadRuntimeConfig();
  const info = await up(cfg, { worker: !values['no-worker'], log: values.json ? undefined : (l) => console.error(l) });
  if (values.json) console.log(JSON.stringify(info));
  else {
    console.log(`postgres: ${info.started.postgres ? 'started' : info.reused.postgres ? 'running (reused)' : 'external (DATABASE_URL)'}`);
    console.log(`temporal: ${info.temporalAddress}${info.temporalUiUrl ? ` (Web UI ${info.temporalUiUrl})` : ''}`);
    console.log(`worker:   ${info.started.worker ? 'started' : info.reused.worker ? 'running (reused)' : 'not started'}`);
  }
  return EXIT.ok;
}

const DOWN_USAGE = `usage: judgeflow down

Stops what \`judgeflow up\` started (worker, Temporal dev server, embedded Postgres). State is kept.`;

export async function downCommand(argv: string[]): Promise<number> {
  parseFlags(argv, {}, DOWN_USAGE);
  const cfg = loadRuntimeConfig();
  const stopped = stopSimulator(cfg.stateDir) ? ['simulator'] : [];
  const res = await down(cfg, { log: (l) => console.error(l) });
  stopped.push(...res.stopped);
  console.log(stopped.length > 0 ? `stopped: ${stopped.join(', ')}` : 'nothing was running');
  return EXIT.ok;
}
