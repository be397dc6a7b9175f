import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, tasksWhen, type Stack } from '../support/stack.ts';
import { startRecordingWorker, type Execution } from '../support/recording-worker.ts';

const CS = `
name: process_refund
namespace_name: customer_success
version: 1.0.0
steps:
  - { name: validate_refund_request, handler: { callable: cs_validate } }
  - { name: update_ticket_status, handler: { callable: cs_update }, dependencies: [validate_refund_request] }
`;
const PAY = `
name: process_refund
namespace_name: payments
version: 1.0.0
steps:
  - { name: validate_payment_eligibility, handler: { callable: pay_validate } }
  - { name: process_gateway_refund, handler: { callable: pay_refund }, dependencies: [validate_payment_eligibility] }
  - { name: notify_customer, handler: { callable: pay_notify }, dependencies: [process_gateway_refund] }
`;

describe('two namespaces with the same template name', () => {
  let stack: Stack;
  const seen: Record<string, Execution[]> = { customer_success: [], payments: [] };

  beforeAll(async () => {
    stack = await startStack();
    const templates = await stack.register(CS, PAY);
    await startRecordingWorker(stack, 'customer_success', templates, seen.customer_success!);
    await startRecordingWorker(stack, 'payments', templates, seen.payments!);
  });
  afterAll(async () => {
    await stack?.cleanup();
  });

  it('never collide: each task runs its own namespace steps, and each worker only ever sees its own', async () => {
    const outcomes = await stack.orchestrator.createTasks([
      ...Array.from({ length: 5 }, () => ({ namespace: 'customer_success', name: 'process_refund', context: {} })),
      ...Array.from({ length: 5 }, () => ({ namespace: 'payments', name: 'process_refund', context: {} })),
    ]);
    const ids = outcomes.map((o) => (o.ok ? o.task.id : 'refused'));
    const tasks = await tasksWhen(stack.orchestrator, ids, 'complete', 20000);
    for (const t of tasks.slice(0, 5)) {
      expect(t.namespace).toBe('customer_success');
      expect(t.steps.map((s) => s.name)).toEqual(['validate_refund_request', 'update_ticket_status']);
    }
    for (const t of tasks.slice(5)) {
      expect(t.namespace).toBe('payments');
      expect(t.steps.map((s) => s.name)).toEqual(['validate_payment_eligibility', 'process_gateway_refund', 'notify_customer']);
    }
    expect(seen.customer_success!).toHaveLength(10);
    expect(seen.payments!).toHaveLength(15);
    expect(new Set(seen.customer_success!.map((e) => e.namespace))).toEqual(new Set(['customer_success']));
    expect(new Set(seen.payments!.map((e) => e.namespace))).toEqual(new Set(['payments']));
    expect(new Set(seen.payments!.map((e) => e.taskId))).toEqual(new Set(ids.slice(5)));
  });

  it('each namespace has its own durable queue, which exists before any worker runs', async () => {
    const o = stack.orchestrator;
    expect(await o.broker.queueExists(o.names.stepQueue('customer_success'))).toBe(true);
    expect(await o.broker.queueExists(o.names.stepQueue('payments'))).toBe(true);
    expect(o.names.stepQueue('payments')).not.toBe(o.names.stepQueue('customer_success'));
  });
});
