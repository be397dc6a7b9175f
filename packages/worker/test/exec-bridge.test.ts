import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, StepResult } from '@tasker/protocol';
import { EXEC_CHILD_EXITED, ExecWorker, type ExecWorkerOptions } from '../src/index.ts';
import { parseChildLine } from '../src/exec-protocol.ts';
import { FakeOrchestrator } from './support/fake-orchestrator.ts';
import { AMQP_URL, testLogger } from '../../transport/test/support/rabbit.ts';

const CHILD = fileURLToPath(new URL('./fixtures/exec-child.mjs', import.meta.url));

let orch: FakeOrchestrator;
let dir: string;
const workers: ExecWorker[] = [];

beforeAll(async () => {
  orch = await FakeOrchestrator.open();
  dir = mkdtempSync(join(tmpdir(), 'exec-bridge-'));
});
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop()));
});
afterAll(async () => {
  await orch?.close();
  rmSync(dir, { recursive: true, force: true });
});

let logs = 0;
function execWorker(namespace: string, more: Partial<ExecWorkerOptions> = {}): { worker: ExecWorker; childLog: () => string[] } {
  const logPath = join(dir, `child-${++logs}.log`);
  const worker = new ExecWorker({
    namespace,
    command: process.execPath,
    args: [CHILD],
    amqpUrl: AMQP_URL,
    prefix: orch.prefix,
    logger: testLogger,
    restartDelayMs: 20,
    ...more,
    env: { EXEC_CHILD_LOG: logPath, ...(more.env ?? {}) },
  });
  workers.push(worker);
  const childLog = (): string[] => {
    try {
      return readFileSync(logPath, 'utf8').trim().split('\n');
    } catch {
      return [];
    }
  };
  return { worker, childLog };
}

