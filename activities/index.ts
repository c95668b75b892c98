import type { Db } from '../db/client.js';
import { createRecordActivities } from './records.js';

export interface ActivityDeps {
  db: Db;
}

/** Every activity the worker registers, built over injected dependencies (tests pass their own). */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createRecordActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
