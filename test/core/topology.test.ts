import { afterAll, describe, expect, it } from 'vitest';
import { ManagementApi } from '@tasker/orchestrator';
import { MANAGEMENT_URL } from '../support/broker-access.ts';
import { startRecordingWorker, type Execution } from '../support/recording-worker.ts';
import { startStack, tasksWhen, type Stack } from '../support/stack.ts';

describe('broker topology', () => {
  let stack: Stack;
  afterAll(async () => stack?.cleanup());

  it('an orchestrator whose queue settings differ from the existing queues refuses to start with a sentence saying what to do', async () => {
    stack = await startStack({ queueType: 'classic' });
    const err = await stack.another({ queueType: 'quorum', httpPort: 0 }).then(
      () => null,
      (e: Error) => e,
    );
    // The error itself in the assertion's message: in one CI run of five (session 26) this start
    // failed with an error named 'error' (pg's): Postgres's log showed kysely's listing of every
    // schema's tables, in migrate(), meeting a table another test file had just dropped (42P01),
    // which migrate() now lists again for (droppedMeanwhile).
    const seen = err ? `${err.name}: ${err.message} (code ${String((err as { code?: unknown }).code)})\n${err.stack ?? ''}` : 'no error';
    expect(err?.name, seen).toBe('TopologyMismatchError');
    expect(err?.message).toMatch(/already exists with other settings .*x-queue-type/);
    expect(err?.message).toMatch(/TASKER_AMQP_PREFIX/);
  });
});

const ORDER = `
name: order
namespace_name: shop
version: 1.0.0
steps:
  - { name: reserve, handler: { callable: shop_reserve } }
  - { name: charge, handler: { callable: shop_charge }, dependencies: [reserve] }
  - { name: ship, handler: { callable: shop_ship }, dependencies: [charge] }
`;

describe('quorum step queues with a classic results queue (TASKER_RESULTS_QUEUE_TYPE)', () => {
  let stack: Stack;
  afterAll(async () => stack?.cleanup());

  /** The x-queue-type each queue of the stack's prefix was declared with, as the broker reports it. */
  async function declaredTypes(): Promise<Map<string, unknown>> {
    const queues = await new ManagementApi(MANAGEMENT_URL()).queues('/');
    return new Map(queues.filter((q) => q.name.startsWith(`${stack.prefix}.`)).map((q) => [q.name, q.arguments['x-queue-type']]));
  }

  it('declares the results queue classic and every other work queue quorum, and tasks run through them', async () => {
    stack = await startStack({ queueType: 'quorum', resultsQueueType: 'classic' });
    const templates = await stack.register(ORDER);
    const seen: Execution[] = [];
    await startRecordingWorker(stack, 'shop', templates, seen);
    const outcomes = await stack.orchestrator.createTasks(Array.from({ length: 5 }, () => ({ namespace: 'shop', name: 'order', context: {} })));
    const ids = outcomes.map((o) => (o.ok ? o.task.id : 'refused'));
    const tasks = await tasksWhen(stack.orchestrator, ids, 'complete', 20_000);
    expect(tasks.map((t) => t.steps.map((s) => s.state))).toEqual(ids.map(() => ['complete', 'complete', 'complete']));
    expect(seen).toHaveLength(15);

    const n = stack.orchestrator.names;
    const types = await declaredTypes();
    expect(types.get(n.resultsQueue)).toBe('classic');
    for (const q of [n.stepQueue('shop'), n.taskRequestsQueue, n.retriesQueue, n.deadLetterQueue, n.poisonQueue]) expect([q, types.get(q)]).toEqual([q, 'quorum']);
  });

  it('an orchestrator configured with another results queue type refuses to start, naming TASKER_RESULTS_QUEUE_TYPE', async () => {
    const err = await stack.another({ resultsQueueType: null, httpPort: 0 }).then(
      () => null,
      (e: Error) => e,
    );
    expect(err?.name).toBe('TopologyMismatchError');
    expect(err?.message).toContain(`queue '${stack.orchestrator.names.resultsQueue}'`);
    expect(err?.message).toContain('TASKER_RESULTS_QUEUE_TYPE');
  });
});
