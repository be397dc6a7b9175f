import { setTimeout as sleep } from 'node:timers/promises';
import type { ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ErrorCode,
  TASK_REPLIES_SHAPE,
  TASK_REQUESTS_SHAPE,
  TaskRequest,
  TaskerError,
  decodeOneOrMany,
  encodeBatch,
  type TaskReply,
  type TaskSummary,
} from '@tasker/protocol';
import { AmqpTaskRequester } from '../src/index.ts';
import { AMQP_URL, Inbox, TestRabbit, testLogger, uniquePrefix } from '../../transport/test/support/rabbit.ts';

/**
 * The orchestrator is played by a fake responder on the task-requests queue. It answers by
 * the template name: `slow` after `context.delay_ms`, `refused` with ok:false, `ignored`
 * never; anything else at once with a new task. The requests of a `task_requests` message
 * are answered one by one, each reply with its request_id, except `together` (one
 * `task_replies` message for the whole message) and `envelope_refused` (one refusal without
 * request_id, as the orchestrator answers a message it parks whole).
 */
const prefix = uniquePrefix();
let rabbit: TestRabbit;
let requester: AmqpTaskRequester;
const requests = new Inbox<{ request: TaskRequest; msg: ConsumeMessage; of: number }>();
/** Every message the responder received. */
const messages: ConsumeMessage[] = [];

function summaryFor(req: TaskRequest): TaskSummary {
  return {
    id: `task_${req.idempotency_key ?? 'none'}`,
    namespace: req.namespace,
    name: req.name,
    version: req.version ?? '1.0.0',
    state: 'in_progress',
    correlation_id: req.correlation_id ?? 'generated',
    idempotency_key: req.idempotency_key ?? null,
    parent_task_id: req.parent?.task_id ?? null,
    parent_step_id: req.parent?.step_id ?? null,
    created_at: new Date().toISOString(),
  };
}

async function respond(req: TaskRequest): Promise<TaskReply | null> {
  switch (req.name) {
    case 'ignored':
      return null;
    case 'refused':
      return {
        protocol_version: 1,
        message_type: 'task_reply',
        ok: false,
        error: {
          code: ErrorCode.INVALID_CONTEXT,
          message: 'context does not match the input schema',
          issues: [
            { path: 'payment_id', message: 'is required' },
            { path: 'refund_amount', message: 'must be a number' },
          ],
        },
      };
    case 'slow':
      await sleep(Number(req.context['delay_ms'] ?? 0));
      break;
  }
  return {
    protocol_version: 1,
    message_type: 'task_reply',
    ok: true,
    created: req.context['existing'] !== true,
    task: summaryFor(req),
  };
}

function sendReply(msg: ConsumeMessage, body: string): Promise<void> {
  return rabbit.broker.publish('', msg.properties.replyTo as string, Buffer.from(body), {
    correlationId: msg.properties.correlationId as string,
    persistent: false,
  });
}

beforeAll(async () => {
  rabbit = await TestRabbit.open(prefix);
  await rabbit.consume(rabbit.names.taskRequestsQueue, async (msg) => {
    messages.push(msg);
    const decoded = decodeOneOrMany(TaskRequest, TASK_REQUESTS_SHAPE, msg.content, 'task request');
    if (!decoded.ok) throw decoded.error;
    const parts = decoded.value.map((p) => {
      if (!p.decoded.ok) throw p.decoded.error;
      return p.decoded.value;
    });
    for (const request of parts) requests.push({ request, msg, of: parts.length });
    if (!msg.properties.replyTo) return;
    if (parts[0]!.name === 'envelope_refused') {
      const refusal: TaskReply = { protocol_version: 1, message_type: 'task_reply', ok: false, error: { code: ErrorCode.INVALID_MESSAGE, message: 'the envelope is broken' } };
      return sendReply(msg, JSON.stringify(refusal));
    }
    const answer = async (r: TaskRequest) => {
      const reply = await respond(r);
      return reply && { ...reply, ...(r.request_id !== undefined ? { request_id: r.request_id } : {}) };
    };
    if (parts[0]!.name === 'together') {
      // `context.broken`: its reply lacks the task (it fails the reply schema), the others are fine.
      const replies = await Promise.all(
        parts.map(async (r) => (r.context['broken'] ? { protocol_version: 1, message_type: 'task_reply', ok: true, created: true, request_id: r.request_id } : answer(r))),
      );
      return sendReply(msg, encodeBatch(TASK_REPLIES_SHAPE, replies.map((r) => JSON.stringify(r))));
    }
    await Promise.all(
      parts.map(async (r) => {
        const reply = await answer(r);
        if (reply) await sendReply(msg, JSON.stringify(reply));
      }),
    );
  });
  requester = await AmqpTaskRequester.connect({ url: AMQP_URL, logger: testLogger, prefix });
});

afterAll(async () => {
  await requester?.close();
  await rabbit?.cleanup();
});

