import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { StepContext } from '../src/index.ts';
import { FakeOrchestrator } from './support/fake-orchestrator.ts';

let orch: FakeOrchestrator;

beforeAll(async () => {
  orch = await FakeOrchestrator.open();
});
afterEach(async () => {
  await orch.stopWorkers();
});
afterAll(async () => {
  await orch?.close();
});

describe('step context', () => {
  it('gives the handler the input, every ancestor result, initialization, method and the step identity', async () => {
    const ns = await orch.namespace();
    let seen: Record<string, unknown> = {};
    const handlers = {
      execute_refund: (ctx: StepContext) => {
        seen = {
          taskId: ctx.taskId,
          stepId: ctx.stepId,
          stepName: ctx.stepName,
          namespace: ctx.namespace,
          taskName: ctx.taskName,
          taskVersion: ctx.taskVersion,
          correlationId: ctx.correlationId,
          attempt: ctx.attempt,
          maxAttempts: ctx.maxAttempts,
          idempotencyKey: ctx.idempotencyKey,
          input: ctx.input,
          ticket: ctx.getInput<string>('ticket_id'),
          missingInput: ctx.getInput('nope'),
          inheritedInput: ctx.getInput('toString'),
          approval: ctx.getDependencyResult<{ approved: boolean }>('get_manager_approval'),
          validation: ctx.getDependencyResult('validate_refund_request'),
          missingDependency: ctx.getDependencyResult('nope'),
          dependencyResults: ctx.dependencyResults,
          initialization: ctx.initialization,
          method: ctx.method,
          signalAborted: ctx.signal.aborted,
          hasLogger: typeof ctx.logger.info === 'function',
        };
        return 'ok';
      },
    };
    await orch.worker({ namespace: ns, handlers }).start();
    const m = orch.step(ns, 'execute_refund', {
      step_name: 'execute_refund_workflow',
      task_name: 'process_refund',
      task_version: '2.1.0',
      attempt: 2,
      max_attempts: 3,
      idempotency_key: 'the-step:2',
      input: { ticket_id: 'TICKET-1234', refund_amount: 49.99 },
      dependency_results: {
        validate_refund_request: { payment_id: 'pay_1' },
        check_refund_policy: { ok: true },
        get_manager_approval: { approved: true },
      },
      handler: { callable: 'execute_refund', method: 'call', initialization: { gateway: 'stripe', timeout: 5 } },
    });
    await orch.dispatch(m);
    expect(await orch.resultFor(m.step_id)).toMatchObject({ status: 'success', result: 'ok' });
    expect(seen).toEqual({
      taskId: m.task_id,
      stepId: m.step_id,
      stepName: 'execute_refund_workflow',
      namespace: ns,
      taskName: 'process_refund',
      taskVersion: '2.1.0',
      correlationId: m.correlation_id,
      attempt: 2,
      maxAttempts: 3,
      idempotencyKey: 'the-step:2',
      input: { ticket_id: 'TICKET-1234', refund_amount: 49.99 },
      ticket: 'TICKET-1234',
      missingInput: undefined,
      inheritedInput: undefined,
      approval: { approved: true },
      validation: { payment_id: 'pay_1' },
      missingDependency: undefined,
      dependencyResults: m.dependency_results,
      initialization: { gateway: 'stripe', timeout: 5 },
      method: 'call',
      signalAborted: false,
      hasLogger: true,
    });
  });

  it('ctx.createTask asks for a task with this step as parent, its correlation id and a per-call idempotency key', async () => {
    const ns = await orch.namespace();
    const handlers = {
      delegate: async (ctx: StepContext) => {
        const first = await ctx.createTask({ namespace: 'payments', name: 'process_refund', context: { payment_id: 'pay_1' } });
        const second = await ctx.createTask({ namespace: 'payments', name: 'process_refund', context: { payment_id: 'pay_2' } });
        const explicit = await ctx.createTask({
          namespace: 'notifications',
          name: 'notify',
          context: {},
          idempotencyKey: 'mine',
          correlationId: 'other-corr',
          parent: { taskId: 'someone' },
        });
        return { ids: [first.task.id, second.task.id, explicit.task.id], created: first.created };
      },
    };
    await orch.worker({ namespace: ns, handlers }).start();
    const m = orch.step(ns, 'delegate', { attempt: 3 });
    await orch.dispatch(m);
    const r = await orch.resultFor(m.step_id);
    const k1 = `${m.step_id}:payments.process_refund:1`;
    const k2 = `${m.step_id}:payments.process_refund:2`;
    expect(r).toMatchObject({ status: 'success', result: { ids: [`child_${k1}`, `child_${k2}`, 'child_mine'], created: true } });

    const requests = orch.taskRequests.items.filter((x) => x.request.parent?.task_id === m.task_id || x.request.idempotency_key === 'mine');
    expect(requests.map((x) => x.request)).toEqual([
      expect.objectContaining({
        namespace: 'payments',
        name: 'process_refund',
        context: { payment_id: 'pay_1' },
        parent: { task_id: m.task_id, step_id: m.step_id },
        correlation_id: m.correlation_id,
        idempotency_key: k1,
      }),
      expect.objectContaining({ context: { payment_id: 'pay_2' }, idempotency_key: k2 }),
      expect.objectContaining({
        namespace: 'notifications',
        idempotency_key: 'mine',
        correlation_id: 'other-corr',
        parent: { task_id: 'someone' },
      }),
    ]);
    expect(requests[0]!.msg.fields.routingKey).toBe('payments');
  });

  it('the idempotency key of a child task does not change when the step is retried', async () => {
    const ns = await orch.namespace();
    const handlers = {
      delegate: async (ctx: StepContext) => (await ctx.createTask({ namespace: 'payments', name: 'charge', context: {} })).task.id,
    };
    await orch.worker({ namespace: ns, handlers }).start();
    const first = orch.step(ns, 'delegate', { attempt: 1 });
    const retry = orch.step(ns, 'delegate', { ...first, attempt: 2, idempotency_key: `${first.step_id}:2` });
    await orch.dispatch(first);
    const a = await orch.resultFor(first.step_id);
    await orch.dispatch(retry);
    const b = await orch.results.waitFor((x) => x.result?.step_id === first.step_id && x.result.attempt === 2);
    expect(a.status === 'success' && a.result).toBe(`child_${first.step_id}:payments.charge:1`);
    expect(b.result).toMatchObject({ status: 'success', result: `child_${first.step_id}:payments.charge:1` });
  });
});
