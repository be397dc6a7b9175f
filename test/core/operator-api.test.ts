import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { PermanentError } from '@tasker/worker';
import type { ApiTokenConfig, TaskView } from '@tasker/protocol';
import { startStack, eventually, type Stack } from '../support/stack.ts';

const TOKENS: ApiTokenConfig[] = [
  { name: 'platform', token: 'platform-token-0123456789', namespaces: ['*'], actions: ['admin'] },
  { name: 'cs-team', token: 'cs-team-token-0123456789', namespaces: ['ops_cs'], actions: ['read', 'create', 'operate'] },
  { name: 'cs-reader', token: 'cs-reader-token-012345678', namespaces: ['ops_cs'], actions: ['read'] },
];

const CS = `
name: refund
namespace_name: ops_cs
version: 1.0.0
steps:
  - { name: check, handler: { callable: check } }
  - { name: delegate, handler: { callable: delegate }, dependencies: [check] }
  - { name: close, handler: { callable: close }, dependencies: [delegate] }
`;
// A payout an operator finishes by hand: its one step waits until the test lets it go.
const HELD = `
name: payout_held
namespace_name: ops_pay
version: 1.0.0
steps:
  - { name: hold, handler: { callable: hold } }
`;
const PAY = `
name: payout
namespace_name: ops_pay
version: 1.0.0
input_schema: { type: object, required: [amount], properties: { amount: { type: number } } }
steps:
  - { name: pay, handler: { callable: pay } }
`;

