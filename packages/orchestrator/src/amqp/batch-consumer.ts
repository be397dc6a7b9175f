import { ErrorCode, TaskerError, decodeMessage, decodeOneOrMany, type BatchShape, type Decoded, type DecodedPart } from '@tasker/protocol';
import type { Broker, Consumer, Delivery } from '@tasker/transport';
import { BatchQueue } from '../batch-queue.ts';
import type { Logger } from 'pino';
import type { z } from 'zod';

export interface BatchConsumerOptions<S extends z.ZodType> {
  queue: string;
  /** What the messages are, for logs and parking reasons ("step result"). */
  what: string;
  schema: S;
  prefetch: number;
  batchSize: number;
  /** Batches processed at once. @defaultValue 2 */
  concurrency?: number;
  /**
   * Runs one batch. Throwing means nothing of the batch was applied. `part` is set on an
   * item that came with others in one message (`batch`).
   */
  process: (items: Array<{ value: z.infer<S>; delivery: Delivery; part?: DecodedPart<z.infer<S>> }>) => Promise<void>;
  /**
   * Messages may also carry several items in this shape (`step_results`); each item is then
   * checked, processed or parked on its own, and the message is acked once all are settled.
   */
  batch?: BatchShape;
  /** Let NUL characters through decoding (the processor sanitizes them). @defaultValue false */
  allowNul?: boolean;
  /** Extra checks on a decoded message (`inBatch`: one item of a message carrying several); a returned error parks it. */
  check?: (value: z.infer<S>, delivery: Delivery, inBatch: boolean) => TaskerError | null;
  /**
   * Where unprocessable messages go, with the reason in headers. `body` is given when only
   * one item of a message carrying several is parked: publish it instead of the whole body.
   */
  park: (delivery: Delivery, error: { code: string; message: string }, body?: string) => Promise<void>;
  logger: Logger;
}

/** A message as it arrived, decoded. */
interface Received<T> {
  delivery: Delivery;
  decoded: Decoded<Array<DecodedPart<T>>>;
}

/** Errors that mean "the database (or broker) is away", not "this message is bad". */
export function isTransientError(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  const code = e?.code ?? '';
  return (
    code.startsWith('08') || // connection exceptions
    code === '57P01' || code === '57P02' || code === '57P03' || // admin shutdown, crash shutdown, cannot connect now
    code === '40001' || code === '40P01' || // serialization failure, deadlock: retry
    ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND'].includes(code) ||
    /Connection terminated|connection timeout|not connected|Client has encountered a connection error/i.test(e?.message ?? '')
  );
}

/**
 * Consumes a queue and hands messages to `process` in batches: a batch is whatever arrived
 * by the next turn of the event loop, up to `batchSize`, so one message goes through at
 * once and a burst becomes one transaction. Messages are acked only after `process`
 * resolves (their effect is committed). A failing batch is retried while the failure is
 * transient (database restarting); otherwise its messages are retried one by one and a
 * message that still fails is parked with the reason, so one bad message never blocks or
 * crashes the consumer.
 */
export class BatchConsumer<S extends z.ZodType> {
  private consumer: Consumer | null = null;
  /** Messages decoded on arrival, so that a batch counts the items they carry, not the messages. */
  private readonly queue: BatchQueue<Received<z.infer<S>>>;

  constructor(
    private readonly broker: Broker,
    private readonly o: BatchConsumerOptions<S>,
  ) {
    this.queue = new BatchQueue<Received<z.infer<S>>>({
      batchSize: o.batchSize,
      weight: (r) => (r.decoded.ok ? r.decoded.value.length : 1),
      concurrency: o.concurrency ?? 2,
      run: (batch) => this.runBatch(batch),
      onError: (err) => o.logger.error({ err, queue: o.queue }, 'batch failed unexpectedly'),
    });
  }

  async start(): Promise<void> {
    this.consumer = await this.broker.consume(this.o.queue, { prefetch: this.o.prefetch }, (d) => this.queue.push({ delivery: d, decoded: this.decode(d) }));
  }

  /** Items of a message carrying several that are not settled yet; the message is acked at 0. */
  private unsettled = new WeakMap<Delivery, number>();

  /** One item of `d` is done (applied or parked): ack `d` once all of its items are. */
  private settle(d: Delivery): void {
    const left = (this.unsettled.get(d) ?? 1) - 1;
    if (left > 0) {
      this.unsettled.set(d, left);
      return;
    }
    this.unsettled.delete(d);
    d.ack();
  }

