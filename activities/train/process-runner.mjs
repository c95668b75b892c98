#!/usr/bin/env node
// Runs one `process`-backend training job, detached from the worker that started it: reads
// <job dir>/job.json ({ argv, cwd, env }), runs argv with its output appended to <job dir>/log,
// and writes the exit code to <job dir>/exit when it ends (128 + n for signal n). SIGTERM and
// SIGINT are passed on to the trainer. Plain JavaScript so that node runs it without a loader.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';

const dir = process.argv[2];
const job = JSON.parse(readFileSync(join(dir, 'job.json'), 'utf8'));
const log = openSync(join(dir, 'log'), 'a');
const writeExit = (code) => {
  writeFileSync(join(dir, 'exit.tmp'), `${code}\n`);
  renameSync(join(dir, 'exit.tmp'), join(dir, 'exit'));
};
let child;
try {
  child = spawn(job.argv[0], job.argv.slice(1), { cwd: job.cwd, env: job.env, stdio: ['ignore', log, log] });
} catch (err) {
  writeFileSync(log, `judgeflow: cannot start ${job.argv[0]}: ${err.message}\n`);
  writeExit(127);
  process.exit(0);
}
child.on('error', (err) => {
  writeFileSync(join(dir, 'log'), `judgeflow: cannot start ${job.argv[0]}: ${err.message}\n`, { flag: 'a' });
  writeExit(127);
  process.exit(0);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => {
  closeSync(log);
  writeExit(code ?? 128 + (constants.signals[signal] ?? 0));
  process.exit(0);
});
