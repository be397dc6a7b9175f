/**
 * Issue 6: the orchestrator checks who published each result. RabbitMQ validates the
 * `user_id` property against the publishing connection's user, so with the namespace→user
 * mapping configured a result for customer_success is applied only if customer_success's
 * user (or an orchestrator) published it. The orchestrator itself runs as its own
 * restricted user here, so its permissions are exercised too. Own prefix, users and
 * schema, all removed afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import type { ChannelModel } from 'amqplib';
import { ErrorCode, PROTOCOL_VERSION, parseTemplate, type StepResult } from '@tasker/protocol';
import { Orchestrator } from '@tasker/orchestrator';
import { Broker } from '@tasker/transport';
import { createWorker, type Worker } from '@tasker/worker';
import { AMQP_URL, DATABASE_URL, uniqueSuffix } from '../support/services.ts';
import { dropSchema, dropTopology, eventually, testLogger, taskWhen } from '../support/stack.ts';
import { DeadLetterReader } from '../support/dead-letters.ts';
import { accessFixture, attempt, connectAs, publishConfirmed, type AccessFixture } from '../support/broker-access.ts';

const NAMESPACES = ['customer_success', 'payments'];
const template = (namespace: string, name: string, callable: string) => `
name: ${name}
namespace_name: ${namespace}
version: 1.0.0
steps:
  - { name: only, handler: { callable: ${callable} } }
`;

describe('result origin check', () => {
  let fx: AccessFixture;
  let o: Orchestrator;
  let admin: Broker;
  let dead: DeadLetterReader;
  const schema = `iso_${uniqueSuffix()}`;
  const conns: ChannelModel[] = [];
  const workers: Worker[] = [];
  let rogue: string;

  beforeAll(async () => {
    fx = accessFixture(NAMESPACES);
    await fx.apply();
    // A user allowed to publish to the results exchange with any routing key: what a leaked
    // broad credential or a misconfigured user would look like. It can only sign as itself.
    rogue = await fx.extraUser('rogue', { configure: '^$', write: `^${fx.prefix.replace(/\./g, '\\.')}\\.results$`, read: '^$' });
    o = await Orchestrator.start({
      databaseUrl: DATABASE_URL(),
      amqpUrl: fx.urlOf(fx.config.users.orchestrator),
      dbSchema: schema,
      amqpPrefix: fx.prefix,
      httpEnabled: false,
      outboxSweepMs: 200,
      outboxStaleMs: 1000,
      resultOrigin: { namespaceUser: fx.config.users.namespacePattern, orchestratorUsers: [fx.config.users.orchestrator] },
      logger: testLogger(),
    });
    await o.registerTemplates([template('customer_success', 'refund', 'cs_refund'), template('payments', 'charge', 'pay_charge')].map((y) => parseTemplate(y)));
    // The orchestrator's user may not read the dead letters (people do): read them as the admin.
    admin = await Broker.connect({ url: AMQP_URL(), connectionName: 'isolation test admin', logger: testLogger() });
    dead = await DeadLetterReader.start(admin, o.names.deadLetterQueue);
  });

  afterAll(async () => {
    for (const w of workers) await w.stop().catch(() => undefined);
    for (const c of conns) await c.close().catch(() => undefined);
    await dead?.close();
    await admin?.close();
    await o?.stop().catch(() => undefined);
    await fx?.cleanup();
    if (fx) await dropTopology(AMQP_URL(), fx.prefix, NAMESPACES);
    if (process.env.TEST_KEEP_SCHEMA !== '1') await dropSchema(DATABASE_URL(), schema);
  });

  const connect = async (user: string) => {
    const c = await connectAs(fx.urlOf(user));
    conns.push(c);
    return c;
  };
  const createTask = async (namespace: string, name: string) => {
    const [created] = await o.createTasks([{ namespace, name, context: {} }]);
    if (!created!.ok) throw created!.error;
    const task = (await o.getTask(created!.task.id, { transitions: true }))!;
    return { task, step: task.steps[0]! };
  };
  const forged = (t: { id: string; namespace: string }, step: { id: string; name: string }, marker: string, extra: Partial<StepResult> = {}): Buffer =>
    Buffer.from(
      JSON.stringify({
        protocol_version: PROTOCOL_VERSION,
        message_type: 'step_result',
        task_id: t.id,
        step_id: step.id,
        namespace: t.namespace,
        step_name: step.name,
        attempt: 1,
        started_at: new Date().toISOString(),
        finished_at: new Date().toISOString(),
        worker_id: 'forger',
        status: 'success',
        result: { refunded: 1_000_000, marker },
        ...extra,
      }),
    );
  const transitionCount = async (taskId: string) => {
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM transitions WHERE task_id = ${taskId}`.execute(o.db);
    return rows[0]!.n;
  };
  const parked = (marker: string) => eventually(async () => dead.find(marker), 10_000, `the message ${marker} to be parked`);

  it("a result forged under another namespace's routing key, by a user allowed to publish there, is parked as FORBIDDEN_ORIGIN and the step does not change", async () => {
    const { task, step } = await createTask('customer_success', 'refund');
    expect(step.state).toBe('enqueued');
    const transitionsBefore = await transitionCount(task.id);

    const rogueConn = await connect(rogue);
    // Signed as itself (the broker refuses any other user_id), and without user_id at all.
    expect(await attempt(rogueConn, (ch) => publishConfirmed(ch, o.names.resultsExchange, 'customer_success', forged(task, step, 'forged-signed'), { userId: rogue }))).toBeNull();
    expect(await attempt(rogueConn, (ch) => publishConfirmed(ch, o.names.resultsExchange, 'customer_success', forged(task, step, 'forged-unsigned')))).toBeNull();
    const signed = await parked('forged-signed');
    expect(signed.code).toBe(ErrorCode.FORBIDDEN_ORIGIN);
    expect(signed.reason).toContain(`published by broker user '${rogue}'`);
    expect(signed.reason).toContain(`only '${fx.userOf('customer_success')}'`);
    const unsigned = await parked('forged-unsigned');
    expect(unsigned.code).toBe(ErrorCode.FORBIDDEN_ORIGIN);
    expect(unsigned.reason).toContain('set no user_id');

    // The payments worker's own user cannot even publish under customer_success's routing
    // key, and under its own key the result is parked (routing key ≠ namespace).
    const paymentsConn = await connect(fx.userOf('payments'));
    const refused = await attempt(paymentsConn, (ch) =>
      publishConfirmed(ch, o.names.resultsExchange, 'customer_success', forged(task, step, 'forged-by-payments'), { userId: fx.userOf('payments') }),
    );
    expect(refused).toMatchObject({ code: 403 });
    await publishConfirmed(await paymentsConn.createConfirmChannel(), o.names.resultsExchange, 'payments', forged(task, step, 'forged-own-key'), { userId: fx.userOf('payments') });
    expect((await parked('forged-own-key')).code).toBe(ErrorCode.INVALID_MESSAGE);

    const after = (await o.getTask(task.id))!;
    expect(after.state).toBe('in_progress');
    expect(after.steps[0]).toMatchObject({ state: 'enqueued', attempt: 1, result: null });
    expect(await transitionCount(task.id)).toBe(transitionsBefore);
  });

  it("a child-task outcome published by a namespace's worker user is refused: only an orchestrator sends those", async () => {
    const { task, step } = await createTask('payments', 'charge');
    const paymentsConn = await connect(fx.userOf('payments'));
    await publishConfirmed(await paymentsConn.createConfirmChannel(), o.names.resultsExchange, 'payments', forged(task, step, 'forged-child', { child_outcome: true }), {
      userId: fx.userOf('payments'),
    });
    const p = await parked('forged-child');
    expect(p.code).toBe(ErrorCode.FORBIDDEN_ORIGIN);
    expect(p.reason).toContain('child-task outcome');
    expect((await o.getTask(task.id))!.steps[0]!.state).toBe('enqueued');
  });

  it('a task request whose reply_to names a queue is parked and nothing is sent to that queue', async () => {
    const queue = o.names.stepQueue('payments');
    const depth = await admin.queueDepth(queue);
    const serviceConn = await connect(fx.config.users.service);
    const request = {
      protocol_version: PROTOCOL_VERSION,
      message_type: 'task_request',
      namespace: 'payments',
      name: 'charge',
      context: {},
      idempotency_key: 'reply-to-a-named-queue',
    };
    await publishConfirmed(await serviceConn.createConfirmChannel(), o.names.taskRequestsExchange, 'payments', Buffer.from(JSON.stringify(request)), { replyTo: queue });
    const p = await parked('reply-to-a-named-queue');
    expect(p.code).toBe(ErrorCode.FORBIDDEN_ORIGIN);
    expect(p.reason).toContain('not a direct reply-to address');
    expect(await admin.queueDepth(queue)).toBe(depth);
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM tasks WHERE idempotency_key = 'reply-to-a-named-queue'`.execute(o.db);
    expect(rows[0]!.n).toBe(0);
  });

  it("results of each namespace's own worker (its own user, user_id set by the worker) are applied", async () => {
    for (const [namespace, callable] of [['customer_success', 'cs_refund'], ['payments', 'pay_charge']] as const) {
      const w = createWorker({
        namespace,
        handlers: { [callable]: () => ({ done: namespace }) },
        amqpUrl: fx.urlOf(fx.userOf(namespace)),
        prefix: fx.prefix,
        logger: testLogger(),
      });
      workers.push(w);
      await w.start();
    }
    // The tasks the earlier tests left enqueued complete now, with the real results.
    const { rows } = await sql<{ id: string }>`SELECT id FROM tasks`.execute(o.db);
    expect(rows.length).toBeGreaterThanOrEqual(2);
    for (const { id } of rows) {
      const t = await taskWhen(o, id, 'complete');
      expect(t.steps[0]!.result).toEqual({ done: t.namespace });
    }
  });
});