  private decode(d: Delivery): Decoded<Array<DecodedPart<z.infer<S>>>> {
    const options = { allowNul: this.o.allowNul ?? false };
    try {
      if (this.o.batch) return decodeOneOrMany(this.o.schema, this.o.batch, d.body, this.o.what, options);
      const decoded = decodeMessage(this.o.schema, d.body, this.o.what, options);
      return decoded.ok ? { ok: true, value: [{ decoded, body: '', place: null }] } : decoded;
    } catch (err) {
      // One message must never take its batch down with it.
      return { ok: false, error: new TaskerError(ErrorCode.INVALID_MESSAGE, `${this.o.what} could not be decoded: ${(err as Error).message}`) };
    }
  }

  private async runBatch(batch: Array<Received<z.infer<S>>>): Promise<void> {
    // `part`: an item of a message carrying several (its own JSON, made only to park it alone).
    const items: Array<{ value: z.infer<S>; delivery: Delivery; part?: DecodedPart<z.infer<S>> }> = [];
    for (const { delivery: d, decoded } of batch) {
      if (!decoded.ok) {
        await this.parkAndAck(d, decoded.error);
        continue;
      }
      const parts = decoded.value;
      if (parts.length > 1) this.unsettled.set(d, parts.length);
      for (const part of parts) {
        let error: { code: string; message: string } | null;
        try {
          error = part.decoded.ok ? (this.o.check?.(part.decoded.value, d, part.place !== null) ?? null) : part.decoded.error;
        } catch (err) {
          error = { code: 'INVALID_MESSAGE', message: `${this.o.what} could not be checked: ${(err as Error).message}` };
        }
        if (error || !part.decoded.ok) {
          await this.parkAndAck(d, error!, part.place !== null ? part.body : undefined);
          continue;
        }
        items.push({ value: part.decoded.value, delivery: d, ...(parts.length > 1 ? { part } : {}) });
      }
    }
    // Messages may carry many items each (`step_results`): a transaction takes at most
    // `batchSize` items, so its size (and the memory it needs) does not grow with them.
    for (let i = 0; i < items.length; i += this.o.batchSize) {
      await this.processWithRecovery(items.slice(i, i + this.o.batchSize));
    }
  }

  private async processWithRecovery(items: Array<{ value: z.infer<S>; delivery: Delivery; part?: DecodedPart<z.infer<S>> }>): Promise<void> {
    let delay = 250;
    let conflicts = 0;
    for (;;) {
      try {
        await this.o.process(items);
        for (const i of items) this.settle(i.delivery);
        return;
      } catch (err) {
        const code = (err as { code?: string }).code;
        if ((code === '40001' || code === '40P01') && conflicts++ < 10) {
          // A conflict with another writer (serialization failure, deadlock, or rows changed
          // under a result batch's locks): nothing was applied; run the batch again now.
          this.o.logger.warn({ err: (err as Error).message, attempt: conflicts }, `${this.o.what} batch conflicted; running it again`);
          await new Promise((r) => setTimeout(r, Math.random() * 20));
          continue;
        }
        if (isTransientError(err)) {
          // Keep the messages unacked and wait for the database to come back.
          this.o.logger.warn({ err: (err as Error).message, retryInMs: delay }, `${this.o.what} batch waits for the database`);
          await new Promise((r) => setTimeout(r, delay));
          delay = Math.min(delay * 2, 5000);
          continue;
        }
        if (items.length === 1) {
          const reason = { code: 'INTERNAL', message: `processing failed: ${(err as Error).message}` };
          this.o.logger.error({ err, queue: this.o.queue }, `${this.o.what} could not be processed`);
          const only = items[0]!;
          await this.parkAndAck(only.delivery, reason, only.part?.body);
          return;
        }
        this.o.logger.warn({ err: (err as Error).message, size: items.length }, `${this.o.what} batch failed; retrying one by one`);
        for (const i of items) await this.processWithRecovery([i]);
        return;
      }
    }
  }

  /** Parks a message, or one item of it (`body`), and settles it. */
  private async parkAndAck(d: Delivery, error: { code: string; message: string }, body?: string): Promise<void> {
    this.o.logger.error({ queue: this.o.queue, code: error.code, reason: error.message }, `${this.o.what} parked`);
    try {
      await this.o.park(d, error, body);
      if (body === undefined) {
        this.unsettled.delete(d);
        d.ack();
      } else this.settle(d);
    } catch (err) {
      // Not parked: leave it unacked so the broker keeps it.
      this.o.logger.error({ err: (err as Error).message }, 'could not park a message; it stays on its queue');
    }
  }

  /** Stops taking messages and waits for batches in flight; unprocessed ones go back to the queue. */
  async stop(): Promise<void> {
    await this.consumer?.cancel();
    this.queue.clear();
    await this.queue.drained();
    await this.consumer?.close();
  }
}
