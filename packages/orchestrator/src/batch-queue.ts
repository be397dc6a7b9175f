import { oncePerTurn } from '@tasker/transport';

export interface BatchQueueOptions<T> {
  /** Most items in one batch (counted by `weight`). */
  batchSize: number;
  /** What an item counts for against `batchSize` (a message carrying several results counts each). @defaultValue 1 */
  weight?: (item: T) => number;
  /** Batches running at once. */
  concurrency: number;
  /** Runs one batch. */
  run: (batch: T[]) => Promise<void>;
  /** A batch whose `run` rejected (it should handle its own errors). */
  onError: (err: unknown) => void;
}

/**
 * Items handed to `run` in batches: whatever arrived by the end of the event loop's turn, up
 * to `batchSize`, with at most `concurrency` batches running; what arrives while they run
 * waits and goes together in the next batch. Used for the queues' messages (BatchConsumer)
 * and for task creation over HTTP.
 */
export class BatchQueue<T> {
  private pending: T[] = [];
  private running = 0;
  private idle: Array<() => void> = [];
  private readonly wake = oncePerTurn(() => this.pump());

  constructor(private readonly o: BatchQueueOptions<T>) {}

  push(item: T): void {
    this.pending.push(item);
    this.wake();
  }

  /** Drops the items no batch has taken yet. */
  clear(): void {
    this.pending = [];
  }

  /** Resolves once no batch is running and nothing waits. */
  async drained(): Promise<void> {
    if (this.running > 0 || this.pending.length > 0) await new Promise<void>((r) => this.idle.push(r));
  }

  /** How many pending items the next batch takes: at least one, at most `batchSize` by weight. */
  private take(): number {
    const weight = this.o.weight;
    if (!weight) return this.o.batchSize;
    let n = 0;
    for (let total = 0; n < this.pending.length; n++) {
      total += weight(this.pending[n]!);
      if (n > 0 && total > this.o.batchSize) break;
    }
    return n;
  }

  private pump(): void {
    while (this.pending.length > 0 && this.running < this.o.concurrency) {
      const batch = this.pending.splice(0, this.take());
      this.running++;
      this.o
        .run(batch)
        .catch(this.o.onError)
        .finally(() => {
          this.running--;
          if (this.pending.length > 0) this.wake();
          else if (this.running === 0) for (const w of this.idle.splice(0)) w();
        });
    }
  }
}
