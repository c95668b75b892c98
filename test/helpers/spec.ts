import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import './kinds.js';
import { loadSpec, type LoadedSpec } from '../../spec/load.js';

/** Writes a spec to a temp file and loads it (test kinds registered). */
export async function specFromObject(obj: unknown, sets: string[] = []): Promise<LoadedSpec> {
  const path = writeSpec(obj);
  return loadSpec(path, { sets });
}

export function writeSpec(obj: unknown, name = 'spec.yaml'): string {
  const dir = mkdtempSync(join(tmpdir(), 'jf-spec-'));
  const path = join(dir, name);
  writeFileSync(path, typeof obj === 'string' ? obj : YAML.stringify(obj));
  return path;
}

export function diamond(name: string, ms = 150) {
  return {
    name,
    seed: 7,
    stages: [
      { id: 'a', uses: 'test-work', with: { items: 2, ms: 50 } },
      { id: 'b', uses: 'test-work', needs: ['a'], with: { items: 4, ms } },
      { id: 'c', uses: 'test-work', needs: ['a'], with: { items: 4, ms } },
      { id: 'd', uses: 'test-work', needs: ['b', 'c'], with: { items: 2, ms: 50 } },
    ],
  };
}
