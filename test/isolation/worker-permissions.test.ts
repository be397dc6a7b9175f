/**
 * Issue 6, against the real broker: what a namespace's worker user (and a service's user)
 * may and may not do once `applyBrokerAccess` has provisioned them. Each check that a
 * refusal happens is paired with the allowed operation next to it, so a refusal can never
 * pass because of a typo in a name. Its own prefix and users, all removed afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChannelModel, ConfirmChannel, GetMessage } from 'amqplib';
import { names, type Names } from '@tasker/protocol';
import { AMQP_URL } from '../support/services.ts';
import { dropTopology } from '../support/stack.ts';
import { accessFixture, attempt, connectAs, publishConfirmed, type AccessFixture } from '../support/broker-access.ts';

const NAMESPACES = ['customer_success', 'payments'];
const body = Buffer.from(JSON.stringify({ hello: 'world' }));

describe('a namespace worker user (payments)', () => {
  let fx: AccessFixture;
  let n: Names;
  let payments: ChannelModel;
  let service: ChannelModel;
  let admin: ChannelModel;

  beforeAll(async () => {
    fx = accessFixture(NAMESPACES);
    n = names(fx.prefix);
    await fx.apply();
    payments = await connectAs(fx.urlOf(fx.userOf('payments')));
    service = await connectAs(fx.urlOf(fx.config.users.service));
    admin = await connectAs(AMQP_URL());
  });
  afterAll(async () => {
    for (const c of [payments, service, admin]) await c?.close().catch(() => undefined);
    await fx?.cleanup();
    if (fx) await dropTopology(AMQP_URL(), fx.prefix, NAMESPACES);
  });

  it('consumes its own step queue, and consuming the customer_success queue fails with ACCESS_REFUSED', async () => {
    expect(await attempt(payments, (ch) => ch.consume(n.stepQueue('payments'), () => undefined))).toBeNull();
    const refused = await attempt(payments, (ch) => ch.consume(n.stepQueue('customer_success'), () => undefined));
    expect(refused).toMatchObject({ code: 403 });
    expect(refused!.message).toContain('ACCESS_REFUSED');
    expect(refused!.message).toContain(n.stepQueue('customer_success'));
    // basic.get is a read too.
    expect(await attempt(payments, (ch) => ch.get(n.stepQueue('customer_success')))).toMatchObject({ code: 403 });
  });

  it('publishes results with its own namespace as routing key, and a customer_success routing key fails', async () => {
    expect(await attempt(payments, (ch) => publishConfirmed(ch, n.resultsExchange, 'payments', body))).toBeNull();
    const refused = await attempt(payments, (ch) => publishConfirmed(ch, n.resultsExchange, 'customer_success', body));
    expect(refused).toMatchObject({ code: 403 });
    expect(refused!.message).toMatch(/ACCESS_REFUSED - access to topic 'customer_success' in exchange/);
    // Nor a wildcard-looking key, nor one that merely starts with its namespace.
    expect(await attempt(payments, (ch) => publishConfirmed(ch, n.resultsExchange, 'payments.x', body))).toMatchObject({ code: 403 });
  });

  it('cannot declare a queue or an exchange, nor re-declare, bind, unbind or delete its own queue', async () => {
    const denied = [
      (ch: ConfirmChannel) => ch.assertQueue(`${fx.prefix}.mine`),
      (ch: ConfirmChannel) => ch.assertQueue(n.stepQueue('payments'), { durable: true }),
      (ch: ConfirmChannel) => ch.assertExchange(`${fx.prefix}.mine`, 'topic'),
      (ch: ConfirmChannel) => ch.bindQueue(n.stepQueue('payments'), n.stepsExchange, 'customer_success'),
      (ch: ConfirmChannel) => ch.unbindQueue(n.stepQueue('payments'), n.stepsExchange, 'payments'),
      (ch: ConfirmChannel) => ch.deleteQueue(n.stepQueue('payments')),
      (ch: ConfirmChannel) => ch.deleteExchange(n.resultsExchange),
      (ch: ConfirmChannel) => ch.unbindQueue(n.resultsQueue, n.resultsExchange, '#'),
    ];
    for (const op of denied) {
      const refused = await attempt(payments, op);
      expect(refused, op.toString()).toMatchObject({ code: 403 });
      expect(refused!.message).toContain('ACCESS_REFUSED');
    }
  });

  it('cannot publish to the default exchange (which would reach any queue by name), nor to the steps exchange', async () => {
    const refused = await attempt(payments, (ch) => publishConfirmed(ch, '', n.stepQueue('customer_success'), body));
    expect(refused).toMatchObject({ code: 403 });
    expect(refused!.message).toContain("access to exchange 'amq.default'");
    expect(await attempt(payments, (ch) => publishConfirmed(ch, n.stepsExchange, 'customer_success', body))).toMatchObject({ code: 403 });
  });

  it('cannot purge another namespace\'s queue; purging its own cannot be refused (purge needs only read, as consume)', async () => {
    expect(await attempt(payments, (ch) => ch.purgeQueue(n.stepQueue('customer_success')))).toMatchObject({ code: 403 });
    // RabbitMQ's permission table: queue.purge needs read on the queue, like basic.consume.
    // Documented in infra/README.md; the watchdog re-dispatches purged steps.
    expect(await attempt(payments, (ch) => ch.purgeQueue(n.stepQueue('payments')))).toBeNull();
  });

  it('still has what a worker needs: a passive check of its queue, its own server-named control queue, direct reply-to', async () => {
    // The worker waits for its queue with a passive declare, which needs no permission.
    expect(await attempt(payments, (ch) => ch.checkQueue(n.stepQueue('payments')))).toBeNull();
    // Cancellations: an exclusive server-named queue bound to the control exchange.
    let received = '';
    const controlCh = await payments.createChannel();
    const q = await controlCh.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
    expect(q.queue).toMatch(/^amq\.gen-/);
    await controlCh.bindQueue(q.queue, n.controlExchange, '');
    await controlCh.consume(q.queue, (m) => (received = m?.content.toString() ?? ''), { noAck: true });
    const adminCh = await admin.createConfirmChannel();
    await publishConfirmed(adminCh, n.controlExchange, '', Buffer.from('cancel!'));
    await expect.poll(() => received).toBe('cancel!');
    // Another connection's exclusive queue is locked, whatever the permissions.
    const other = await adminCh.assertQueue('', { exclusive: true });
    await adminCh.bindQueue(other.queue, n.controlExchange, '');
    for (const op of [
      (ch: ConfirmChannel) => ch.consume(other.queue, () => undefined),
      (ch: ConfirmChannel) => ch.deleteQueue(other.queue),
      (ch: ConfirmChannel) => ch.unbindQueue(other.queue, n.controlExchange, ''),
    ]) {
      expect(await attempt(payments, op)).toMatchObject({ code: 405 });
    }
    // A server-named queue cannot be bound to any exchange but the control exchange.
    const toResults = await attempt(payments, async (ch) => {
      const mine = await ch.assertQueue('', { exclusive: true });
      await ch.bindQueue(mine.queue, n.resultsExchange, '#');
    });
    expect(toResults).toMatchObject({ code: 403 });
    // Task requests with direct reply-to (handlers create tasks in other namespaces): the
    // reply comes back through the default exchange, published by someone allowed to.
    let reply = '';
    const reqCh = await payments.createConfirmChannel();
    await reqCh.consume('amq.rabbitmq.reply-to', (m) => (reply = m?.content.toString() ?? ''), { noAck: true });
    await publishConfirmed(reqCh, n.taskRequestsExchange, 'customer_success', body, { replyTo: 'amq.rabbitmq.reply-to', correlationId: 'c1' });
    let request: GetMessage | false = false;
    await expect.poll(async () => (request = await adminCh.get(n.taskRequestsQueue, { noAck: true }))).toBeTruthy();
    await publishConfirmed(adminCh, '', (request as unknown as GetMessage).properties.replyTo as string, Buffer.from('task created'));
    await expect.poll(() => reply).toBe('task created');
    await controlCh.close();
    await reqCh.close();
    await adminCh.close();
  });

  it('cannot set another user\'s user_id on what it publishes (the broker validates it)', async () => {
    const refused = await attempt(payments, (ch) =>
      publishConfirmed(ch, n.resultsExchange, 'payments', body, { userId: fx.userOf('customer_success') }),
    );
    expect(refused).toMatchObject({ code: 406 });
    expect(refused!.message).toContain(`user_id property set to '${fx.userOf('customer_success')}'`);
    expect(await attempt(payments, (ch) => publishConfirmed(ch, n.resultsExchange, 'payments', body, { userId: fx.userOf('payments') }))).toBeNull();
  });

  it('a service user only publishes task requests and reads its replies on direct reply-to', async () => {
    const ch = await service.createConfirmChannel();
    await ch.consume('amq.rabbitmq.reply-to', () => undefined, { noAck: true });
    await publishConfirmed(ch, n.taskRequestsExchange, 'payments', body, { replyTo: 'amq.rabbitmq.reply-to' });
    await ch.close();
    for (const op of [
      (c: ConfirmChannel) => c.consume(n.stepQueue('payments'), () => undefined),
      (c: ConfirmChannel) => c.consume(n.taskRequestsQueue, () => undefined),
      (c: ConfirmChannel) => publishConfirmed(c, n.resultsExchange, 'payments', body),
      (c: ConfirmChannel) => publishConfirmed(c, '', n.stepQueue('payments'), body),
      (c: ConfirmChannel) => c.assertQueue('', { exclusive: true }),
    ]) {
      expect(await attempt(service, op), op.toString()).toMatchObject({ code: 403 });
    }
  });
});
