import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, TaskerError, type TaskListItem, type TaskView, type TemplateSummary } from '@tasker/protocol';
import { HttpError, HttpTaskClient } from '../src/index.ts';

/** A fake orchestrator HTTP API that keeps each request's raw body, so YAML bodies can be checked. */
interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  raw: string;
  json: unknown;
}
let server: Server;
let baseUrl: string;
let seen: Seen[] = [];
let route: (req: Seen) => { status: number; body: unknown } = () => ({ status: 500, body: {} });

const now = new Date().toISOString();

function listItem(id: string): TaskListItem {
  return {
    id,
    namespace: 'payments',
    name: 'process_refund',
    version: '1.0.0',
    state: 'complete',
    correlation_id: 'corr',
    idempotency_key: null,
    parent_task_id: null,
    parent_step_id: null,
    created_at: now,
    updated_at: now,
    completed_at: now,
  };
}

function taskView(id: string, overrides: Partial<TaskView> = {}): TaskView {
  return { ...listItem(id), state: 'in_progress', completed_at: null, context: {}, error: null, steps: [], ...overrides };
}

const summary: TemplateSummary = {
  namespace: 'payments',
  name: 'process_refund',
  version: '1.0.0',
  description: null,
  steps: 4,
  created_at: now,
};

beforeAll(async () => {
  server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      let json: unknown;
      try {
        json = raw && req.headers['content-type'] === 'application/json' ? JSON.parse(raw) : undefined;
      } catch {
        json = undefined;
      }
      const s: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, raw, json };
      seen.push(s);
      const { status, body } = route(s);
      res.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/plain' : 'application/json' });
      res.end(typeof body === 'string' ? body : JSON.stringify(body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  seen = [];
});

describe('HttpTaskClient: listing tasks', () => {
  it('listTasks sends only the filters given, as query parameters', async () => {
    route = () => ({ status: 200, body: { items: [listItem('t1')], next_cursor: 'c2' } });
    const page = await new HttpTaskClient({ baseUrl }).listTasks({
      namespace: 'payments',
      state: 'error',
      parent_task_id: 'p1',
      created_after: '2025-01-01T00:00:00Z',
      limit: 10,
    });
    expect(page).toEqual({ items: [listItem('t1')], next_cursor: 'c2' });
    const url = new URL(seen[0]!.url, baseUrl);
    expect(url.pathname).toBe('/v1/tasks');
    expect(Object.fromEntries(url.searchParams)).toEqual({
      namespace: 'payments',
      state: 'error',
      parent_task_id: 'p1',
      created_after: '2025-01-01T00:00:00Z',
      limit: '10',
    });
  });

  it('iterateTasks follows next_cursor until it is null, keeping the filters', async () => {
    route = (r) => {
      const cursor = new URL(r.url, baseUrl).searchParams.get('cursor');
      if (!cursor) return { status: 200, body: { items: [listItem('t1'), listItem('t2')], next_cursor: 'c2' } };
      if (cursor === 'c2') return { status: 200, body: { items: [listItem('t3')], next_cursor: 'c3' } };
      return { status: 200, body: { items: [], next_cursor: null } };
    };
    const ids: string[] = [];
    for await (const t of new HttpTaskClient({ baseUrl }).iterateTasks({ namespace: 'payments', limit: 2 })) ids.push(t.id);
    expect(ids).toEqual(['t1', 't2', 't3']);
    expect(seen.map((s) => new URL(s.url, baseUrl).searchParams.get('namespace'))).toEqual(['payments', 'payments', 'payments']);
    expect(seen.map((s) => new URL(s.url, baseUrl).searchParams.get('cursor'))).toEqual([null, 'c2', 'c3']);
  });
});

describe('HttpTaskClient: operator actions', () => {
  it('cancelTask posts the reason and returns the task', async () => {
    route = () => ({ status: 200, body: { task: taskView('t1', { state: 'cancelled' }) } });
    const task = await new HttpTaskClient({ baseUrl, token: 'tok' }).cancelTask('t 1', 'customer asked');
    expect(task.state).toBe('cancelled');
    expect(seen[0]).toMatchObject({ method: 'POST', url: '/v1/tasks/t%201/cancel', json: { reason: 'customer asked' } });
    expect(seen[0]!.headers['authorization']).toBe('Bearer tok');
  });

  it('retryStep, resolveStep and completeStep post to the step routes', async () => {
    route = () => ({ status: 200, body: { task: taskView('t1') } });
    const client = new HttpTaskClient({ baseUrl });
    await client.retryStep('s1', 'gateway is back');
    await client.resolveStep('s2', 'done by hand');
    await client.completeStep('s3', { refund_id: 'r1' }, 'refunded by phone');
    expect(seen.map((s) => [s.method, s.url, s.json])).toEqual([
      ['POST', '/v1/steps/s1/retry', { reason: 'gateway is back' }],
      ['POST', '/v1/steps/s2/resolve', { reason: 'done by hand' }],
      ['POST', '/v1/steps/s3/complete', { reason: 'refunded by phone', result: { refund_id: 'r1' } }],
    ]);
  });

  it('a 409 becomes an HttpError with the code, the message and status 409', async () => {
    route = () => ({ status: 409, body: { error: { code: 'INVALID_STATE', message: "step 's1' is complete, not error" } } });
    const err = await new HttpTaskClient({ baseUrl }).retryStep('s1', 'why').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HttpError);
    expect(err).toBeInstanceOf(TaskerError);
    expect(err).toMatchObject({ status: 409, code: 'INVALID_STATE', message: "step 's1' is complete, not error" });
  });
});

