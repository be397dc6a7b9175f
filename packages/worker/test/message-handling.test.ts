import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, PROTOCOL_VERSION, type StepMessage } from '@tasker/protocol';
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

function header(msg: { properties: { headers?: Record<string, unknown> } }, name: string): string {
  const v = msg.properties.headers?.[name];
  return Buffer.isBuffer(v) ? v.toString() : String(v);
}

describe('message handling', () => {
  it('parks a malformed message in the dead letters with the reason, acks it, and goes on with the next', async () => {
    const ns = await orch.namespace();
    await orch.worker({ namespace: ns, handlers: { validate: () => 'fine' } }).start();
    await orch.dispatchRaw(ns, '{"protocol_version": 1, oops', { messageId: 'malformed-1' });
    const next = orch.step(ns, 'validate');
    await orch.dispatch(next);

    const parked = await orch.deadLetters.waitFor((m) => m.properties.messageId === 'malformed-1');
    expect(parked.content.toString()).toBe('{"protocol_version": 1, oops');
    expect(parked.fields.routingKey).toBe(`invalid.step.${ns}`);
    expect(parked.fields.exchange).toBe(`${orch.prefix}.dead`);
    expect(header(parked, 'x-tasker-code')).toBe(ErrorCode.INVALID_MESSAGE);
    expect(header(parked, 'x-tasker-reason')).toContain('step message is not valid JSON');
    expect(header(parked, 'x-tasker-source-queue')).toBe(`${orch.prefix}.steps.${ns}`);
    expect(parked.properties.deliveryMode).toBe(2);

    expect(await orch.resultFor(next.step_id)).toMatchObject({ status: 'success', result: 'fine' });
    await orch.stopWorkers();
    expect(await orch.depth(ns)).toBe(0);
  });

  it('parks messages with a wrong schema, an unknown protocol version or another namespace, each with its code', async () => {
    const ns = await orch.namespace();
    await orch.worker({ namespace: ns, handlers: { validate: () => 'fine' } }).start();
    const { attempt: _a, ...noAttempt } = orch.step(ns, 'validate');
    await orch.dispatchRaw(ns, JSON.stringify(noAttempt), { messageId: 'schema' });
    await orch.dispatchRaw(ns, JSON.stringify({ ...orch.step(ns, 'validate'), protocol_version: 2 }), { messageId: 'version' });
    await orch.dispatchRaw(ns, JSON.stringify(orch.step('someone_else', 'validate')), { messageId: 'namespace' });
    await orch.dispatchRaw(ns, '[1, 2]', { messageId: 'array' });

    const schema = await orch.deadLetters.waitFor((m) => m.properties.messageId === 'schema');
    expect(header(schema, 'x-tasker-code')).toBe(ErrorCode.INVALID_MESSAGE);
    expect(header(schema, 'x-tasker-reason')).toContain('attempt');
    const version = await orch.deadLetters.waitFor((m) => m.properties.messageId === 'version');
    expect(header(version, 'x-tasker-code')).toBe(ErrorCode.UNSUPPORTED_PROTOCOL_VERSION);
    const other = await orch.deadLetters.waitFor((m) => m.properties.messageId === 'namespace');
    expect(header(other, 'x-tasker-code')).toBe(ErrorCode.INVALID_MESSAGE);
    expect(header(other, 'x-tasker-reason')).toContain("'someone_else'");
    expect(other.fields.routingKey).toBe(`invalid.step.${ns}`);
    const array = await orch.deadLetters.waitFor((m) => m.properties.messageId === 'array');
    expect(header(array, 'x-tasker-reason')).toContain('must be a JSON object');
    // No result for any of them.
    expect(orch.results.items.filter((r) => r.msg.fields.routingKey === ns)).toHaveLength(0);
  });

  it('start() waits until the namespace queue exists, then consumes it', async () => {
    const ns = await orch.namespace(false);
    const worker = orch.worker({ namespace: ns, handlers: { validate: () => 'late queue' } });
    let started = false;
    const starting = worker.start().then(() => (started = true));
    await sleep(1500);
    expect(started).toBe(false);
    expect(worker.state).toBe('starting');
    await orch.declareNamespace(ns);
    await starting;
    expect(worker.state).toBe('running');
    const m = orch.step(ns, 'validate');
    await orch.dispatch(m);
    expect(await orch.resultFor(m.step_id)).toMatchObject({ status: 'success', result: 'late queue' });
  });

  it('stop() during the wait for the queue ends start() without consuming', async () => {
    const ns = await orch.namespace(false);
    const worker = orch.worker({ namespace: ns, handlers: { validate: () => 1 } });
    const starting = worker.start();
    await sleep(300);
    await worker.stop();
    await expect(starting).resolves.toBeUndefined();
    expect(worker.state).toBe('stopped');
  });

  it('runs `concurrency` handlers at once and never more', async () => {
    const ns = await orch.namespace();
    let running = 0;
    let most = 0;
    const gate = deferred();
    const threeRunning = deferred();
    const handlers = {
      work: async () => {
        running += 1;
        most = Math.max(most, running);
        if (running === 3) threeRunning.resolve();
        await gate.promise; // held until the test has seen how many run at once
        running -= 1;
      },
    };
    await orch.worker({ namespace: ns, handlers, concurrency: 3 }).start();
    const steps = Array.from({ length: 10 }, () => orch.step(ns, 'work'));
    for (const s of steps) await orch.dispatch(s);
    await threeRunning.promise;
    // Give a fourth handler every chance to start if the worker allowed it.
    await sleep(300);
    expect(running).toBe(3);
    gate.resolve();
    for (const s of steps) expect(await orch.resultFor(s.step_id)).toMatchObject({ status: 'success' });
    expect(most).toBe(3);
  });

  it('two workers of one namespace share its queue', async () => {
    const ns = await orch.namespace();
    // Each handler takes a while, so a worker with its one slot busy leaves the next step to the other.
    const work = () => sleep(100);
    await orch.worker({ namespace: ns, handlers: { work }, workerId: 'worker-a', concurrency: 1 }).start();
    await orch.worker({ namespace: ns, handlers: { work }, workerId: 'worker-b', concurrency: 1 }).start();
    const steps = Array.from({ length: 6 }, () => orch.step(ns, 'work'));
    for (const s of steps) await orch.dispatch(s);
    const results = await Promise.all(steps.map((s) => orch.resultFor(s.step_id)));
    expect(new Set(results.map((r) => r.worker_id))).toEqual(new Set(['worker-a', 'worker-b']));
  });
});

