import type { Broker, Consumer } from '@tasker/transport';

/** A message parked on the dead-letter queue, with the reason headers decoded. */
export interface ParkedMessage {
  body: Buffer;
  routingKey: string;
  code: string;
  reason: string;
  sourceQueue: string | null;
}

const header = (h: Record<string, unknown>, name: string): string | null => {
  const v = h[name];
  if (v === undefined || v === null) return null;
  return Buffer.isBuffer(v) ? v.toString('utf8') : String(v);
};

/**
 * Reads the dead-letter queue in arrival order and keeps every message (acked: the queue
 * is the test's own). Find a parked message by a marker the test put in its body.
 */
export class DeadLetterReader {
  readonly parked: ParkedMessage[] = [];
  private consumer: Consumer | null = null;

  private constructor() {}

  static async start(broker: Broker, queue: string): Promise<DeadLetterReader> {
    const r = new DeadLetterReader();
    r.consumer = await broker.consume(queue, { prefetch: 50 }, (d) => {
      const h = (d.message.properties.headers ?? {}) as Record<string, unknown>;
      r.parked.push({
        body: d.body,
        routingKey: d.message.fields.routingKey,
        code: header(h, 'x-tasker-code') ?? '',
        reason: header(h, 'x-tasker-reason') ?? '',
        sourceQueue: header(h, 'x-tasker-source-queue'),
      });
      d.ack();
    });
    return r;
  }

  /** The first parked message whose body contains the marker, if it has arrived. */
  find(marker: string): ParkedMessage | undefined {
    const m = Buffer.from(marker);
    return this.parked.find((p) => p.body.includes(m));
  }

  async close(): Promise<void> {
    await this.consumer?.close();
  }
}
