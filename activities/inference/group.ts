/**
 * Group commit for any batched statement: an item added while no flush runs starts one at once;
 * items added during a flush go out together in the next (batches grow with load, one round trip
 * each). Each `add` resolves with its own item's outcome once its batch is done, or rejects with
 * the batch's error.
 */
export class GroupBatch<In, Out> {
  private buffer: { item: In; resolve: (out: Out) => void; reject: (err: unknown) => void }[] = [];
  private running = false;

  constructor(
    private readonly flush: (items: readonly In[]) => Promise<readonly Out[]>,
    private readonly maxBatch = 1000,
  ) {}

  add(item: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      this.buffer.push({ item, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.buffer.length > 0) {
        const batch = this.buffer.splice(0, this.maxBatch);
        try {
          const outs = await this.flush(batch.map((b) => b.item));
          batch.forEach((b, i) => b.resolve(outs[i]!));
        } catch (err) {
          for (const b of batch) b.reject(err);
        }
      }
    } finally {
      this.running = false;
    }
  }
}
