import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { startStack, eventually, taskWhen, type Stack } from '../support/stack.ts';
import { ManualWorker } from '../support/manual-worker.ts';

const TEMPLATE = (ns: string) => `
name: job
namespace_name: ${ns}
version: 1.0.0
steps:
  - { name: only, handler: { callable: only } }
`;

const RETRYING = `
name: flaky
namespace_name: retry_lost_ns
version: 1.0.0
steps:
  - name: only
    handler: { callable: only }
    retry: { max_attempts: 2, backoff: fixed, backoff_base_ms: 1500, max_backoff_ms: 1500 }
`;

describe('nothing waits forever unseen', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ redispatchAfterMs: 600, watchdogIntervalMs: 200 });
    await stack.register(TEMPLATE('lost_ns'), TEMPLATE('idle_ns'), RETRYING);
  });
  afterAll(async () => stack?.cleanup());

  it('a step whose message was lost (purged queue) is dispatched again after the window and completes', async () => {
    const o = stack.orchestrator;
    const [created] = await o.createTasks([{ namespace: 'lost_ns', name: 'job', context: {} }]);
    if (!created!.ok) throw created!.error;
    // Wait for the message to reach the queue, then lose it.
    await eventually(async () => ((await o.broker.queueDepth(o.names.stepQueue('lost_ns'))) === 1 ? true : undefined));
    const ch = await o.broker.model!.createChannel();
    await ch.purgeQueue(o.names.stepQueue('lost_ns'));
    await ch.close();
    const worker = await ManualWorker.start(o, 'lost_ns');
    const [m] = await worker.waitFor(1, 10000);
    expect(m!.attempt).toBe(1);
    await worker.succeed(m!);
    await taskWhen(o, created!.task.id, 'complete');
    const { rows } = await sql<{ reason: string }>`SELECT reason FROM transitions WHERE step_id = ${m!.step_id} ORDER BY id`.execute(o.db);
    expect(rows.map((r) => r.reason).join('\n')).toMatch(/dispatched again/);
  });

  it('a retry whose delay message was lost (purged delay queues) is sent again once overdue, and the step runs its next attempt', async () => {
    const o = stack.orchestrator;
    const worker = await ManualWorker.start(o, 'retry_lost_ns');
    const [created] = await o.createTasks([{ namespace: 'retry_lost_ns', name: 'flaky', context: {} }]);
    if (!created!.ok) throw created!.error;
    const [first] = await worker.waitFor(1, 10000);
    await worker.publish(worker.result(first!, { error: { kind: 'retryable', code: 'FLAKY', message: 'try again' } }));
    await taskWhen(o, created!.task.id, (t) => t.steps[0]!.state === 'waiting_retry');
    // The retry-due message waits in the delay queues (1,500 ms): lose it there.
    const ch = await o.broker.model!.createChannel();
    let purged = 0;
    for (let k = 0; k < 28; k++) purged += (await ch.purgeQueue(o.names.delayLevel(k)).catch(() => ({ messageCount: 0 }))).messageCount;
    await ch.close();
    expect(purged).toBe(1);
    const [, second] = await worker.waitFor(2, 15000);
    expect(second!.attempt).toBe(2);
    await worker.succeed(second!);
    await taskWhen(o, created!.task.id, 'complete');
  });

  it('steps waiting in a queue nobody consumes are reported with why, not dispatched again', async () => {
    const o = stack.orchestrator;
    const [created] = await o.createTasks([{ namespace: 'idle_ns', name: 'job', context: {} }]);
    if (!created!.ok) throw created!.error;
    const res = await eventually(async () => {
      const r = await fetch(`${o.httpUrl}/v1/diagnostics/stuck`);
      const body = (await r.json()) as { items: Array<{ task_id: string; why: string }> };
      return body.items.find((i) => i.task_id === created!.task.id);
    }, 10000, 'a stuck report');
    expect(res.why).toMatch(/no worker consumes .*idle_ns \(1 steps waiting there\)/);
    expect(await o.broker.queueDepth(o.names.stepQueue('idle_ns'))).toBe(1);
  });
});
