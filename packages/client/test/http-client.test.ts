import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, TaskerError, type TaskView } from '@tasker/protocol';
import { HttpTaskClient } from '../src/index.ts';

/** A fake orchestrator HTTP API: the test sets what each route answers. */
interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: unknown;
}
let server: Server;
let baseUrl: string;
let seen: Seen[] = [];
let route: (req: Seen) => { status: number; body: unknown } = () => ({ status: 500, body: {} });

function taskView(id: string, state: TaskView['state'], overrides: Partial<TaskView> = {}): TaskView {
  const now = new Date().toISOString();
  return {
    id,
    namespace: 'payments',
    name: 'process_refund',
    version: '1.0.0',
    state,
    correlation_id: 'corr',
    idempotency_key: null,
    parent_task_id: null,
    parent_step_id: null,
    created_at: now,
    context: { payment_id: 'pay_1' },
    error: null,
    updated_at: now,
    completed_at: state === 'in_progress' ? null : now,
    steps: [],
    ...overrides,
  };
}

beforeAll(async () => {
  server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      const s: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: raw ? JSON.parse(raw) : undefined };
      seen.push(s);
      const { status, body } = route(s);
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  seen = [];
});

describe('HttpTaskClient', () => {
  it('posts the snake_case CreateTaskBody with the bearer token; 201 means created', async () => {
    route = () => ({ status: 201, body: { created: true, task: taskView('t1', 'in_progress') } });
    const client = new HttpTaskClient({ baseUrl, token: 'secret' });
    const res = await client.createTask({
      namespace: 'payments',
      name: 'process_refund',
      context: { payment_id: 'pay_1' },
      idempotencyKey: 'k1',
      parent: { taskId: 'p1' },
      requestedBy: 'svc',
    });
    expect(res.created).toBe(true);
    expect(res.task.id).toBe('t1');
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ method: 'POST', url: '/v1/tasks' });
    expect(seen[0]!.headers['authorization']).toBe('Bearer secret');
    expect(seen[0]!.body).toEqual({
      namespace: 'payments',
      name: 'process_refund',
      context: { payment_id: 'pay_1' },
      idempotency_key: 'k1',
      parent: { task_id: 'p1' },
      requested_by: 'svc',
    });
  });

  it('returns created:false with the existing task on 200', async () => {
    route = () => ({ status: 200, body: { created: false, task: taskView('t1', 'complete') } });
    const res = await new HttpTaskClient({ baseUrl }).createTask({ namespace: 'payments', name: 'process_refund', context: {} });
    expect(res).toMatchObject({ created: false, task: { id: 't1', state: 'complete' } });
  });

  it('turns a 4xx error body into a TaskerError with its code and issues', async () => {
    route = () => ({
      status: 422,
      body: { error: { code: 'INVALID_CONTEXT', message: 'bad context', issues: [{ path: 'payment_id', message: 'is required' }] } },
    });
    const err = await new HttpTaskClient({ baseUrl })
      .createTask({ namespace: 'payments', name: 'process_refund', context: {} })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TaskerError);
    expect(err).toMatchObject({ code: 'INVALID_CONTEXT', message: 'bad context', issues: [{ path: 'payment_id', message: 'is required' }] });
  });

  it('refuses an invalid request without calling the server', async () => {
    const err = await new HttpTaskClient({ baseUrl })
      .createTask({ namespace: 'Bad NS', name: 'process_refund', context: {} })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.INVALID_MESSAGE, issues: [{ path: 'namespace' }] });
    expect(seen).toHaveLength(0);
  });

  it('getTask reads GET /v1/tasks/:id and maps 404 to UNKNOWN_TASK', async () => {
    route = (r) =>
      r.url === '/v1/tasks/t1'
        ? { status: 200, body: taskView('t1', 'in_progress') }
        : { status: 404, body: { error: { code: 'UNKNOWN_TASK', message: 'no task nope' } } };
    const client = new HttpTaskClient({ baseUrl });
    expect((await client.getTask('t1')).id).toBe('t1');
    const err = await client.getTask('nope').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.UNKNOWN_TASK });
  });

  it('maps a 404 without an error body to UNKNOWN_TASK too', async () => {
    route = () => ({ status: 404, body: 'not found' });
    const err = await new HttpTaskClient({ baseUrl }).getTask('nope').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.UNKNOWN_TASK });
  });

  it('waitForTask polls until the task is terminal', async () => {
    let reads = 0;
    route = () => {
      reads += 1;
      return { status: 200, body: taskView('t1', reads < 3 ? 'in_progress' : 'complete') };
    };
    const task = await new HttpTaskClient({ baseUrl }).waitForTask('t1', { timeoutMs: 5000, pollMs: 10 });
    expect(task.state).toBe('complete');
    expect(reads).toBe(3);
  });

  it('waitForTask asks the orchestrator to answer as the task ends (wait_ms) after a first plain read', async () => {
    let reads = 0;
    route = () => {
      reads += 1;
      return { status: 200, body: taskView('t1', reads < 2 ? 'in_progress' : 'complete') };
    };
    const task = await new HttpTaskClient({ baseUrl }).waitForTask('t1', { timeoutMs: 5000, pollMs: 10 });
    expect(task.state).toBe('complete');
    const urls = seen.filter((s) => s.method === 'GET').map((s) => s.url);
    expect(urls).toHaveLength(2);
    expect(urls[0]).toBe('/v1/tasks/t1');
    // What is left of timeoutMs.
    const waitMs = Number(/^\/v1\/tasks\/t1\?wait_ms=(\d+)$/.exec(urls[1]!)?.[1]);
    expect(waitMs).toBeGreaterThan(4000);
    expect(waitMs).toBeLessThanOrEqual(5000);
  });

  it('waitForTask against an orchestrator that answers wait_ms at once still reads only every pollMs', async () => {
    let reads = 0;
    route = () => {
      reads += 1;
      return { status: 200, body: taskView('t1', 'in_progress') };
    };
    await new HttpTaskClient({ baseUrl }).waitForTask('t1', { timeoutMs: 500, pollMs: 100 }).catch(() => undefined);
    // 500 ms at one read per 100 ms: about 6; a client that did not pause would read hundreds of times.
    expect(reads).toBeGreaterThanOrEqual(3);
    expect(reads).toBeLessThanOrEqual(8);
  });

  it('getTask caps waitMs at Limits.maxTaskWaitMs', async () => {
    route = () => ({ status: 200, body: taskView('t1', 'complete') });
    await new HttpTaskClient({ baseUrl }).getTask('t1', { waitMs: 3_600_000 });
    expect(seen.at(-1)!.url).toBe('/v1/tasks/t1?wait_ms=60000');
  });

  it('waitForTask stops as soon as `until` holds', async () => {
    let reads = 0;
    route = () => {
      reads += 1;
      return { status: 200, body: taskView('t1', 'in_progress', { context: { reads } }) };
    };
    const task = await new HttpTaskClient({ baseUrl }).waitForTask('t1', {
      timeoutMs: 5000,
      pollMs: 10,
      until: (t) => t.context['reads'] === 2,
    });
    expect(task.context['reads']).toBe(2);
  });

  it('waitForTask gives up after timeoutMs with the last state in the message', async () => {
    route = () => ({ status: 200, body: taskView('t1', 'in_progress') });
    const err = await new HttpTaskClient({ baseUrl }).waitForTask('t1', { timeoutMs: 100, pollMs: 20 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TaskerError);
    expect((err as Error).message).toContain('state: in_progress');
  });

  it('refuses a response that does not match the API schema', async () => {
    route = () => ({ status: 200, body: { id: 't1' } });
    const err = await new HttpTaskClient({ baseUrl }).getTask('t1').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.INVALID_MESSAGE });
  });
});
