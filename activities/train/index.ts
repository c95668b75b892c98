/** The training backends by spec type. */
import { join, resolve } from 'node:path';
import type { TrainBackendSpec } from '../../spec/kinds/train.js';
import type { TrainBackend } from './backend.js';
import OpenAI from 'openai';
import { OpenAIFineTuneBackend } from './openai.js';
import { ProcessBackend } from './process.js';
import { RayBackend } from './ray.js';
import { SlurmBackend } from './slurm.js';

export type { TrainBackend } from './backend.js';

export function backendFor(spec: TrainBackendSpec, stateDir: string, env: NodeJS.ProcessEnv = process.env): TrainBackend {
  switch (spec.type) {
    case 'process':
      return new ProcessBackend(resolve(spec.dir ?? join(stateDir, 'jobs')));
    case 'ray':
      return new RayBackend(spec.address, spec.num_cpus);
    case 'slurm':
      return new SlurmBackend({ prefix: spec.prefix, partition: spec.partition, cpus: spec.cpus, mem: spec.mem, time: spec.time });
    case 'openai':
      // The activity's retry policy owns retries: the client makes none of its own.
      return new OpenAIFineTuneBackend(
        new OpenAI({ baseURL: spec.base_url, apiKey: (spec.api_key_env ? env[spec.api_key_env] : undefined) ?? 'none', maxRetries: 0, timeout: 60_000 }),
      );
  }
}