/** A `steps` message (several steps in one), as the orchestrator sends it with TASKER_STEPS_PER_MESSAGE above 1. */
function stepsBody(steps: unknown[]): string {
  return JSON.stringify({ protocol_version: PROTOCOL_VERSION, message_type: 'steps', steps });
}

describe('several steps in one message', () => {
  it('runs and answers each step on its own, parks a bad one alone as its own JSON, and acks the message once', async () => {
    const ns = await orch.namespace();
    const ran: string[] = [];
    await orch.worker({ namespace: ns, handlers: { validate: (ctx: StepContext) => (ran.push(ctx.stepId), `ok ${ctx.stepId}`) } }).start();
    const good = [orch.step(ns, 'validate'), orch.step(ns, 'validate')];
    const stranger: StepMessage = orch.step('someone_else', 'validate');
    await orch.dispatchRaw(ns, stepsBody([good[0], stranger, good[1]]), { messageId: 'three' });

    for (const m of good) expect(await orch.resultFor(m.step_id)).toMatchObject({ status: 'success', result: `ok ${m.step_id}` });
    const parked = await orch.deadLetters.waitFor((m) => m.content.toString().includes(stranger.step_id));
    expect(JSON.parse(parked.content.toString())).toEqual(stranger);
    expect(parked.properties.type).toBe('step');
    expect(header(parked, 'x-tasker-code')).toBe(ErrorCode.INVALID_MESSAGE);
    expect(header(parked, 'x-tasker-reason')).toMatch(/^step message 2 of 3 in a steps message .*'someone_else'/);
    expect(ran.sort()).toEqual(good.map((m) => m.step_id).sort());
    // Acked once every step was answered: nothing comes back, nothing runs twice.
    await orch.stopWorkers();
    expect(await orch.depth(ns)).toBe(0);
    expect(ran).toHaveLength(2);
  });

  it('parks a steps message whose envelope is broken whole, body unchanged', async () => {
    const ns = await orch.namespace();
    await orch.worker({ namespace: ns, handlers: { validate: () => 'fine' } }).start();
    const empty = stepsBody([]);
    await orch.dispatchRaw(ns, empty, { messageId: 'empty' });
    await orch.dispatchRaw(ns, JSON.stringify({ protocol_version: PROTOCOL_VERSION, message_type: 'steps', steps: orch.step(ns, 'validate') }), { messageId: 'object' });

    const a = await orch.deadLetters.waitFor((m) => m.properties.messageId === 'empty');
    expect(a.content.toString()).toBe(empty);
    expect(header(a, 'x-tasker-reason')).toBe('steps message: steps must be an array of 1 to 100 step messages; it has 0');
    const b = await orch.deadLetters.waitFor((m) => m.properties.messageId === 'object');
    expect(header(b, 'x-tasker-reason')).toBe('steps message: steps must be an array of 1 to 100 step messages');

    // A valid envelope whose only step is bad: that step is parked alone, as with siblings.
    const stranger = orch.step('someone_else', 'validate');
    await orch.dispatchRaw(ns, stepsBody([stranger]), { messageId: 'one' });
    const c = await orch.deadLetters.waitFor((m) => m.content.toString().includes(stranger.step_id));
    expect(JSON.parse(c.content.toString())).toEqual(stranger);
    expect(c.properties.type).toBe('step');
    expect(header(c, 'x-tasker-reason')).toMatch(/^step message 1 of 1 in a steps message is for namespace 'someone_else'/);
  });

  it('a steps message goes back whole when the worker stops with one of its steps still running; the next worker answers both', async () => {
    const ns = await orch.namespace();
    const started = deferred();
    const first = orch.worker({
      namespace: ns,
      shutdownGraceMs: 200,
      handlers: {
        quick: () => 'quick',
        long: async (ctx: StepContext) => {
          started.resolve();
          await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
          throw new Error('aborted');
        },
      },
    });
    await first.start();
    const quick = orch.step(ns, 'quick');
    const long = orch.step(ns, 'long');
    await orch.dispatchRaw(ns, stepsBody([quick, long]));
    await started.promise;
    expect(await orch.resultFor(quick.step_id)).toMatchObject({ status: 'success' });
    await first.stop();
    await sleep(100);
    expect(orch.results.items.some((r) => r.result?.step_id === long.step_id)).toBe(false);

    await orch.worker({ namespace: ns, handlers: { quick: () => 'quick again', long: () => 'long' } }).start();
    expect(await orch.resultFor(long.step_id)).toMatchObject({ status: 'success', result: 'long' });
    // The answered sibling came back with it and is answered again (the orchestrator ignores the second).
    const answers = await (async () => {
      for (let i = 0; i < 100; i++) {
        const n = orch.results.items.filter((r) => r.result?.step_id === quick.step_id);
        if (n.length >= 2) return n;
        await sleep(50);
      }
      return orch.results.items.filter((r) => r.result?.step_id === quick.step_id);
    })();
    expect(answers.map((r) => (r.result as { result?: unknown }).result)).toEqual(['quick', 'quick again']);
  });
});