describe('operator surface: HTTP API', () => {
  let stack: Stack;
  const seenSignals: string[] = [];
  let letHeldGo!: () => void;
  const heldGo = new Promise<void>((r) => (letHeldGo = r));
  let url: string;
  const call = async (method: string, path: string, token: string | null, body?: unknown) => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  const platform = TOKENS[0]!.token;
  const team = TOKENS[1]!.token;

  beforeAll(async () => {
    stack = await startStack({ apiInsecure: false, apiTokens: TOKENS });
    url = stack.orchestrator.httpUrl!;
    await stack.register(CS, PAY, HELD);
    await stack.worker({
      namespace: 'ops_cs',
      handlers: {
        check: (ctx) => {
          if (ctx.getInput('mode') === 'hang') {
            return new Promise((_, reject) => ctx.signal.addEventListener('abort', () => (seenSignals.push(ctx.taskId), reject(ctx.signal.reason))));
          }
          if (ctx.getInput('mode') === 'fail' && !ctx.getInput('fixed')) throw new PermanentError('broken check', { code: 'BROKEN' });
          return { checked: true };
        },
        delegate: async (ctx) => {
          const amount = ctx.getInput<number>('amount');
          const { task } = await ctx.createTask({ namespace: 'ops_pay', name: ctx.getInput<string>('payout') ?? 'payout', context: { amount: amount ?? 1 } });
          // Amount 6: the child finishes before this step says it waits.
          if (amount === 6) await new Promise((r) => setTimeout(r, 500));
          return ctx.waitFor(task.id);
        },
        close: (ctx) => ({ closed: true, payout: ctx.getDependencyResult('delegate') }),
      },
    });
    await stack.worker({
      namespace: 'ops_pay',
      handlers: {
        hold: async () => (await heldGo, { held: 'until the end of the tests' }),
        pay: async (ctx) => {
          // The parent's "waiting" result must land before this child finishes, or the
          // step takes the outcome at once and never waits (a path tested elsewhere).
          if (ctx.getInput<number>('amount') === 5) await new Promise((r) => setTimeout(r, 300));
          if (ctx.getInput<number>('amount') === 777) {
            return new Promise((_, reject) => ctx.signal.addEventListener('abort', () => (seenSignals.push(ctx.taskId), reject(ctx.signal.reason))));
          }
          if ((ctx.getInput<number>('amount') ?? 0) > 1000) throw new PermanentError('over the limit', { code: 'LIMIT' });
          return { paid: ctx.getInput('amount') };
        },
      },
    });
  });
  afterAll(async () => {
    letHeldGo();
    await stack?.cleanup();
  });

  const waitState = (id: string, state: string) =>
    eventually(async () => {
      const r = await call('GET', `/v1/tasks/${id}`, platform);
      return r.body.state === state ? (r.body as TaskView) : undefined;
    }, 15000, `task ${id} ${state}`);

  it('refuses without a token (401), with a bad token (401), outside the token\'s namespace or actions (403)', async () => {
    const body = { namespace: 'ops_cs', name: 'refund', context: {} };
    const none = await call('POST', '/v1/tasks', null, body);
    expect([none.status, none.body.error.code]).toEqual([401, 'UNAUTHENTICATED']);
    const bad = await call('POST', '/v1/tasks', 'nope-nope-nope-nope', body);
    expect([bad.status, bad.body.error.code]).toEqual([401, 'UNAUTHENTICATED']);
    const elsewhere = await call('POST', '/v1/tasks', team, { namespace: 'ops_pay', name: 'payout', context: { amount: 1 } });
    expect([elsewhere.status, elsewhere.body.error.code]).toEqual([403, 'FORBIDDEN']);
    expect(elsewhere.body.error.message).toMatch(/namespace 'ops_pay'/);
    const reader = await call('POST', '/v1/tasks', TOKENS[2]!.token, body);
    expect([reader.status, reader.body.error.code]).toEqual([403, 'FORBIDDEN']);
    expect(reader.body.error.message).toMatch(/may not create/);
    expect((await call('GET', '/health/ready', null)).status).toBe(200);
    // Authentication comes before any lookup or validation: nothing leaks to an anonymous caller.
    expect((await call('GET', '/v1/tasks/tsk_nope', null)).status).toBe(401);
    expect((await call('POST', '/v1/steps/stp_nope/retry', null, { reason: 'x' })).status).toBe(401);
    expect((await call('POST', '/v1/tasks', null, { bad: true })).status).toBe(401);
  });

  it("a task created over HTTP is requested by the token's name unless the request names someone, one at a time and in a batch", async () => {
    const one = await call('POST', '/v1/tasks', team, { namespace: 'ops_cs', name: 'refund', context: { amount: 1 } });
    const named = await call('POST', '/v1/tasks', team, { namespace: 'ops_cs', name: 'refund', context: { amount: 1 }, requested_by: 'billing-svc' });
    const batch = await call('POST', '/v1/tasks/batch', team, {
      tasks: [{ namespace: 'ops_cs', name: 'refund', context: { amount: 1 } }, { namespace: 'ops_cs', name: 'refund', context: { amount: 1 }, requested_by: 'nightly-job' }],
    });
    expect([one.status, named.status, batch.status]).toEqual([201, 201, 200]);
    const ids = [one.body.task.id, named.body.task.id, ...batch.body.results.map((r: { task: { id: string } }) => r.task.id)] as string[];
    const { rows } = await sql<{ id: string; requested_by: string | null }>`SELECT id, requested_by FROM tasks WHERE id = ANY(${ids}::text[])`.execute(stack.orchestrator.db);
    const by = new Map(rows.map((r) => [r.id, r.requested_by]));
    expect(ids.map((id) => by.get(id))).toEqual(['cs-team', 'billing-svc', 'cs-team', 'nightly-job']);
  });

  it('POST /v1/tasks/batch is refused whole (403, nothing created) when one task is outside the token\'s namespaces', async () => {
    const listed = async () => (await call('GET', '/v1/tasks?namespace=ops_cs&limit=200', platform)).body.items.length as number;
    const before = await listed();
    const mixed = await call('POST', '/v1/tasks/batch', team, {
      tasks: [
        { namespace: 'ops_cs', name: 'refund', context: {} },
        { namespace: 'ops_pay', name: 'payout', context: { amount: 1 } },
      ],
    });
    expect([mixed.status, mixed.body.error.code]).toEqual([403, 'FORBIDDEN']);
    expect(mixed.body.error.message).toMatch(/namespace 'ops_pay'/);
    const reader = await call('POST', '/v1/tasks/batch', TOKENS[2]!.token, { tasks: [{ namespace: 'ops_cs', name: 'refund', context: {} }] });
    expect([reader.status, reader.body.error.code]).toEqual([403, 'FORBIDDEN']);
    expect((await call('POST', '/v1/tasks/batch', null, { tasks: [] })).status).toBe(401);
    expect(await listed()).toBe(before);
  });

  it('a step waits for the child task it created; the child links both ways; the parent completes with the child result', async () => {
    const created = await call('POST', '/v1/tasks', team, { namespace: 'ops_cs', name: 'refund', context: { amount: 5 } });
    expect(created.status).toBe(201);
    const parent = await waitState(created.body.task.id, 'complete');
    const delegate = parent.steps.find((s) => s.name === 'delegate')!;
    expect(delegate.waiting_for_task_id).toBeTruthy();
    expect(delegate.result).toMatchObject({ task_id: delegate.waiting_for_task_id, results: { pay: { paid: 5 } } });
    expect(parent.steps.find((s) => s.name === 'close')!.result).toMatchObject({ payout: { results: { pay: { paid: 5 } } } });
    expect(parent.children!.map((c) => c.id)).toEqual([delegate.waiting_for_task_id]);
    const child = (await call('GET', `/v1/tasks/${delegate.waiting_for_task_id}`, platform)).body as TaskView;
    expect(child.parent?.id).toBe(parent.id);
    expect(child.parent_step_id).toBe(delegate.id);
    expect(parent.transitions!.some((t) => t.step === 'delegate' && t.to_state === 'waiting_child')).toBe(true);
  });

  it('a step that waits for a child task already complete takes its result at once, without waiting', async () => {
    const created = await call('POST', '/v1/tasks', team, { namespace: 'ops_cs', name: 'refund', context: { amount: 6 } });
    const parent = await waitState(created.body.task.id, 'complete');
    const delegate = parent.steps.find((s) => s.name === 'delegate')!;
    expect(delegate.result).toMatchObject({ task_id: delegate.waiting_for_task_id, results: { pay: { paid: 6 } } });
    const moves = parent.transitions!.filter((t) => t.step === 'delegate').map((t) => [t.from_state, t.to_state]);
    expect(moves).toEqual([[null, 'pending'], ['pending', 'enqueued'], ['enqueued', 'complete']]);
    expect(parent.transitions!.find((t) => t.step === 'delegate' && t.to_state === 'complete')!.reason).toMatch(/already complete/);
  });

  it('a child task that fails fails the waiting step with the child\'s error', async () => {
    const created = await call('POST', '/v1/tasks', team, { namespace: 'ops_cs', name: 'refund', context: { amount: 5000 } });
    const parent = await waitState(created.body.task.id, 'error');
    const delegate = parent.steps.find((s) => s.name === 'delegate')!;
    expect(delegate.state).toBe('error');
    expect(delegate.error).toMatchObject({ code: 'CHILD_TASK_FAILED', details: { step: 'pay', error: { code: 'LIMIT' } } });
    expect(parent.steps.find((s) => s.name === 'close')!.state).toBe('pending');
  });

  it('cancel while a handler runs: the handler is aborted, the task and its steps are cancelled, a late result changes nothing', async () => {
    const created = await call('POST', '/v1/tasks', team, { namespace: 'ops_cs', name: 'refund', context: { mode: 'hang' } });
    const id = created.body.task.id as string;
    await new Promise((r) => setTimeout(r, 300));
    const cancelled = await call('POST', `/v1/tasks/${id}/cancel`, team, { reason: 'customer withdrew' });
    expect(cancelled.status).toBe(200);
    expect(cancelled.body.task.state).toBe('cancelled');
    expect(cancelled.body.task.steps.map((s: { state: string }) => s.state)).toEqual(['cancelled', 'cancelled', 'cancelled']);
    await eventually(async () => (seenSignals.includes(id) ? true : undefined), 5000, 'the handler to be aborted');
    await new Promise((r) => setTimeout(r, 300));
    const after = (await call('GET', `/v1/tasks/${id}`, platform)).body as TaskView;
    expect(after.state).toBe('cancelled');
    expect(after.steps[0]!.state).toBe('cancelled');
    const t = after.transitions!.find((x) => x.step_id === null && x.to_state === 'cancelled')!;
    expect([t.actor, t.reason]).toEqual(['cs-team', 'customer withdrew']);
    const again = await call('POST', `/v1/tasks/${id}/cancel`, team, { reason: 'twice' });
    expect([again.status, again.body.error.code]).toEqual([409, 'INVALID_STATE']);
  });

  it('cancelling a parent cancels the children still running, and their handlers are aborted', async () => {
    const created = await call('POST', '/v1/tasks', team, { namespace: 'ops_cs', name: 'refund', context: { amount: 777 } });
    const id = created.body.task.id as string;
    const waiting = await eventually(async () => {
      const t = (await call('GET', `/v1/tasks/${id}`, platform)).body as TaskView;
      return t.steps[1]!.state === 'waiting_child' ? t : undefined;
    });
    const childId = waiting.steps[1]!.waiting_for_task_id!;
    expect((await call('POST', `/v1/tasks/${id}/cancel`, team, { reason: 'duplicate ticket' })).status).toBe(200);
    const child = await waitState(childId, 'cancelled');
    expect(child.steps[0]!.state).toBe('cancelled');
    expect(child.transitions!.find((t) => t.step_id === null && t.to_state === 'cancelled')!.reason).toMatch(/parent task .* was cancelled: duplicate ticket/);
    await eventually(async () => (seenSignals.includes(childId) ? true : undefined), 5000, "the child's handler to be aborted");
  });

  it('retry a failed step: the task resumes from there; resolve and complete by hand let dependents proceed; all audited', async () => {
    const created = await call('POST', '/v1/tasks', team, { namespace: 'ops_cs', name: 'refund', context: { mode: 'fail' } });
    const failed = await waitState(created.body.task.id, 'error');
    const check = failed.steps[0]!;
    expect(check.state).toBe('error');
    // Retry fails again (the input still says fail): attempt 2, task in error again.
    const retried = await call('POST', `/v1/steps/${check.id}/retry`, team, { reason: 'flaky dependency fixed' });
    expect(retried.status).toBe(200);
    const again = await eventually(async () => {
      const t = (await call('GET', `/v1/tasks/${failed.id}`, platform)).body as TaskView;
      return t.state === 'error' && t.steps[0]!.attempt === 2 ? t : undefined;
    });
    expect(again.steps[0]!.max_attempts).toBeGreaterThanOrEqual(2);
    // Resolve it by hand: delegate and close run, the task completes.
    const resolved = await call('POST', `/v1/steps/${check.id}/resolve`, team, { reason: 'checked manually' });
    expect(resolved.status).toBe(200);
    const done = await waitState(failed.id, 'complete');
    // The resolved step keeps what its last attempt left: when it started and its error.
    expect(again.steps[0]!.started_at).toBeTruthy();
    expect(done.steps[0]).toMatchObject({ state: 'complete', started_at: again.steps[0]!.started_at, error: again.steps[0]!.error });
    const audit = done.transitions!.filter((t) => t.actor === 'cs-team').map((t) => `${t.step ?? 'task'}:${t.from_state}->${t.to_state}`);
    expect(audit).toEqual(['task:error->in_progress', 'check:error->enqueued', 'task:error->in_progress', 'check:error->complete']);
    const complete = await call('POST', `/v1/steps/${check.id}/complete`, team, { reason: 'x', result: 1 });
    expect([complete.status, complete.body.error.code]).toEqual([409, 'INVALID_STATE']);
    const missing = await call('POST', '/v1/steps/stp_missing/retry', team, { reason: 'x' });
    expect([missing.status, missing.body.error.code]).toEqual([404, 'UNKNOWN_STEP']);
  });

  it('completing a child task\'s running step by hand finishes the child, and the parent step waiting for it takes its outcome', async () => {
    const created = await call('POST', '/v1/tasks', team, { namespace: 'ops_cs', name: 'refund', context: { amount: 9, payout: 'payout_held' } });
    const id = created.body.task.id as string;
    const waiting = await eventually(async () => {
      const t = (await call('GET', `/v1/tasks/${id}`, platform)).body as TaskView;
      return t.steps[1]!.state === 'waiting_child' ? t : undefined;
    });
    const childId = waiting.steps[1]!.waiting_for_task_id!;
    const hold = (await waitState(childId, 'in_progress')).steps[0]!;
    expect(hold.state).toBe('enqueued');

    const done = await call('POST', `/v1/steps/${hold.id}/complete`, platform, { reason: 'paid by phone', result: { paid: 'by phone' } });
    expect(done.status).toBe(200);
    expect(done.body.task.state).toBe('complete');
    expect(done.body.task.steps[0]).toMatchObject({ state: 'complete', attempt: 1, result: { paid: 'by phone' } });
    const child = (await call('GET', `/v1/tasks/${childId}`, platform)).body as TaskView;
    const moves = child.transitions!.map((t) => [t.step ?? 'task', t.from_state, t.to_state, t.actor ?? null, t.attempt]);
    expect(moves.slice(-2)).toEqual([
      ['hold', 'enqueued', 'complete', 'platform', 1],
      ['task', 'in_progress', 'complete', null, null],
    ]);
    expect(child.transitions!.at(-2)!.reason).toBe('completed with a result by an operator: paid by phone');

    // The child's outcome reaches the parent's waiting step, and the parent runs to its end.
    const parent = await waitState(id, 'complete');
    expect(parent.steps[1]!.result).toMatchObject({ task_id: childId, results: { hold: { paid: 'by phone' } } });
    expect(parent.steps[2]!.result).toMatchObject({ closed: true, payout: { results: { hold: { paid: 'by phone' } } } });
  });

  it('lists tasks with filters and cursor pagination, newest first, only within the token\'s namespaces', async () => {
    for (let i = 0; i < 5; i++) await call('POST', '/v1/tasks', platform, { namespace: 'ops_pay', name: 'payout', context: { amount: i } });
    const page1 = await call('GET', '/v1/tasks?namespace=ops_pay&limit=3', platform);
    expect(page1.body.items).toHaveLength(3);
    expect(page1.body.next_cursor).toBeTruthy();
    const page2 = await call('GET', `/v1/tasks?namespace=ops_pay&limit=3&cursor=${page1.body.next_cursor}`, platform);
    const ids = [...page1.body.items, ...page2.body.items].map((t: { id: string }) => t.id);
    expect(new Set(ids).size).toBe(ids.length);
    const created = [...page1.body.items, ...page2.body.items].map((t: { created_at: string }) => t.created_at);
    expect([...created].sort().reverse()).toEqual(created);
    const mine = await call('GET', '/v1/tasks?limit=500', team);
    expect(mine.body.items.every((t: { namespace: string }) => t.namespace === 'ops_cs')).toBe(true);
    expect((await call('GET', '/v1/tasks?namespace=ops_pay', team)).status).toBe(403);
    const errors = await call('GET', '/v1/tasks?state=error&namespace=ops_cs', platform);
    expect(errors.body.items.every((t: { state: string }) => t.state === 'error')).toBe(true);
    const bad = await call('GET', '/v1/tasks?cursor=garbage', platform);
    expect([bad.status, bad.body.error.code]).toEqual([400, 'INVALID_MESSAGE']);
  });

  it('templates and namespaces: list, get one version, validate without registering, register (admin only)', async () => {
    const ns = await call('GET', '/v1/namespaces', platform);
    expect(ns.body.items.map((n: { name: string }) => n.name)).toEqual(['ops_cs', 'ops_pay']);
    const list = await call('GET', '/v1/templates?namespace=ops_pay', platform);
    expect(list.body.items.map((t: { name: string; version: string }) => `${t.name}@${t.version}`).sort()).toEqual(['payout@1.0.0', 'payout_held@1.0.0']);
    const one = await call('GET', '/v1/templates/ops_pay/payout/1.0.0', platform);
    expect(one.body.definition.steps[0].name).toBe('pay');
    const yaml = PAY.replace('version: 1.0.0', 'version: 2.0.0');
    const post = (path: string, token: string, text: string) =>
      fetch(`${url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/yaml' }, body: text }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));
    const invalid = await post('/v1/templates/validate', team, yaml.replace('dependencies', 'x').replace('- { name: pay', '- { name: pay, dependencies: [ghost]'));
    expect(invalid.body.valid).toBe(false);
    expect(invalid.body.problems[0]).toMatchObject({ step: 'pay' });
    expect(invalid.body.problems[0].message).toMatch(/unknown step 'ghost'/);
    const valid = await post('/v1/templates/validate', team, yaml);
    expect(valid.body).toMatchObject({ valid: true, template: { version: '2.0.0' } });
    expect((await call('GET', '/v1/templates/ops_pay/payout/2.0.0', platform)).status).toBe(404);
    expect((await post('/v1/templates', team, yaml)).status).toBe(403);
    expect((await post('/v1/templates', platform, yaml)).status).toBe(201);
    expect((await post('/v1/templates', platform, yaml)).status).toBe(200);
    const changed = await post('/v1/templates', platform, yaml.replace('required: [amount]', 'required: []'));
    expect([changed.status, changed.body.error.code]).toEqual([409, 'INVALID_STATE']);
  });

  it('serves an OpenAPI document generated from the route shapes; errors never leak internals', async () => {
    const doc = (await call('GET', '/openapi.json', null)).body;
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toContain('/v1/tasks/{id}/cancel');
    expect(doc.paths['/v1/tasks'].post.requestBody.content['application/json'].schema.properties.namespace).toBeDefined();
    const weird = await call('GET', `/v1/tasks/${encodeURIComponent("x' OR 1=1 --")}`, platform);
    expect(weird.status).toBe(404);
    expect(JSON.stringify(weird.body)).not.toMatch(/SELECT|stack|at .*\.ts/);
  });
});
