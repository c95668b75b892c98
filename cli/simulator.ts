import { spawn } from 'node:child_process';
import { mkdirSync, openSync, readFileSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { isTcpOpen, waitForTcp } from '../runtime/net.js';
import { PACKAGE_ROOT } from '../spec/load.js';
import { ConfigError } from './errors.js';

const pidFile = (stateDir: string) => join(stateDir, 'sim.pid');

/**
 * Starts the simulator a spec asks for (`simulator:`), detached and tracked in the state folder,
 * unless something already answers on its port. `judgeflow down` stops it.
 */
export async function ensureSimulator(opts: {
  stateDir: string;
  specPath: string;
  config: string;
  port: number;
  log?: (l: string) => void;
}): Promise<'started' | 'running'> {
  if (await isTcpOpen('127.0.0.1', opts.port)) return 'running';
  const config = isAbsolute(opts.config) ? opts.config : resolve(dirname(opts.specPath), opts.config);
  if (!existsSync(config)) throw new ConfigError(`${opts.specPath}: simulator.config: file not found: ${config}`);
  mkdirSync(join(opts.stateDir, 'logs'), { recursive: true });
  const out = openSync(join(opts.stateDir, 'logs', 'sim.log'), 'a');
  const child = spawn(
    process.execPath,
    [join(PACKAGE_ROOT, 'bin', 'judgeflow.mjs'), 'sim', '--port', String(opts.port), '--host', '127.0.0.1', '--config', config],
    {
      cwd: PACKAGE_ROOT,
      detached: true,
      stdio: ['ignore', out, out],
    },
  );
  child.unref();
  writeFileSync(pidFile(opts.stateDir), String(child.pid));
  try {
    await waitForTcp('127.0.0.1', opts.port, 30_000);
  } catch {
    throw new ConfigError(`the simulator did not start on port ${opts.port}; see ${join(opts.stateDir, 'logs', 'sim.log')}`);
  }
  opts.log?.(`simulator: started on http://127.0.0.1:${opts.port}/v1 (${config})`);
  return 'started';
}

export function stopSimulator(stateDir: string): boolean {
  const file = pidFile(stateDir);
  if (!existsSync(file)) return false;
  const pid = Number(readFileSync(file, 'utf8'));
  rmSync(file, { force: true });
  try {
    process.kill(pid, 'SIGTERM');
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}
