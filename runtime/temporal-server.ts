/**
 * The Temporal dev server of the local stack: `temporal server start-dev` with SQLite persistence
 * in `<stateDir>/temporal.db`, frontend on 127.0.0.1:<temporalPort>, Web UI on <temporalUiPort>
 * (0 = headless), started detached so it outlives the CLI.
 */
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import type { RuntimeConfig } from './config.js';
import { envVarFor } from './config.js';
import { liveRecord, logDir, PortInUseError, recordAlive, removeRecord, StackError, startRecordedService, stopRecorded } from './daemon.js';
import { isTcpOpen } from './net.js';
import { findTemporalCli } from './temporal-cli.js';

export interface TemporalStatus {
  address: string;
  uiUrl?: string;
  started: boolean;
  reused: boolean;
}

function logPath(stateDir: string): string {
  return join(logDir(stateDir), 'temporal.log');
}

/**
 * Connects to `address` and describes `namespace`, retrying until `timeoutMs`. Resolves with
 * `undefined` when it works, else the last error.
 */
export async function probeTemporal(
  address: string,
  namespace: string,
  timeoutMs: number,
  stillRunning: () => boolean = () => true,
): Promise<Error | undefined> {
  const deadline = Date.now() + timeoutMs;
  const [host = '127.0.0.1', portText = '7233'] = splitAddress(address);
  let last: Error = new Error(`no answer within ${timeoutMs} ms`);
  while (Date.now() < deadline) {
    if (!stillRunning()) return new Error(`the server exited (${last.message})`);
    if (await isTcpOpen(host, Number(portText), 500)) {
      let connection: Connection | undefined;
      try {
        connection = await Connection.connect({ address, connectTimeout: Math.max(1_000, Math.min(5_000, deadline - Date.now())) });
        await connection.workflowService.describeNamespace({ namespace });
        return undefined;
      } catch (err) {
        last = err as Error;
      } finally {
        await connection?.close().catch(() => undefined);
      }
    } else {
      last = new Error(`nothing listens on ${address}`);
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  return new Error(`not ready after ${timeoutMs} ms: ${last.message}`);
}

function splitAddress(address: string): [string, string] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i).replace(/^\[|\]$/g, ''), address.slice(i + 1)];
}

/**
 * Checks, without starting anything, that the dev server can start: its ports are free and a
 * `temporal` CLI exists. No-op when one runs.
 */
export async function preflightTemporal(cfg: RuntimeConfig): Promise<void> {
  if (liveRecord(cfg.stateDir, 'temporal')) return;
  await startChecks(cfg);
}

/** The CLI to start the dev server with, once its ports are known to be free. */
async function startChecks(cfg: RuntimeConfig): Promise<string> {
  if (await isTcpOpen('127.0.0.1', cfg.temporalPort)) throw new PortInUseError(cfg.temporalPort, envVarFor('temporalPort'), 'Temporal dev server gRPC');
  if (cfg.temporalUiPort && (await isTcpOpen('127.0.0.1', cfg.temporalUiPort))) {
    throw new PortInUseError(cfg.temporalUiPort, envVarFor('temporalUiPort'), 'Temporal Web UI; 0 turns the UI off');
  }
  return findTemporalCli({ explicitPath: cfg.temporalCliPath });
}

/**
 * Makes the Temporal dev server of `cfg.stateDir` run: reuses a live one, else starts it detached
 * and waits until the namespace can be described.
 */
export async function ensureTemporal(cfg: RuntimeConfig, log: (line: string) => void, timeoutMs = 60_000): Promise<TemporalStatus> {
  const address = `127.0.0.1:${cfg.temporalPort}`;
  const uiUrl = cfg.temporalUiPort ? `http://127.0.0.1:${cfg.temporalUiPort}` : undefined;
  const portVar = envVarFor('temporalPort');
  const uiVar = envVarFor('temporalUiPort');
  const record = liveRecord(cfg.stateDir, 'temporal');
  if (record) {
    if (record.port !== cfg.temporalPort || (record.uiPort ?? 0) !== cfg.temporalUiPort) {
      throw new StackError(
        `the Temporal dev server of ${cfg.stateDir} already runs on port ${record.port} (UI ${record.uiPort || 'off'}), but ${portVar}=${cfg.temporalPort}, ${uiVar}=${cfg.temporalUiPort}; run \`judgeflow down\` first to move it, or set them back`,
      );
    }
    const err = await probeTemporal(address, cfg.namespace, timeoutMs, () => recordAlive(record));
    if (err) {
      throw new StackError(
        `the Temporal dev server (pid ${record.pid}, ${address}) runs but does not answer: ${err.message}; run \`judgeflow down\` and try again (log: ${record.logPath})`,
        { cause: err },
      );
    }
    log(`temporal: reusing pid ${record.pid} on ${address}`);
    return { address, ...(uiUrl && { uiUrl }), started: false, reused: true };
  }

  const bin = await startChecks(cfg);
  const command = [
    bin,
    'server',
    'start-dev',
    '--db-filename',
    join(cfg.stateDir, 'temporal.db'),
    '--ip',
    '127.0.0.1',
    '--port',
    String(cfg.temporalPort),
    ...(cfg.temporalUiPort ? ['--ui-port', String(cfg.temporalUiPort), '--ui-disable-news-fetch'] : ['--headless']),
    ...(cfg.namespace !== 'default' ? ['--namespace', cfg.namespace] : []),
    '--log-level',
    'warn',
  ];
  const started = Date.now();
  const spawned = await startRecordedService({
    stateDir: cfg.stateDir,
    service: 'temporal',
    command,
    logPath: logPath(cfg.stateDir),
    env: process.env,
    cwd: cfg.stateDir,
    port: cfg.temporalPort,
    ...(cfg.temporalUiPort !== undefined && { uiPort: cfg.temporalUiPort }),
    ready: (stillRunning) => probeTemporal(address, cfg.namespace, timeoutMs, stillRunning),
    stop: { sig: 'SIGTERM', group: true },
    failure: (err, tail) => {
      const why = /address already in use/i.test(tail) ? ` (a port is taken: set ${portVar} / ${uiVar} to free ports)` : '';
      return new StackError(`the Temporal dev server (${bin}) did not start${why}: ${err.message}\n--- ${logPath(cfg.stateDir)} ---\n${tail}`, { cause: err });
    },
  });
  log(`temporal: started pid ${spawned.pid} on ${address}${uiUrl ? `, UI ${uiUrl}` : ''} in ${Date.now() - started} ms`);
  return { address, ...(uiUrl && { uiUrl }), started: true, reused: false };
}

/** Stops the Temporal dev server of `stateDir`, if one runs. */
export async function stopTemporal(stateDir: string, log: (line: string) => void): Promise<boolean> {
  const record = liveRecord(stateDir, 'temporal');
  if (!record) return false;
  const how = await stopRecorded(record, { sig: 'SIGTERM', group: true, graceMs: 15_000 });
  removeRecord(stateDir, 'temporal');
  log(`temporal: ${how} (pid ${record.pid})`);
  return how !== 'not running';
}
