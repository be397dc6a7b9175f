import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { ErrorCode, Limits, PROTOCOL_VERSION, StepResult } from '@tasker/protocol';
import { PermanentError, RetryableError, type StepContext } from '../src/index.ts';
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

describe('step results', () => {
  it('a successful step publishes a StepResult that validates, with the result properties, and acks the step', async () => {
    const ns = await orch.namespace();
    const worker = orch.worker({ namespace: ns, handlers: { validate: () => ({ ok: true, amount: 49.99 }) }, workerId: 'w-1' });
    await worker.start();
    const msg = orch.step(ns, 'validate', { attempt: 2, idempotency_key: 'x:2' });
    await orch.dispatch(msg);

    const r = await orch.resultFor(msg.step_id);
    const { msg: amqp, receivedAt: _r, ...body } = r;
    expect(StepResult.safeParse(body).success).toBe(true);
    expect(body).toMatchObject({
      protocol_version: 1,
      message_type: 'step_result',
      status: 'success',
      result: { ok: true, amount: 49.99 },
      task_id: msg.task_id,
      step_id: msg.step_id,
      namespace: ns,
      step_name: msg.step_name,
      attempt: 2,
      worker_id: 'w-1',
    });
    expect(Date.parse(body.finished_at)).toBeGreaterThanOrEqual(Date.parse(body.started_at));
    expect(amqp.fields.exchange).toBe(`${orch.prefix}.results`);
    expect(amqp.fields.routingKey).toBe(ns);
    expect(amqp.properties).toMatchObject({
      contentType: 'application/json',
      messageId: `${msg.step_id}:2`,
      correlationId: msg.correlation_id,
      type: 'step_result',
      deliveryMode: 2,
    });
    // Acked: once the worker's channel is closed, nothing goes back to the queue.
    await worker.stop();
    expect(await orch.depth(ns)).toBe(0);
  });

  it('results ready together go out in one step_results message (a lone one goes out alone at once), and every step is acked', async () => {
    const ns = await orch.namespace();
    const gate = deferred();
    let running = 0;
    const allRunning = deferred();
    const handlers = {
      work: async (ctx: StepContext) => {
        if (++running === 20) allRunning.resolve();
        await gate.promise;
        return { step: ctx.stepId };
      },
    };
    const worker = orch.worker({ namespace: ns, handlers, concurrency: 20, workerId: 'w-batch' });
    await worker.start();
    const steps = Array.from({ length: 20 }, () => orch.step(ns, 'work'));
    for (const s of steps) await orch.dispatch(s);
    await allRunning.promise;
    gate.resolve(); // all twenty handlers return in the same turn of the event loop
    const results = await Promise.all(steps.map((s) => orch.resultFor(s.step_id)));
    for (const [i, r] of results.entries()) {
      expect(r).toMatchObject({ status: 'success', result: { step: steps[i]!.step_id }, step_id: steps[i]!.step_id, attempt: 1, worker_id: 'w-batch' });
    }
    const messages = new Set(results.map((r) => r.msg));
    // The first result goes out alone; the rest wait for its confirm and share messages.
    expect(messages.size).toBeLessThan(20);
    const shared = [...messages].filter((m) => m.properties.type === 'step_results');
    expect(shared.length).toBeGreaterThan(0);
    for (const m of shared) {
      expect(m.fields.routingKey).toBe(ns);
      expect(m.properties).toMatchObject({ contentType: 'application/json', deliveryMode: 2 });
      expect(JSON.parse(m.content.toString())).toMatchObject({ protocol_version: 1, message_type: 'step_results' });
    }
    await worker.stop();
    expect(await orch.depth(ns)).toBe(0);
  });

  it('a handler returning undefined gives a null result', async () => {
    const ns = await orch.namespace();
    await orch.worker({ namespace: ns, handlers: { noop: () => undefined } }).start();
    const msg = orch.step(ns, 'noop');
    await orch.dispatch(msg);
    expect(await orch.resultFor(msg.step_id)).toMatchObject({ status: 'success', result: null });
  });

  it('PermanentError becomes a permanent failure with its code, message and details', async () => {
    const ns = await orch.namespace();
    const handlers = {
      validate: () => {
        throw new PermanentError('Missing required fields: ticket_id', { code: 'MISSING_FIELDS', details: { missing: ['ticket_id'] } });
      },
      plain: async () => {
        throw new PermanentError('no good');
      },
    };
    await orch.worker({ namespace: ns, handlers }).start();
    const a = orch.step(ns, 'validate');
    const b = orch.step(ns, 'plain');
    await orch.dispatch(a);
    await orch.dispatch(b);
    expect(await orch.resultFor(a.step_id)).toMatchObject({
      status: 'failure',
      error: {
        kind: 'permanent',
        code: 'MISSING_FIELDS',
        message: 'Missing required fields: ticket_id',
        details: { missing: ['ticket_id'] },
      },
    });
    expect(await orch.resultFor(b.step_id)).toMatchObject({
      status: 'failure',
      error: { kind: 'permanent', code: 'PERMANENT_ERROR', message: 'no good' },
    });
  });

  it('RetryableError becomes a retryable failure carrying retry_after_ms', async () => {
    const ns = await orch.namespace();
    const handlers = {
      busy: async () => {
        throw new RetryableError('gateway busy', { code: 'GATEWAY_BUSY', retryAfterMs: 1500 });
      },
      plain: () => {
        throw new RetryableError('try again');
      },
    };
    await orch.worker({ namespace: ns, handlers }).start();
    const a = orch.step(ns, 'busy');
    const b = orch.step(ns, 'plain');
    await orch.dispatch(a);
    await orch.dispatch(b);
    expect(await orch.resultFor(a.step_id)).toMatchObject({
      status: 'failure',
      error: { kind: 'retryable', code: 'GATEWAY_BUSY', message: 'gateway busy', retry_after_ms: 1500 },
    });
    expect(await orch.resultFor(b.step_id)).toMatchObject({
      status: 'failure',
      error: { kind: 'retryable', code: 'RETRYABLE_ERROR', message: 'try again', retry_after_ms: null },
    });
  });

  it('any other thrown value is a retryable HANDLER_ERROR with its message', async () => {
    const ns = await orch.namespace();
    const handlers = {
      boom: () => {
        throw new Error('database unreachable');
      },
      typeError: (ctx: StepContext) => (ctx.input['missing'] as { x: number }).x,
      str: () => Promise.reject('just a string'),
    };
    await orch.worker({ namespace: ns, handlers }).start();
    const [a, b, c] = [orch.step(ns, 'boom'), orch.step(ns, 'typeError'), orch.step(ns, 'str')];
    for (const m of [a, b, c]) await orch.dispatch(m);
    expect(await orch.resultFor(a.step_id)).toMatchObject({
      status: 'failure',
      error: { kind: 'retryable', code: ErrorCode.HANDLER_ERROR, message: 'database unreachable' },
    });
    const rb = await orch.resultFor(b.step_id);
    expect(rb).toMatchObject({ status: 'failure', error: { kind: 'retryable', code: ErrorCode.HANDLER_ERROR } });
    expect(rb.status === 'failure' && rb.error.message).toMatch(/^TypeError: /);
    expect(await orch.resultFor(c.step_id)).toMatchObject({
      status: 'failure',
      error: { kind: 'retryable', code: ErrorCode.HANDLER_ERROR, message: 'just a string' },
    });
  });

  it('a code that is not upper snake case falls back to the default code of its kind', async () => {
    const ns = await orch.namespace();
    const handlers = {
      bad: () => {
        throw new PermanentError('bad code', { code: 'not-a-code' });
      },
    };
    await orch.worker({ namespace: ns, handlers }).start();
    const m = orch.step(ns, 'bad');
    await orch.dispatch(m);
    expect(await orch.resultFor(m.step_id)).toMatchObject({ error: { kind: 'permanent', code: 'PERMANENT_ERROR' } });
  });

  it('an unknown callable is a permanent HANDLER_NOT_FOUND naming the callable, the namespace and the handlers there are', async () => {
    const ns = await orch.namespace();
    await orch.worker({ namespace: ns, handlers: { validate: () => 1, refund: () => 2 } }).start();
    const m = orch.step(ns, 'CustomerSuccess::StepHandlers::Nope');
    await orch.dispatch(m);
    const r = await orch.resultFor(m.step_id);
    expect(r).toMatchObject({ status: 'failure', error: { kind: 'permanent', code: ErrorCode.HANDLER_NOT_FOUND } });
    const message = r.status === 'failure' ? r.error.message : '';
    expect(message).toContain("'CustomerSuccess::StepHandlers::Nope'");
    expect(message).toContain(`'${ns}'`);
    expect(message).toContain('refund, validate');
  });

  it('a result larger than Limits.maxResultBytes is a permanent PAYLOAD_TOO_LARGE naming the size', async () => {
    const ns = await orch.namespace();
    const big = 'x'.repeat(Limits.maxResultBytes);
    await orch.worker({ namespace: ns, handlers: { big: () => ({ big }) } }).start();
    const m = orch.step(ns, 'big');
    await orch.dispatch(m);
    const r = await orch.resultFor(m.step_id);
    expect(r).toMatchObject({ status: 'failure', error: { kind: 'permanent', code: ErrorCode.PAYLOAD_TOO_LARGE } });
    expect(r.status === 'failure' && r.error.message).toContain(`${Limits.maxResultBytes + 10} bytes`);
  });

  it('a handler that ignores its signal gets HANDLER_TIMEOUT at the deadline, without waiting for it', async () => {
    const ns = await orch.namespace();
    const returned = deferred();
    let abortedWith: unknown = null;
    const handlers = {
      stubborn: async (ctx: StepContext) => {
        ctx.signal.addEventListener('abort', () => (abortedWith = ctx.signal.reason));
        await sleep(2500); // ignores the signal
        returned.resolve();
        return { late: true };
      },
    };
    await orch.worker({ namespace: ns, handlers }).start();
    const m = orch.step(ns, 'stubborn', { timeout_ms: 300 });
    await orch.dispatch(m);
    let handlerReturned = false;
    void returned.promise.then(() => (handlerReturned = true));

    const r = await orch.resultFor(m.step_id);
    expect(handlerReturned).toBe(false);
    expect(r).toMatchObject({ status: 'failure', error: { kind: 'retryable', code: ErrorCode.HANDLER_TIMEOUT } });
    expect(r.status === 'failure' && r.error.message).toContain('300 ms');
    const took = Date.parse(r.finished_at) - Date.parse(r.started_at);
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(2000);
    expect(abortedWith).toMatchObject({ code: ErrorCode.HANDLER_TIMEOUT });

    await returned.promise;
    await sleep(100);
    // Only one result: the late return is ignored.
    expect(orch.results.items.filter((x) => x.result?.step_id === m.step_id)).toHaveLength(1);
  });

  it('a timed-out handler keeps its slot until it returns, within the overrun grace period', async () => {
    const ns = await orch.namespace();
    const events: string[] = [];
    const handlers = {
      stubborn: async () => {
        events.push('stubborn started');
        await sleep(800);
        events.push('stubborn returned');
      },
      next: () => {
        events.push('next started');
      },
    };
    await orch.worker({ namespace: ns, handlers, concurrency: 1 }).start();
    const a = orch.step(ns, 'stubborn', { timeout_ms: 100 });
    const b = orch.step(ns, 'next');
    await orch.dispatch(a);
    await orch.dispatch(b);
    expect(await orch.resultFor(a.step_id)).toMatchObject({ error: { code: ErrorCode.HANDLER_TIMEOUT } });
    expect(await orch.resultFor(b.step_id)).toMatchObject({ status: 'success' });
    expect(events).toEqual(['stubborn started', 'stubborn returned', 'next started']);
  });

  it('a handler that never returns after its deadline cannot hold its slot forever', async () => {
    const ns = await orch.namespace();
    let nextAt = 0;
    const handlers = {
      hung: () => new Promise<never>(() => undefined), // ignores its signal and never settles
      next: () => {
        nextAt = Date.now();
      },
    };
    await orch.worker({ namespace: ns, handlers, concurrency: 1, overrunGraceMs: 300 }).start();
    const a = orch.step(ns, 'hung', { timeout_ms: 100 });
    const b = orch.step(ns, 'next');
    const t0 = Date.now();
    await orch.dispatch(a);
    await orch.dispatch(b);
    expect(await orch.resultFor(a.step_id)).toMatchObject({ error: { code: ErrorCode.HANDLER_TIMEOUT } });
    expect(await orch.resultFor(b.step_id)).toMatchObject({ status: 'success' });
    // The slot came free at the deadline plus the grace period, not earlier.
    expect(nextAt - t0).toBeGreaterThanOrEqual(390);
  });

  it('a step waiting for a slot is a warning only while a handler that outlived its deadline holds one', async () => {
    const ns = await orch.namespace();
    const lines: Array<{ msg: string; taskId?: string }> = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const warned = () => lines.filter((l) => l.msg === 'step waits for a slot held by a handler that outlived its deadline');
    const handlers = { quick: async () => sleep(20), hung: () => new Promise<never>(() => undefined) };
    await orch.worker({ namespace: ns, handlers, concurrency: 1, overrunGraceMs: 400, logger }).start();
    // Three steps in one message with one slot: two wait, which is normal.
    const three = [0, 1, 2].map(() => orch.step(ns, 'quick'));
    await orch.dispatchRaw(ns, JSON.stringify({ protocol_version: PROTOCOL_VERSION, message_type: 'steps', steps: three }));
    for (const m of three) expect(await orch.resultFor(m.step_id)).toMatchObject({ status: 'success' });
    expect(warned()).toHaveLength(0);
    // A handler past its deadline keeps the slot: the next step's wait is worth a warning.
    const hung = orch.step(ns, 'hung', { timeout_ms: 100 });
    await orch.dispatch(hung);
    expect(await orch.resultFor(hung.step_id)).toMatchObject({ error: { code: ErrorCode.HANDLER_TIMEOUT } });
    const after = orch.step(ns, 'quick');
    await orch.dispatch(after);
    expect(await orch.resultFor(after.step_id)).toMatchObject({ status: 'success' });
    expect(warned().map((l) => l.taskId)).toEqual([after.task_id]);
  });
});