describe('exec bridge', () => {
  it('forwards the step to the child and publishes its answer as the step result', async () => {
    const ns = await orch.namespace();
    const { worker } = execWorker(ns);
    await worker.start();
    expect(worker.handlers).toEqual(['echo', 'fail', 'sleep', 'die', 'delegate', 'wait']);
    const m = orch.step(ns, 'echo', {
      input: { amount: 49.99, text: 'héllo 😀\nline' },
      dependency_results: { validate: { ok: true } },
      handler: { callable: 'echo', method: null, initialization: { limit: 100 } },
      attempt: 2,
      idempotency_key: 'abc:2',
    });
    await orch.dispatch(m);
    const r = await orch.resultFor(m.step_id);
    const { msg: _m, receivedAt: _r, ...body } = r;
    expect(StepResult.safeParse(body).success).toBe(true);
    expect(r.status).toBe('success');
    const seen = (r as unknown as { result: { step: Record<string, unknown> } }).result.step;
    expect(seen).toEqual({
      task_id: m.task_id,
      step_id: m.step_id,
      step_name: m.step_name,
      namespace: ns,
      task_name: m.task_name,
      task_version: m.task_version,
      correlation_id: m.correlation_id,
      attempt: 2,
      max_attempts: 3,
      idempotency_key: 'abc:2',
      handler: { callable: 'echo', method: null, initialization: { limit: 100 } },
      input: { amount: 49.99, text: 'héllo 😀\nline' },
      dependency_results: { validate: { ok: true } },
    });
  });

  it("maps the child's permanent and retryable errors, with code, retry-after and details", async () => {
    const ns = await orch.namespace();
    const { worker } = execWorker(ns);
    await worker.start();
    const p = orch.step(ns, 'fail', {
      input: { error: { kind: 'permanent', code: 'INVALID_AMOUNT', message: 'amount must be positive', details: { amount: -1 } } },
    });
    const q = orch.step(ns, 'fail', {
      input: { error: { kind: 'retryable', code: 'GATEWAY_BUSY', message: 'busy', retry_after_ms: 1500 } },
    });
    await orch.dispatch(p);
    await orch.dispatch(q);
    expect(await orch.resultFor(p.step_id)).toMatchObject({
      status: 'failure',
      error: { kind: 'permanent', code: 'INVALID_AMOUNT', message: 'amount must be positive', details: { amount: -1 } },
    });
    expect(await orch.resultFor(q.step_id)).toMatchObject({
      status: 'failure',
      error: { kind: 'retryable', code: 'GATEWAY_BUSY', message: 'busy', retry_after_ms: 1500 },
    });
  });

  it('a callable the child did not name fails with HANDLER_NOT_FOUND listing the handlers it named', async () => {
    const ns = await orch.namespace();
    const { worker } = execWorker(ns);
    await worker.start();
    const m = orch.step(ns, 'refund_everything');
    await orch.dispatch(m);
    const r = await orch.resultFor(m.step_id);
    expect(r).toMatchObject({ status: 'failure', error: { kind: 'permanent', code: ErrorCode.HANDLER_NOT_FOUND } });
    const message = (r as { error: { message: string } }).error.message;
    expect(message).toContain('refund_everything');
    expect(message).toContain(ns);
    expect(message).toContain('delegate, die, echo, fail, sleep, wait');
  });

  it('concurrent steps are correlated by id whatever order the child answers in', async () => {
    const ns = await orch.namespace();
    const { worker } = execWorker(ns, { concurrency: 4 });
    await worker.start();
    const slow = orch.step(ns, 'sleep', { input: { ms: 400 } });
    const fast = orch.step(ns, 'sleep', { input: { ms: 20 } });
    await orch.dispatch(slow);
    await orch.dispatch(fast);
    const f = await orch.resultFor(fast.step_id);
    const s = await orch.resultFor(slow.step_id);
    expect(f).toMatchObject({ status: 'success', result: { slept: 20 } });
    expect(s).toMatchObject({ status: 'success', result: { slept: 400 } });
    expect(f.receivedAt).toBeLessThan(s.receivedAt);
  });

  it('a child that dies fails its in-flight steps as retryable and is restarted for the next ones', async () => {
    const ns = await orch.namespace();
    const { worker, childLog } = execWorker(ns, { concurrency: 4 });
    await worker.start();
    const running = orch.step(ns, 'sleep', { input: { ms: 2000 } });
    await orch.dispatch(running);
    await new Promise((r) => setTimeout(r, 100));
    const killer = orch.step(ns, 'die', { input: { after_ms: 50 } });
    await orch.dispatch(killer);
    for (const m of [running, killer]) {
      expect(await orch.resultFor(m.step_id)).toMatchObject({
        status: 'failure',
        error: { kind: 'retryable', code: EXEC_CHILD_EXITED },
      });
    }
    const after = orch.step(ns, 'echo');
    await orch.dispatch(after);
    const r = (await orch.resultFor(after.step_id)) as unknown as { status: string; result: { pid: number } };
    expect(r.status).toBe('success');
    const pids = childLog().filter((l) => l.startsWith('started ')).map((l) => Number(l.split(' ')[1]));
    expect(pids).toHaveLength(2);
    expect(r.result.pid).toBe(pids[1]);
  });

  it("applies the step's timeout: HANDLER_TIMEOUT at the deadline, and the child gets a cancel", async () => {
    const ns = await orch.namespace();
    const { worker, childLog } = execWorker(ns);
    await worker.start();
    const m = orch.step(ns, 'sleep', { input: { ms: 1500 }, timeout_ms: 200 });
    const t0 = Date.now();
    await orch.dispatch(m);
    const r = await orch.resultFor(m.step_id);
    expect(r).toMatchObject({ status: 'failure', error: { kind: 'retryable', code: ErrorCode.HANDLER_TIMEOUT } });
    expect(r.receivedAt - t0).toBeLessThan(1200);
    await new Promise((res) => setTimeout(res, 50));
    expect(childLog()).toContain(`cancel 1 ${ErrorCode.HANDLER_TIMEOUT}`);
  });

  it('the child creates a task in another namespace through the runtime, parented to its step', async () => {
    const ns = await orch.namespace();
    const { worker } = execWorker(ns);
    await worker.start();
    const m = orch.step(ns, 'delegate');
    await orch.dispatch(m);
    const r = (await orch.resultFor(m.step_id)) as unknown as { status: string; result: { ok: boolean; task: { id: string } } };
    expect(r.status).toBe('success');
    expect(r.result).toMatchObject({ ok: true, created: true, task: { namespace: 'payments', parent_task_id: m.task_id } });
    const req = orch.taskRequests.items.find((x) => x.request.parent?.step_id === m.step_id)!;
    expect(req.request).toMatchObject({
      namespace: 'payments',
      name: 'process_refund',
      context: { amount: 5 },
      correlation_id: m.correlation_id,
      idempotency_key: `${m.step_id}:payments.process_refund:1`,
    });
  });

  it('a child answering "waiting" makes the step wait for the task it names', async () => {
    const ns = await orch.namespace();
    const { worker } = execWorker(ns);
    await worker.start();
    const m = orch.step(ns, 'wait', { input: { task_id: 'tsk_child_1' } });
    await orch.dispatch(m);
    expect(await orch.resultFor(m.step_id)).toMatchObject({ status: 'waiting', wait_for: { task_id: 'tsk_child_1' } });
  });

  it('a child that never says hello fails start() with a sentence naming the hello', async () => {
    const ns = await orch.namespace();
    const { worker } = execWorker(ns, { startTimeoutMs: 300, env: { EXEC_CHILD_SILENT: '1' } });
    await expect(worker.start()).rejects.toThrow(/sent no hello within 300 ms/);
  });

  it('stop() lets the running step finish, then closes the child through its stdin', async () => {
    const ns = await orch.namespace();
    const { worker, childLog } = execWorker(ns, { env: { EXEC_CHILD_NOISE: '1' } });
    await worker.start();
    const m = orch.step(ns, 'sleep', { input: { ms: 300 } });
    await orch.dispatch(m);
    await new Promise((r) => setTimeout(r, 100));
    await worker.stop();
    expect(orch.results.items.some((x) => x.result?.step_id === m.step_id && x.result.status === 'success')).toBe(true);
    expect(childLog()).toContain('stdin ended');
  });
});

describe('exec bridge lines', () => {
  it('parses known messages and tells invalid lines and unknown types apart', () => {
    expect(parseChildLine('{"type":"hello","protocol":"tasker-exec/1","handlers":["a"]}')).toMatchObject({ kind: 'hello', handlers: ['a'] });
    expect(parseChildLine('{"type":"result","id":"1","status":"success","result":{"a":1}}')).toMatchObject({ kind: 'result' });
    expect(parseChildLine('{"type":"progress","id":"1"}')).toEqual({ kind: 'ignored', type: 'progress' });
    expect(parseChildLine('hello')).toMatchObject({ kind: 'invalid', problem: 'not JSON' });
    expect(parseChildLine('{"type":"hello","protocol":"tasker-exec/9","handlers":["a"]}')).toMatchObject({ kind: 'invalid' });
    expect(parseChildLine('{"type":"result","id":"1","status":"failure","error":{"kind":"maybe","message":"x"}}')).toMatchObject({
      kind: 'invalid',
    });
  });
});
