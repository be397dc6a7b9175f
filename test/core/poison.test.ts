import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, taskWhen, type Stack } from '../support/stack.ts';

const TEMPLATE = `
name: crashy
namespace_name: poison_ns
version: 1.0.0
steps:
  - { name: boom, handler: { callable: boom }, retry: { max_attempts: 3 } }
  - { name: after, handler: { callable: after }, dependencies: [boom] }
`;

describe('poison step messages', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ queueType: 'quorum', deliveryLimit: 3 });
    await stack.register(TEMPLATE);
  });
  afterAll(async () => stack?.cleanup());

  it('a step message that never gets a result ends as a step error after the delivery limit, not an endless loop', async () => {
    const o = stack.orchestrator;
    let deliveries = 0;
    // Stands in for a worker that dies on this step every time: it takes the message and
    // gives it back without answering.
    const c = await o.broker.consume(o.names.stepQueue('poison_ns'), { prefetch: 1 }, (d) => {
      deliveries++;
      d.nack(true);
    });
    const [created] = await o.createTasks([{ namespace: 'poison_ns', name: 'crashy', context: {} }]);
    if (!created!.ok) throw created!.error;
    const task = await taskWhen(o, created!.task.id, 'error', 20000);
    await c.close();
    expect(task.steps[0]!.state).toBe('error');
    expect(task.steps[0]!.error).toMatchObject({ code: 'POISON_MESSAGE', kind: 'permanent' });
    expect(task.steps[1]!.state).toBe('pending');
    expect(deliveries).toBeGreaterThanOrEqual(3);
    expect(deliveries).toBeLessThanOrEqual(5);
  });
});