describe('HttpTaskClient: errors carry the HTTP status', () => {
  it('401 and 403 keep the server code and status', async () => {
    route = (r) =>
      r.headers['authorization']
        ? { status: 403, body: { error: { code: 'FORBIDDEN', message: "token 'ops' may not read namespace 'payments'" } } }
        : { status: 401, body: { error: { code: 'UNAUTHENTICATED', message: 'missing bearer token' } } };
    const e401 = await new HttpTaskClient({ baseUrl }).getTask('t1').catch((e: unknown) => e);
    expect(e401).toMatchObject({ status: 401, code: 'UNAUTHENTICATED' });
    const e403 = await new HttpTaskClient({ baseUrl, token: 'x' }).getTask('t1').catch((e: unknown) => e);
    expect(e403).toMatchObject({ status: 403, code: 'FORBIDDEN', message: "token 'ops' may not read namespace 'payments'" });
  });

  it('400 keeps every issue', async () => {
    const issues = [
      { path: 'payment_id', message: 'is required' },
      { path: 'refund_amount', message: 'must be > 0' },
    ];
    route = () => ({ status: 400, body: { error: { code: 'INVALID_CONTEXT', message: 'bad context', issues } } });
    const err = await new HttpTaskClient({ baseUrl })
      .createTask({ namespace: 'payments', name: 'process_refund', context: {} })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 400, code: ErrorCode.INVALID_CONTEXT, issues });
  });

  it('an error without a JSON body gets a code from its status', async () => {
    route = () => ({ status: 502, body: 'Bad Gateway' });
    const err = await new HttpTaskClient({ baseUrl }).listNamespaces().catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 502, code: ErrorCode.INTERNAL });
    expect((err as Error).message).toContain('HTTP 502');
  });

  it('a 200 that does not match the schema is an HttpError INVALID_MESSAGE with status 200', async () => {
    route = () => ({ status: 200, body: { items: 'nope' } });
    const err = await new HttpTaskClient({ baseUrl }).listTemplates().catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 200, code: ErrorCode.INVALID_MESSAGE });
  });

  it('a refused connection is thrown as fetch throws it', async () => {
    const err = await new HttpTaskClient({ baseUrl: 'http://127.0.0.1:1' }).getTask('t1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TypeError);
    expect(err).not.toBeInstanceOf(TaskerError);
  });
});

describe('HttpTaskClient: namespaces and templates', () => {
  it('listNamespaces and listTemplates return the items', async () => {
    route = (r) =>
      r.url.startsWith('/v1/namespaces')
        ? { status: 200, body: { items: [{ name: 'payments', templates: 1, created_at: now }] } }
        : { status: 200, body: { items: [summary] } };
    const client = new HttpTaskClient({ baseUrl });
    expect(await client.listNamespaces()).toEqual([{ name: 'payments', templates: 1, created_at: now }]);
    expect(await client.listTemplates('payments')).toEqual([summary]);
    expect(await client.listTemplates()).toEqual([summary]);
    expect(seen.map((s) => s.url)).toEqual(['/v1/namespaces', '/v1/templates?namespace=payments', '/v1/templates']);
  });

  it('getTemplate reads one version with its definition; 404 keeps the code', async () => {
    route = (r) =>
      r.url === '/v1/templates/payments/process_refund/1.0.0'
        ? { status: 200, body: { template: summary, definition: { name: 'process_refund', steps: [] } } }
        : { status: 404, body: { error: { code: 'UNKNOWN_VERSION', message: 'no version 9.9.9' } } };
    const client = new HttpTaskClient({ baseUrl });
    const detail = await client.getTemplate('payments', 'process_refund', '1.0.0');
    expect(detail).toEqual({ template: summary, definition: { name: 'process_refund', steps: [] } });
    const err = await client.getTemplate('payments', 'process_refund', '9.9.9').catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 404, code: 'UNKNOWN_VERSION' });
  });

  it('validateTemplate and registerTemplate send the YAML text as application/yaml', async () => {
    const yaml = 'name: x\nnamespace_name: payments\nversion: 1.0.0\nsteps: []\n';
    route = (r) =>
      r.url === '/v1/templates/validate'
        ? {
            status: 200,
            body: {
              valid: false,
              template: null,
              problems: [{ origin: '(template)', step: null, message: 'a template needs at least one step', code: 'TEMPLATE_INVALID' }],
            },
          }
        : { status: 201, body: { created: true, template: summary } };
    const client = new HttpTaskClient({ baseUrl });
    const v = await client.validateTemplate(yaml);
    expect(v.valid).toBe(false);
    expect(v.problems[0]!.message).toContain('at least one step');
    expect(await client.registerTemplate(yaml)).toEqual({ created: true, template: summary });
    for (const s of seen) {
      expect(s.method).toBe('POST');
      expect(s.headers['content-type']).toBe('application/yaml');
      expect(s.raw).toBe(yaml);
    }
  });

  it('registerTemplate of an invalid template is a 400 TEMPLATE_INVALID with its issues', async () => {
    route = () => ({
      status: 400,
      body: {
        error: { code: 'TEMPLATE_INVALID', message: "step 'b': depends on unknown step 'z'", issues: [{ path: 'steps.b', message: "depends on unknown step 'z'" }] },
      },
    });
    const err = await new HttpTaskClient({ baseUrl }).registerTemplate('x: 1').catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 400, code: 'TEMPLATE_INVALID', issues: [{ path: 'steps.b' }] });
  });
});
