import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '@tasker/protocol';
import type { StepContext } from '../src/index.ts';
import { FakeOrchestrator, deferred } from './support/fake-orchestrator.ts';

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

describe('graceful shutdown', () => {
  it('stop() lets a running handler finish, publishes its result and acks the step before closing', async () => {
    const ns = await orch.namespace();
    const started = deferred();
    const handlers = {
      slow: async () => {
        started.resolve();
        await sleep(400);
        return { finished: true };
      },
    };
    const worker = orch.worker({ namespace: ns, handlers, shutdownGraceMs: 5000 });
    await worker.start();
    const m = orch.step(ns, 'slow');
    await orch.dispatch(m);
    await started.promise;

    await worker.stop();
    expect(worker.state).toBe('stopped');
    // The result is already there when stop() resolves.
    expect(orch.results.items.some((r) => r.result?.step_id === m.step_id)).toBe(true);
    expect(await orch.resultFor(m.step_id)).toMatchObject({ status: 'success', result: { finished: true } });
    expect(await orch.depth(ns)).toBe(0);
  });

  it('stop() takes no new steps: those still queued stay in the queue', async () => {
    const ns = await orch.namespace();
    const started = deferred();
    const handlers = {
      slow: async () => {
        started.resolve();
        await sleep(300);
      },
    };
    const worker = orch.worker({ namespace: ns, handlers, concurrency: 1, shutdownGraceMs: 5000 });
    await worker.start();
    const steps = [orch.step(ns, 'slow'), orch.step(ns, 'slow'), orch.step(ns, 'slow')];
    for (const s of steps) await orch.dispatch(s);
    await started.promise;
    await worker.stop();
    expect(await orch.resultFor(steps[0]!.step_id)).toMatchObject({ status: 'success' });
    expect(await orch.depth(ns)).toBe(2);
  });

  it('after the grace period, a running handler is aborted and its message goes back to the queue for another worker', async () => {
    const ns = await orch.namespace();
    const started = deferred();
    let abortReason: unknown = null;
    const stuck = deferred();
    const first = orch.worker({
      namespace: ns,
      shutdownGraceMs: 200,
      handlers: {
        long: async (ctx: StepContext) => {
          started.resolve();
          await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
          abortReason = ctx.signal.reason;
          stuck.resolve();
          throw new Error('aborted');
        },
      },
    });
    await first.start();
    const m = orch.step(ns, 'long');
    await orch.dispatch(m);
    await started.promise;
    await first.stop();
    await stuck.promise;
    expect(abortReason).toMatchObject({ code: ErrorCode.WORKER_SHUTDOWN });
    await sleep(100);
    // No result from the first worker: the step was handed back, not answered.
    expect(orch.results.items.some((r) => r.result?.step_id === m.step_id)).toBe(false);

    await orch.worker({ namespace: ns, handlers: { long: (ctx: StepContext) => ({ attempt: ctx.attempt }) } }).start();
    expect(await orch.resultFor(m.step_id)).toMatchObject({ status: 'success', attempt: 1, result: { attempt: 1 } });
  });

  it('stop() before start() is a no-op and start() afterwards is refused', async () => {
    const ns = await orch.namespace();
    const worker = orch.worker({ namespace: ns, handlers: { x: () => 1 } });
    await worker.stop();
    expect(worker.state).toBe('stopped');
    await expect(worker.start()).rejects.toThrow(/cannot start: it is stopped/);
  });
});
