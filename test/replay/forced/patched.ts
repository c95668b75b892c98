// Stands in for `@temporalio/workflow` in a replay bundle of replay.test.ts: `patched()` answers
// true for one patch id (defined at bundling), without recording a marker, as if the code had
// always taken that branch; every other patch behaves as shipped.
import { patched as shippedPatched } from '@temporalio/workflow/lib/index.js';

export * from '@temporalio/workflow/lib/index.js';

declare const __FORCED_PATCH__: string;

export function patched(patchId: string): boolean {
  return patchId === __FORCED_PATCH__ || shippedPatched(patchId);
}
