import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import type { Names } from '@tasker/protocol';

/** A message as the kit saw it on the wire, before anyone decoded it. */
export interface Observed {
  body: Buffer;
  /** The body parsed as JSON, or undefined if it is not JSON. */
  json: unknown;
  routingKey: string;
  exchange: string;
  properties: ConsumeMessage['properties'];
  receivedAt: number;
  /**
   * Set when the result came inside a `step_results` message (several results in one,
   * optional for workers): how many it carried. `json` is then that one result.
   */
  sharedWith?: number;
}

/**
 * Binds queues of its own (exclusive, deleted with the connection) to the results and
 * dead-letter exchanges, so the kit sees every step result and every parked message as
 * sent, next to the orchestrator, which consumes its own queues as usual.
 */
export class Observer {
  readonly results: Observed[] = [];
  readonly parked: Observed[] = [];
  private waiters: Array<() => void> = [];

  private constructor(
    private readonly conn: ChannelModel,
    readonly channel: Channel,
    private readonly names: Names,
  ) {}

  static async open(url: string, names: Names, namespace: string): Promise<Observer> {
    const conn = await amqp.connect(url);
    const ch = await conn.createChannel();
    const o = new Observer(conn, ch, names);
    const bind = async (exchange: string, pattern: string, into: Observed[]): Promise<void> => {
      const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
      await ch.bindQueue(queue, exchange, pattern);
      await ch.consume(
        queue,
        (msg) => {
          if (!msg) return;
          let json: unknown;
          try {
            json = JSON.parse(msg.content.toString('utf8'));
          } catch {
            json = undefined;
          }
          const seen = {
            body: msg.content,
            json,
            routingKey: msg.fields.routingKey,
            exchange: msg.fields.exchange,
            properties: msg.properties,
            receivedAt: Date.now(),
          };
          const batch = (json as { message_type?: unknown; results?: unknown } | undefined) ?? {};
          if (into === o.results && batch.message_type === 'step_results' && Array.isArray(batch.results)) {
            // Several results in one message: each is observed (and checked) on its own.
            for (const item of batch.results) into.push({ ...seen, json: item, sharedWith: batch.results.length });
          } else into.push(seen);
          for (const w of o.waiters.splice(0)) w();
        },
        { noAck: true },
      );
    };
    await bind(names.resultsExchange, namespace, o.results);
    await bind(names.deadLetterExchange, '#', o.parked);
    return o;
  }

  /** Results whose body names this step. */
  resultsFor(stepId: string): Observed[] {
    return this.results.filter((r) => (r.json as { step_id?: unknown } | undefined)?.step_id === stepId);
  }

  resultsForTask(taskId: string): Observed[] {
    return this.results.filter((r) => (r.json as { task_id?: unknown } | undefined)?.task_id === taskId);
  }

  /** Resolves with `check()`'s value once it is not undefined; rejects after `timeoutMs`. */
  async waitFor<T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = check();
      if (v !== undefined) return v;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Publishes a raw body to the steps exchange, as the orchestrator routes step messages. */
  publishStep(namespace: string, body: Buffer, messageId: string): void {
    this.channel.publish(this.names.stepsExchange, namespace, body, {
      persistent: true,
      contentType: 'application/json',
      messageId,
      type: 'step',
    });
  }

  /** Ready messages and consumers of a queue. */
  async queueState(queue: string): Promise<{ messageCount: number; consumerCount: number }> {
    const ch = await this.conn.createChannel();
    try {
      const q = await ch.checkQueue(queue);
      return { messageCount: q.messageCount, consumerCount: q.consumerCount };
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    await this.conn.close().catch(() => undefined);
  }
}
