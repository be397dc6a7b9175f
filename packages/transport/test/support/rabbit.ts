// The broker side of the packages' own tests (transport's users: client and worker), on the
// real RabbitMQ: a prefix per file, its topology deleted again afterwards.
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { coreTopology, names, type Names, type Topology } from '@tasker/protocol';
import { Broker, type Consumer, type Delivery, type ManagedChannel } from '../../src/index.ts';

type Channel = Awaited<ReturnType<ManagedChannel['get']>>;
export type ConsumeMessage = Delivery['message'];

export const AMQP_URL = process.env['TASKER_AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';

/** Quiet unless TEST_LOG_LEVEL says otherwise. */
export const testLogger = pino({ level: process.env['TEST_LOG_LEVEL'] ?? 'silent' });

/** A prefix of its own for one test file, so files never see each other's messages. */
export function uniquePrefix(): string {
  return `t_${randomBytes(5).toString('hex')}`;
}

/**
 * One test file's corner of the real broker: a connection, the topologies it declared
 * (deleted again by {@link cleanup}) and the consumers it started.
 */
export class TestRabbit {
  private readonly declared: Topology[] = [];
  private readonly consumers: Consumer[] = [];

  private constructor(
    readonly broker: Broker,
    readonly names: Names,
  ) {}

  static async open(prefix: string, topology: 'core' | 'none' = 'core'): Promise<TestRabbit> {
    const broker = await Broker.connect({ url: AMQP_URL, connectionName: `test ${prefix}`, logger: testLogger });
    const rabbit = new TestRabbit(broker, names(prefix));
    if (topology === 'core') await rabbit.declare(coreTopology(rabbit.names));
    return rabbit;
  }

  async declare(t: Topology): Promise<void> {
    this.declared.push(t);
    await this.broker.declare(t);
  }

  /** Consumes a queue (acking everything) for as long as the file runs. */
  async consume(queue: string, onMessage: (msg: ConsumeMessage) => void | Promise<void>): Promise<void> {
    const consumer = await this.broker.consume(queue, { prefetch: 100 }, async (d) => {
      await onMessage(d.message);
      d.ack();
    });
    this.consumers.push(consumer);
  }

  /** Runs `fn` on a plain channel of its own, closed afterwards. */
  async withChannel<T>(fn: (ch: Channel) => Promise<T>): Promise<T> {
    const mc = await this.broker.channel<Channel>(false, async () => undefined);
    try {
      return await fn(await mc.get());
    } finally {
      await mc.close();
    }
  }

  /** Deletes every queue and exchange this file declared and closes the connection. */
  async cleanup(): Promise<void> {
    for (const c of this.consumers) await c.close();
    const queues = new Set(this.declared.flatMap((t) => t.queues.map((q) => q.name)));
    const exchanges = new Set(this.declared.flatMap((t) => t.exchanges.map((e) => e.name)));
    await this.withChannel(async (ch) => {
      for (const q of queues) await ch.deleteQueue(q);
      for (const e of exchanges) await ch.deleteExchange(e);
    });
    await this.broker.close();
  }
}

/** Collects messages and waits for the ones a test expects. */
export class Inbox<T> {
  readonly items: T[] = [];
  private waiters: Array<{ match: (item: T) => boolean; resolve: (item: T) => void }> = [];

  push(item: T): void {
    this.items.push(item);
    for (const w of [...this.waiters]) {
      if (w.match(item)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(item);
      }
    }
  }

  /** The first item (already here or to come) that matches; rejects after `timeoutMs`. */
  waitFor(match: (item: T) => boolean, timeoutMs = 10_000, what = 'message'): Promise<T> {
    const found = this.items.find(match);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: (item: T) => {
          clearTimeout(timer);
          resolve(item);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`no ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }
}