describe('AmqpTaskRequester', () => {
  it('publishes a snake_case TaskRequest routed by namespace, with direct reply-to and a correlation id', async () => {
    const { created, task } = await requester.createTask({
      namespace: 'payments',
      name: 'process_refund',
      version: '1.0.0',
      context: { payment_id: 'pay_1', refund_amount: 49.99 },
      idempotencyKey: 'wire-shape-1',
      correlationId: 'corr-1',
      parent: { taskId: 'parent-task', stepId: 'parent-step' },
      requestedBy: 'test-suite',
    });
    expect(created).toBe(true);
    expect(task.id).toBe('task_wire-shape-1');

    const { request, msg } = await requests.waitFor((r) => r.request.idempotency_key === 'wire-shape-1');
    expect(JSON.parse(msg.content.toString())).toEqual({
      protocol_version: 1,
      message_type: 'task_request',
      namespace: 'payments',
      name: 'process_refund',
      version: '1.0.0',
      context: { payment_id: 'pay_1', refund_amount: 49.99 },
      idempotency_key: 'wire-shape-1',
      correlation_id: 'corr-1',
      parent: { task_id: 'parent-task', step_id: 'parent-step' },
      requested_by: 'test-suite',
    });
    expect(request.namespace).toBe('payments');
    expect(msg.fields.exchange).toBe(rabbit.names.taskRequestsExchange);
    expect(msg.fields.routingKey).toBe('payments');
    // RabbitMQ rewrites the pseudo-queue name into a per-channel address.
    expect(msg.properties.replyTo).toMatch(/^amq\.rabbitmq\.reply-to\./);
    expect(msg.properties.correlationId).toEqual(expect.any(String));
    expect(msg.properties.contentType).toBe('application/json');
  });

  it('sends the requests made in one turn for one namespace as one task_requests message, each with its own request_id', async () => {
    const before = messages.length;
    const results = await Promise.all(
      [0, 1, 2, 3].map((i) =>
        requester.createTask({ namespace: i < 3 ? 'payments' : 'shipping', name: 'process_refund', context: { i }, idempotencyKey: `turn-${i}` }),
      ),
    );
    expect(results.map((r) => r.task.id)).toEqual(['task_turn-0', 'task_turn-1', 'task_turn-2', 'task_turn-3']);
    const sent = messages.slice(before);
    // One message per namespace: the routing key is what a broker user's topic permission checks.
    expect(sent.map((m) => [m.fields.routingKey, m.properties.type]).sort()).toEqual([
      ['payments', 'task_requests'],
      ['shipping', 'task_request'],
    ]);
    const batch = JSON.parse(sent.find((m) => m.fields.routingKey === 'payments')!.content.toString());
    expect(batch).toMatchObject({ protocol_version: 1, message_type: 'task_requests' });
    expect(batch.requests.map((r: TaskRequest) => r.idempotency_key)).toEqual(['turn-0', 'turn-1', 'turn-2']);
    const ids = batch.requests.map((r: TaskRequest) => r.request_id);
    expect(new Set(ids).size).toBe(3);
    for (const r of batch.requests) expect(r).toMatchObject({ message_type: 'task_request', namespace: 'payments', request_id: expect.any(String) });
    // A request alone goes as before: no request_id, its correlation id is its own.
    const alone = JSON.parse(sent.find((m) => m.fields.routingKey === 'shipping')!.content.toString());
    expect(alone.request_id).toBeUndefined();
  });

  it('settles each request from a task_replies message by its request_id', async () => {
    const results = await Promise.all(
      [0, 1, 2].map((i) => requester.createTask({ namespace: 'payments', name: 'together', context: { existing: i === 1 }, idempotencyKey: `together-${i}` })),
    );
    expect(results.map((r) => [r.task.id, r.created])).toEqual([
      ['task_together-0', true],
      ['task_together-1', false],
      ['task_together-2', true],
    ]);
  });

  it('a reply of a task_replies message that breaks the schema fails its own request only, named by its request_id', async () => {
    const [bad, good] = await Promise.all(
      [true, false].map((broken, i) =>
        requester.createTask({ namespace: 'payments', name: 'together', context: { broken }, idempotencyKey: `broken-${i}` }).catch((e: unknown) => e),
      ),
    );
    expect(bad).toMatchObject({ code: ErrorCode.INVALID_MESSAGE, message: expect.stringMatching(/task reply 1 of 2 in a task_replies message does not match its schema: task/) });
    expect(good).toMatchObject({ created: true, task: { id: 'task_broken-1' } });
  });

  it('fails every request of a task_requests message refused whole (a reply without request_id)', async () => {
    const errors = await Promise.all(
      [0, 1].map((i) => requester.createTask({ namespace: 'payments', name: 'envelope_refused', context: { i } }).catch((e: unknown) => e)),
    );
    for (const e of errors) expect(e).toMatchObject({ code: ErrorCode.INVALID_MESSAGE, message: 'the envelope is broken' });
  });

  it('with maxRequestsPerMessage 1, sends every request alone; it refuses a value out of range', async () => {
    const own = await AmqpTaskRequester.connect({ url: AMQP_URL, logger: testLogger, prefix, maxRequestsPerMessage: 1 });
    try {
      const before = messages.length;
      await Promise.all([0, 1, 2].map((i) => own.createTask({ namespace: 'payments', name: 'process_refund', context: { i }, idempotencyKey: `one-by-one-${i}` })));
      expect(messages.slice(before).map((m) => m.properties.type)).toEqual(['task_request', 'task_request', 'task_request']);
    } finally {
      await own.close();
    }
    expect(() => new AmqpTaskRequester(rabbit.broker, { prefix, maxRequestsPerMessage: 0 })).toThrow(/maxRequestsPerMessage must be an integer from 1 to 500; got 0/);
  });

  it('matches each reply to its request when replies come back in another order', async () => {
    const delays = [400, 300, 200, 100, 0];
    const results = await Promise.all(
      delays.map((delay, i) =>
        requester.createTask({
          namespace: 'payments',
          name: 'slow',
          context: { delay_ms: delay, existing: i % 2 === 0 },
          idempotencyKey: `concurrent-${i}`,
        }),
      ),
    );
    results.forEach((r, i) => {
      expect(r.task.id).toBe(`task_concurrent-${i}`);
      expect(r.created).toBe(i % 2 !== 0);
    });
  });

  it('turns an ok:false reply into a TaskerError with the code and every issue', async () => {
    const err = await requester
      .createTask({ namespace: 'payments', name: 'refused', context: {} })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TaskerError);
    expect(err).toMatchObject({
      code: ErrorCode.INVALID_CONTEXT,
      message: 'context does not match the input schema',
      issues: [
        { path: 'payment_id', message: 'is required' },
        { path: 'refund_amount', message: 'must be a number' },
      ],
    });
  });

  it('refuses an invalid request locally, naming every bad field, and sends nothing', async () => {
    const before = requests.items.length;
    const err = await requester
      .createTask({
        namespace: 'Payments-Team',
        name: '9lives',
        context: { ok: true },
        idempotencyKey: '',
        parent: { taskId: '' },
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TaskerError);
    const e = err as TaskerError;
    expect(e.code).toBe(ErrorCode.INVALID_MESSAGE);
    expect(e.issues.map((i) => i.path).sort()).toEqual(['idempotencyKey', 'name', 'namespace', 'parent.taskId']);
    expect(e.message).toContain('namespace');
    // A valid request sent afterwards is the next one the responder sees.
    await requester.createTask({ namespace: 'payments', name: 'after_invalid', context: {}, idempotencyKey: 'after-invalid' });
    expect(requests.items.length).toBe(before + 1);
    expect(requests.items.at(-1)?.request.idempotency_key).toBe('after-invalid');
  });

  it('refuses a context that is not JSON-serializable before sending', async () => {
    const err = await requester
      .createTask({ namespace: 'payments', name: 'process_refund', context: { amount: 10n } })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.INVALID_MESSAGE, issues: [{ path: 'context' }] });
  });

  it('fails with a clear error when no reply comes within timeoutMs', async () => {
    const err = await requester
      .createTask({ namespace: 'payments', name: 'ignored', context: {} }, { timeoutMs: 300 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TaskerError);
    expect(err).toMatchObject({ code: ErrorCode.INTERNAL });
    expect((err as Error).message).toContain('no reply to the task request for payments.ignored within 300 ms');
  });

  it('rejects pending requests when the requester is closed', async () => {
    const own = await AmqpTaskRequester.connect({ url: AMQP_URL, logger: testLogger, prefix });
    const pending = own
      .createTask({ namespace: 'payments', name: 'ignored', context: {}, idempotencyKey: 'closed-while-pending' })
      .catch((e: unknown) => e);
    await requests.waitFor((r) => r.request.idempotency_key === 'closed-while-pending');
    await own.close();
    const err = await pending;
    expect(err).toBeInstanceOf(TaskerError);
    expect((err as Error).message).toContain('closed before the reply came');
  });

  it('fails at once when no queue is bound to the task-requests exchange', async () => {
    const lonely = uniquePrefix();
    const bare = await TestRabbit.open(lonely, 'none');
    await bare.declare({ exchanges: [{ name: bare.names.taskRequestsExchange, type: 'topic' }], queues: [], bindings: [] });
    const own = new AmqpTaskRequester(bare.broker, { prefix: lonely });
    try {
      const err = await own
        .createTask({ namespace: 'payments', name: 'process_refund', context: {} }, { timeoutMs: 5000 })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TaskerError);
      expect((err as Error).message).toContain('unroutable');
    } finally {
      await own.close();
      await bare.cleanup();
    }
  });
});
