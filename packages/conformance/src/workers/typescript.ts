#!/usr/bin/env node
/**
 * The TypeScript SDK's conformance worker: the kit's handlers (../contract.ts) on
 * `createWorker`, namespace from TASKER_NAMESPACE, broker from TASKER_AMQP_URL and
 * TASKER_AMQP_PREFIX.
 *
 *   pnpm conformance --namespace conf_ts -- node --import tsx packages/conformance/src/workers/typescript.ts
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { PermanentError, RetryableError, createWorker, type StepHandler } from '@tasker/worker';
import { largeData, type ConformanceCallable } from '../contract.ts';

const handlers: Record<ConformanceCallable, StepHandler> = {
  conformance_succeed: (ctx) => ({ ok: true, value: ctx.getInput('value') ?? null }),
  conformance_fail_permanent: () => {
    throw new PermanentError('permanent failure requested', { code: 'CONFORMANCE_PERMANENT', details: { reason: 'conformance' } });
  },
  conformance_fail_retryable: (ctx) => {
    if (ctx.attempt === 1) {
      throw new RetryableError('retry requested', { code: 'CONFORMANCE_RETRY', retryAfterMs: ctx.getInput<number>('retry_after_ms') ?? 1000 });
    }
    return { attempt: ctx.attempt };
  },
  conformance_produce: (ctx) => ({ token: ctx.getInput('token') ?? null, n: 42 }),
  conformance_consume: (ctx) => ({
    input_token: ctx.getInput('token') ?? null,
    produced: ctx.getDependencyResult('produce') ?? null,
    task_id: ctx.taskId,
    step_id: ctx.stepId,
    step_name: ctx.stepName,
    namespace: ctx.namespace,
    task_name: ctx.taskName,
    attempt: ctx.attempt,
    max_attempts: ctx.maxAttempts,
    idempotency_key: ctx.idempotencyKey,
  }),
  conformance_initialization: (ctx) => ({ initialization: ctx.initialization }),
  conformance_large: (ctx) => {
    const size = ctx.getInput<number>('size') ?? 0;
    return { size, data: largeData(size) };
  },
  conformance_unicode: (ctx) => {
    const text = ctx.getInput<string>('text') ?? '';
    return { text, payload: ctx.getInput('payload') ?? null, code_points: [...text].length };
  },
  conformance_delegate: async (ctx) => {
    const { task } = await ctx.createTask({ namespace: ctx.namespace, name: 'conformance_success', context: { value: ctx.getInput('value') ?? null } });
    return ctx.waitFor(task.id);
  },
  conformance_sleep: async (ctx) => {
    const ms = ctx.getInput<number>('sleep_ms') ?? 0;
    await sleep(ms); // deliberately not ctx.signal: the runtime must enforce the timeout on its own
    return { slept_ms: ms, attempt: ctx.attempt, idempotency_key: ctx.idempotencyKey };
  },
};

const namespace = process.env['TASKER_NAMESPACE'];
if (!namespace) {
  console.error('TASKER_NAMESPACE is required');
  process.exit(2);
}
const worker = createWorker({ namespace, handlers, concurrency: 16 });
worker.installSignalHandlers();
await worker.start();
