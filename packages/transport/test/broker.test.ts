import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import amqp from 'amqplib';
import pino from 'pino';
import { Broker, isQueueStarting, retryWhileQueueStarts, type Delivery } from '../src/index.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const url = process.env.TASKER_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const sfx = Math.random().toString(36).slice(2, 10);
const queue = `ttransport${sfx}.work`;
const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

function hasRabbitmqctl(): boolean {
  try {
    execFileSync('rabbitmqctl', ['-q', 'status'], { stdio: 'ignore', timeout: 15000 });
    return true;
  } catch {
    return false;
  }
}

async function until(check: () => boolean, timeoutMs = 15000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('Broker', () => {
  let admin: amqp.ChannelModel;
  let ch: amqp.Channel;
  beforeAll(async () => {
    admin = await amqp.connect(url);
    ch = await admin.createChannel();
  });
  afterAll(async () => {
    await ch.deleteQueue(queue).catch(() => undefined);
    await admin.close();
  });

  it('consuming a queue that does not exist rejects, and leaves nothing retrying', async () => {
    const b = await Broker.connect({ url, connectionName: `t-${sfx}-missing`, logger });
    await expect(b.consume(`${queue}.missing`, { prefetch: 1 }, () => undefined)).rejects.toThrow(/NOT_FOUND|404/);
    // The publisher still works on the same connection.
    await ch.assertQueue(queue, { durable: true });
    await b.publish('', queue, Buffer.from('still fine'));
    await b.close();
    const got = await ch.get(queue, { noAck: true });
    expect(got && got.content.toString()).toBe('still fine');
  });

  describe('declaring a topology while a queue is being created elsewhere', () => {
    // RabbitMQ's own answer to a queue.declare that meets the queue half made (seen when two
    // orchestrators start at once): the text amqplib gives it, as the bench's scale section logged it.
    const starting = Object.assign(
      new Error(`Operation failed: QueueDeclare; 404 (NOT-FOUND) with message "NOT_FOUND - home node 'rabbit@localhost' of durable queue 't.delay.11' in vhost '/' is down or inaccessible"`),
      { code: 404 },
    );

    it('is told apart from other refusals by the code and text amqplib gives it', async () => {
      expect(isQueueStarting(starting)).toBe(true);
      // A real 404 of another kind, from this broker: no such queue.
      const probe = await admin.createChannel();
      probe.on('error', () => undefined);
      const missing = await probe.checkQueue(`${queue}.never-declared`).then(() => null, (e: unknown) => e);
      expect((missing as { code?: number }).code).toBe(404);
      expect(isQueueStarting(missing)).toBe(false);
      expect(isQueueStarting(Object.assign(new Error('PRECONDITION_FAILED - inequivalent arg'), { code: 406 }))).toBe(false);
      expect(isQueueStarting(null)).toBe(false);
    });

    it('is declared again after a pause, and other errors, or the last try, go to the caller at once', async () => {
      const retries: Array<[number, number]> = [];
      let calls = 0;
      await retryWhileQueueStarts(async () => {
        if (++calls < 3) throw starting;
      }, (_e, attempt, delayMs) => retries.push([attempt, delayMs]), 6, 5);
      expect(calls).toBe(3);
      expect(retries).toEqual([[1, 5], [2, 10]]);

      calls = 0;
      const other = Object.assign(new Error('NOT_FOUND - no exchange'), { code: 404 });
      await expect(retryWhileQueueStarts(async () => { calls++; throw other; }, () => undefined, 6, 5)).rejects.toBe(other);
      expect(calls).toBe(1);

      calls = 0;
      await expect(retryWhileQueueStarts(async () => { calls++; throw starting; }, () => undefined, 3, 1)).rejects.toBe(starting);
      expect(calls).toBe(3);
    });

    it('a topology that the broker refuses for another reason fails declare() at once', async () => {
      const lines: string[] = [];
      const seen = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
      const b = await Broker.connect({ url, connectionName: `t-${sfx}-refused`, logger: seen });
      await expect(
        b.declare({ exchanges: [], queues: [{ name: `${queue}.bound`, arguments: {} }], bindings: [{ kind: 'queue', source: `${queue}.no-such-exchange`, destination: `${queue}.bound`, pattern: '#' }] }),
      ).rejects.toThrow(/NOT_FOUND|404/);
      // Not retried: a retry is logged before its pause.
      expect(lines.filter((l) => l.includes('declaring the topology again'))).toEqual([]);
      await b.close();
      await ch.deleteQueue(`${queue}.bound`).catch(() => undefined);
    });
  });

  it('a consumer whose queue is deleted and declared again resumes by itself', async () => {
    await ch.assertQueue(queue, { durable: true });
    const b = await Broker.connect({ url, connectionName: `t-${sfx}-deleted`, logger });
    const seen: string[] = [];
    const c = await b.consume(queue, { prefetch: 5 }, (d) => {
      seen.push(d.body.toString());
      d.ack();
    });
    ch.sendToQueue(queue, Buffer.from('one'));
    await until(() => seen.length === 1);
    await ch.deleteQueue(queue);
    await new Promise((r) => setTimeout(r, 300));
    await ch.assertQueue(queue, { durable: true });
    ch.sendToQueue(queue, Buffer.from('two'));
    await until(() => seen.length === 2, 20000);
    expect(seen).toEqual(['one', 'two']);
    await c.close();
    await b.close();
  });

  it.skipIf(!hasRabbitmqctl())('after the broker drops the connection, it reconnects and consumers and publishing resume', async () => {
    await ch.assertQueue(queue, { durable: true });
    const name = `t-${sfx}-dropped`;
    const b = await Broker.connect({ url, connectionName: name, logger });
    const seen: string[] = [];
    await b.consume(queue, { prefetch: 5 }, (d) => {
      seen.push(d.body.toString());
      d.ack();
    });
    const listed = execFileSync('rabbitmqctl', ['-q', 'list_connections', 'pid', 'client_properties'], { encoding: 'utf8' });
    const line = listed.split('\n').find((l) => l.includes(name));
    expect(line).toBeDefined();
    const pid = line!.split('\t')[0]!;
    execFileSync('rabbitmqctl', ['-q', 'close_connection', pid, 'test drops the connection']);
    await until(() => !b.connected, 5000);
    await until(() => b.connected, 15000);
    await b.publish('', queue, Buffer.from('after reconnect'));
    await until(() => seen.includes('after reconnect'), 15000);
    await b.close();
  });

  it('setPrefetch narrows and widens how many unacked messages the consumer is sent', async () => {
    const q = `${queue}.prefetch`;
    await ch.assertQueue(q, { durable: true });
    const b = await Broker.connect({ url, connectionName: `t-${sfx}-prefetch`, logger });
    const held: Delivery[] = [];
    const c = await b.consume(q, { prefetch: 8 }, (d) => void held.push(d));
    const settledAt = async (n: number) => {
      await until(() => held.length >= n);
      await sleep(250); // nothing more arrives
      expect(held).toHaveLength(n);
    };
    await c.setPrefetch(2);
    for (let i = 0; i < 12; i++) ch.sendToQueue(q, Buffer.from(`m${i}`));
    await settledAt(2);
    for (const d of held.splice(0)) d.ack();
    await settledAt(2);
    // Widened with two held: the new subscription is sent five; the old one, cancelled, no more.
    await c.setPrefetch(5);
    await settledAt(7);
    for (const d of held.splice(0, 2)) d.ack();
    await settledAt(5);
    expect(held.map((d) => d.body.toString())).toEqual(['m4', 'm5', 'm6', 'm7', 'm8']);
    await expect(c.setPrefetch(0)).rejects.toThrow(/from 1 to 65535/);
    for (const d of held.splice(0)) d.ack();
    await settledAt(3);
    for (const d of held.splice(0)) d.ack();
    await c.close();
    await b.close();
    expect((await ch.checkQueue(q)).messageCount).toBe(0);
    await ch.deleteQueue(q);
  });

  it.skipIf(!hasRabbitmqctl())('a prefetch set with setPrefetch is the one the consumer has after a reconnect', async () => {
    const q = `${queue}.prefetch-reconnect`;
    await ch.assertQueue(q, { durable: true });
    for (let i = 0; i < 10; i++) ch.sendToQueue(q, Buffer.from(`m${i}`));
    const name = `t-${sfx}-prefetch-dropped`;
    const b = await Broker.connect({ url, connectionName: name, logger });
    const held: Delivery[] = [];
    const c = await b.consume(q, { prefetch: 6 }, (d) => void held.push(d));
    await until(() => held.length === 6);
    await c.setPrefetch(3); // the new subscription is sent 3 more; the 6 stay held
    await until(() => held.length === 9);
    const listed = execFileSync('rabbitmqctl', ['-q', 'list_connections', 'pid', 'client_properties'], { encoding: 'utf8' });
    const pid = listed.split('\n').find((l) => l.includes(name))!.split('\t')[0]!;
    execFileSync('rabbitmqctl', ['-q', 'close_connection', pid, 'test drops the connection']);
    await until(() => !b.connected, 5000);
    held.length = 0; // the broker takes back what was unacked
    await until(() => b.connected, 15000);
    await until(() => held.length >= 3);
    await sleep(250);
    expect(held).toHaveLength(3);
    await c.close();
    await b.close();
    await ch.deleteQueue(q);
  });

  it('a publish waiting for a channel rejects when the broker is closed', async () => {
    const b = await Broker.connect({ url, connectionName: `t-${sfx}-closing`, logger });
    await b.close();
    await expect(b.publish('', queue, Buffer.from('x'))).rejects.toThrow(/closed/);
  });

  it('frames queued in one turn go to the socket in one write', async () => {
    await ch.assertQueue(queue, { durable: true });
    const b = await Broker.connect({ url, connectionName: `t-${sfx}-cork`, logger });
    await b.publish('', queue, Buffer.from('warm-up')); // the publishing channel is open
    const sock = (b.model as unknown as { connection: { stream: { write: (...a: unknown[]) => boolean } } }).connection.stream;
    const writes: number[] = [];
    const write = sock.write.bind(sock);
    let corked = 0;
    const original = (sock as unknown as { uncork: () => void }).uncork.bind(sock);
    (sock as unknown as { uncork: () => void }).uncork = () => {
      corked += 1;
      original();
    };
    sock.write = (...a: unknown[]) => {
      writes.push(corked);
      return write(...a);
    };
    await Promise.all(Array.from({ length: 20 }, (_, i) => b.publish('', queue, Buffer.from(`m${i}`))));
    // The 20 messages' frames were written to a corked socket and left it in a handful of
    // writes (one per uncork), not in 20.
    expect(writes.length).toBeGreaterThanOrEqual(20);
    expect(corked).toBeGreaterThan(0);
    expect(corked).toBeLessThan(5);
    await b.close();
    await ch.purgeQueue(queue);
  });

  describe('acks', () => {
    const q = `${queue}.acks`;
    /** What is left on the queue once the consumer is closed (its unacked messages come back). */
    const leftOver = async () => {
      const out: string[] = [];
      for (;;) {
        const m = await ch.get(q, { noAck: true });
        if (!m) return out.sort();
        out.push(m.content.toString());
      }
    };
    const fill = async (n: number) => {
      await ch.assertQueue(q, { durable: true });
      await ch.purgeQueue(q);
      for (let i = 1; i <= n; i++) ch.sendToQueue(q, Buffer.from(`m${i}`));
    };
    afterAll(async () => {
      await ch.deleteQueue(q).catch(() => undefined);
    });

    it('messages acked out of order, twice, or around a nack are each settled once; only the unsettled come back', async () => {
      await fill(6);
      const b = await Broker.connect({ url, connectionName: `t-${sfx}-acks`, logger });
      const got = new Map<string, { ack(): void; nack(requeue: boolean): void }>();
      const c = await b.consume(q, { prefetch: 10 }, (d) => void got.set(d.body.toString(), d));
      await until(() => got.size === 6);
      // m1 stays in work; m2, m3 and m6 are acked (m3 twice), m4 is dropped, m5 stays in work.
      got.get('m3')!.ack();
      got.get('m2')!.ack();
      got.get('m4')!.nack(false);
      got.get('m6')!.ack();
      got.get('m3')!.ack();
      await new Promise((r) => setTimeout(r, 100));
      // Had anything gone out twice, or a nack been the anchor of a `multiple` ack, the broker
      // would have closed the channel (PRECONDITION_FAILED) and m1 would come back too; had an
      // ack covered m5, it would not come back.
      got.get('m1')!.ack();
      await new Promise((r) => setTimeout(r, 100));
      await c.close();
      await b.close();
      expect(await leftOver()).toEqual(['m5']);
    });

    it('an ack behind a message still in work goes out at once: the slow one does not hold the prefetch window', async () => {
      await fill(3);
      const b = await Broker.connect({ url, connectionName: `t-${sfx}-window`, logger });
      const got: string[] = [];
      const c = await b.consume(q, { prefetch: 2 }, (d) => {
        got.push(d.body.toString());
        // m1 is never acked (a long handler); m2 is. With prefetch 2, m3 arrives only if m2's ack was sent.
        if (d.body.toString() !== 'm1') d.ack();
      });
      await until(() => got.length === 3, 5000);
      expect(got).toEqual(['m1', 'm2', 'm3']);
      await c.close();
      await b.close();
      expect(await leftOver()).toEqual(['m1']);
    });
  });
});
