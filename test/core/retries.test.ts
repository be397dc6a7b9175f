import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { JITTER_FRACTION } from '@tasker/protocol';
import { startStack, eventually, taskWhen, type Stack } from '../support/stack.ts';
import { ManualWorker } from '../support/manual-worker.ts';

// Delay-queue hops add latency (each set bit of the delay is one dead-letter hop), so the
// observed wait may exceed the computed delay by a little; never by more than this.
const SLACK_MS = 400;

const TEMPLATES = [
  `
name: flaky
namespace_name: retry_ns
version: 1.0.0
steps:
  - name: call
    handler: { callable: call }
    retry: { max_attempts: 3, backoff: fixed, backoff_base_ms: 800, max_backoff_ms: 1000 }
`,
  `
name: one_shot
namespace_name: retry_ns
version: 1.0.0
steps:
  - name: call
    handler: { callable: call }
    retry: { retryable: false, max_attempts: 5 }
`,
  `
name: diamond
namespace_name: retry_ns
version: 1.0.0
steps:
  - { name: a, handler: { callable: a } }
  - { name: b, handler: { callable: b }, dependencies: [a] }
  - { name: c, handler: { callable: c }, dependencies: [a] }
  - { name: d, handler: { callable: d }, dependencies: [b, c] }
`,
];

describe('retries by delayed requeue', () => {
  let stack: Stack;
  let worker: ManualWorker;
  beforeAll(async () => {
    stack = await startStack();
    await stack.register(...TEMPLATES);
    worker = await ManualWorker.start(stack.orchestrator, 'retry_ns');
  });
  afterAll(async () => stack?.cleanup());

  const create = async (name: string) => {
    const [o] = await stack.orchestrator.createTasks([{ namespace: 'retry_ns', name, context: {} }]);
    if (!o!.ok) throw o!.error;
    return o!.task.id;
  };
  const messagesOf = (taskId: string) => worker.received.filter((m) => m.task_id === taskId);
  const waitMessages = (taskId: string, n: number, timeoutMs = 10000) =>
    eventually(async () => (messagesOf(taskId).length >= n ? messagesOf(taskId) : undefined), timeoutMs, `${n} messages`);
  const taskState = async (id: string) => (await stack.orchestrator.getTask(id))!;

  it('waits the policy delay, within the documented jitter bounds, before the next attempt', async () => {
    const id = await create('flaky');
    const [m1] = await waitMessages(id, 1);
    const failedAt = Date.now();
    await worker.publish(worker.result(m1!, { error: { kind: 'retryable', code: 'FLAKY', message: 'try again' } }));
    const msgs = await waitMessages(id, 2);
    const gap = msgs[1]!.receivedAt - failedAt;
    expect(msgs[1]!.attempt).toBe(2);
    expect(msgs[1]!.idempotency_key).toBe(`${m1!.step_id}:2`);
    expect(gap).toBeGreaterThanOrEqual(Math.floor(800 * (1 - JITTER_FRACTION)));
    expect(gap).toBeLessThanOrEqual(800 + SLACK_MS);
    const step = (await taskState(id)).steps[0]!;
    expect(step.attempt).toBe(2);
    expect(step.state).toBe('enqueued');
  });

  it("a handler's retry-after is honoured and capped by the policy's maximum", async () => {
    const id = await create('flaky');
    const [m1] = await waitMessages(id, 1);
    let t = Date.now();
    await worker.publish(worker.result(m1!, { error: { kind: 'retryable', code: 'SLOW_DOWN', message: 'later', retry_after_ms: 300 } }));
    const [, m2] = await waitMessages(id, 2);
    const gap1 = worker.received.find((m) => m === m2)!.receivedAt - t;
    expect(gap1).toBeGreaterThanOrEqual(300);
    expect(gap1).toBeLessThanOrEqual(300 + SLACK_MS);
    t = Date.now();
    await worker.publish(worker.result(m2!, { error: { kind: 'retryable', code: 'SLOW_DOWN', message: 'much later', retry_after_ms: 60_000 } }));
    const msgs = await waitMessages(id, 3);
    const gap2 = msgs[2]!.receivedAt - t;
    expect(gap2).toBeGreaterThanOrEqual(1000);
    expect(gap2).toBeLessThanOrEqual(1000 + SLACK_MS);
  });

  it('max_attempts counts every attempt including the first, then the step and the task fail', async () => {
    const id = await create('flaky');
    for (let attempt = 1; attempt <= 3; attempt++) {
      const msgs = await waitMessages(id, attempt);
      const m = msgs[attempt - 1]!;
      expect(m.attempt).toBe(attempt);
      expect(m.max_attempts).toBe(3);
      await worker.publish(worker.result(m, { error: { kind: 'retryable', code: 'DOWN', message: `fail ${attempt}`, retry_after_ms: 0 } }));
    }
    const task = await taskWhen(stack.orchestrator, id, 'error');
    expect(task.steps[0]!.state).toBe('error');
    expect(task.steps[0]!.attempt).toBe(3);
    expect(task.steps[0]!.error).toMatchObject({ code: 'DOWN', retries_exhausted: true });
    await new Promise((r) => setTimeout(r, 300));
    expect(messagesOf(id)).toHaveLength(3);
  });

  it('retryable: false means one attempt, whatever max_attempts says', async () => {
    const id = await create('one_shot');
    const [m] = await waitMessages(id, 1);
    expect(m!.max_attempts).toBe(1);
    await worker.publish(worker.result(m!, { error: { kind: 'retryable', code: 'DOWN', message: 'no' } }));
    await taskWhen(stack.orchestrator, id, 'error');
    expect(messagesOf(id)).toHaveLength(1);
  });

  it('a permanent failure stops its dependents; a running sibling may finish; then the task ends in error', async () => {
    const id = await create('diamond');
    const [a] = await waitMessages(id, 1);
    await worker.succeed(a!);
    const msgs = await waitMessages(id, 3);
    const b = msgs.find((m) => m.step_name === 'b')!;
    const c = msgs.find((m) => m.step_name === 'c')!;
    await worker.publish(worker.result(b, { error: { kind: 'permanent', code: 'BROKEN', message: 'b cannot' } }));
    await new Promise((r) => setTimeout(r, 300));
    expect((await taskState(id)).state).toBe('in_progress'); // c is still running
    await worker.succeed(c);
    const task = await taskWhen(stack.orchestrator, id, 'error');
    expect(task.steps.map((s) => `${s.name}:${s.state}`)).toEqual(['a:complete', 'b:error', 'c:complete', 'd:pending']);
    expect(task.error).toMatchObject({ step: 'b', error: { code: 'BROKEN' } });
    expect(messagesOf(id).some((m) => m.step_name === 'd')).toBe(false);
  });

  it('a retry whose task was cancelled meanwhile never starts a new attempt', async () => {
    const id = await create('flaky');
    const [m1] = await waitMessages(id, 1);
    await worker.publish(worker.result(m1!, { error: { kind: 'retryable', code: 'FLAKY', message: 'x', retry_after_ms: 500 } }));
    await taskWhen(stack.orchestrator, id, (t) => t.steps[0]!.state === 'waiting_retry');
    // Cancel directly in the database (the cancel API comes with the operator surface).
    await sql`UPDATE tasks SET state = 'cancelled' WHERE id = ${id}`.execute(stack.orchestrator.db);
    await sql`UPDATE steps SET state = 'cancelled' WHERE task_id = ${id}`.execute(stack.orchestrator.db);
    await new Promise((r) => setTimeout(r, 1200));
    expect(messagesOf(id)).toHaveLength(1);
  });
});
