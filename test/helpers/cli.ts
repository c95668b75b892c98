import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { REPO, testDatabaseUrl, testTemporalAddress } from './env.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real `judgeflow` bin in a child process against the test servers. */
export function runCli(args: string[], env: Record<string, string> = {}, cwd = REPO): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(REPO, 'bin', 'judgeflow.mjs'), ...args], {
      cwd,
      env: { ...process.env, DATABASE_URL: testDatabaseUrl(), TEMPORAL_ADDRESS: testTemporalAddress(), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}
