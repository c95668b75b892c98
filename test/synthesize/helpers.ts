import type { Client } from '@temporalio/client';

/** The largest payload (bytes of its data) anywhere in the given workflows' histories. */
export async function largestHistoryPayload(client: Client, workflowIds: readonly string[]): Promise<number> {
  let largest = 0;
  const visit = (v: unknown): void => {
    if (v === null || typeof v !== 'object') return;
    if (v instanceof Uint8Array) return;
    const o = v as Record<string, unknown>;
    if (o.data instanceof Uint8Array && 'metadata' in o) {
      largest = Math.max(largest, o.data.byteLength);
      return;
    }
    for (const x of Array.isArray(v) ? v : Object.values(o)) visit(x);
  };
  for (const id of workflowIds) visit(await client.workflow.getHandle(id).fetchHistory());
  return largest;
}
