/** The training backends by spec type. */
import { join, resolve } from 'node:path';
import type { TrainBackendSpec } from '../../spec/kinds/train.js';
import type { TrainBackend } from './backend.js';
import { ProcessBackend } from './process.js';
import { RayBackend } from './ray.js';
import { SlurmBackend } from './slurm.js';

export type { TrainBackend } from './backend.js';

export function backendFor(spec: TrainBackendSpec, stateDir: string): TrainBackend {
  switch (spec.type) {
    case 'process':
      return new ProcessBackend(resolve(spec.dir ?? join(stateDir, 'jobs')));
    case 'ray':
      return new RayBackend(spec.address, spec.num_cpus);
    case 'slurm':
      return new SlurmBackend({ prefix: spec.prefix, partition: spec.partition, cpus: spec.cpus, mem: spec.mem, time: spec.time });
    case 'openai':
      throw new Error('the openai training backend is not built yet');
  }
}
