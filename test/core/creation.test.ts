import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { sql, type CompiledQuery, type QueryExecutor } from 'kysely';
import { PROTOCOL_VERSION, TaskReplies, TaskReply, parseTemplate } from '@tasker/protocol';
import { AmqpTaskRequester, HttpTaskClient } from '@tasker/client';
import pino from 'pino';
import { createDb, type Db } from '@tasker/orchestrator';
import { startStack, eventually, type Stack } from '../support/stack.ts';
import { DeadLetterReader } from '../support/dead-letters.ts';
import { createTasks, timeOrderedId } from '../../packages/orchestrator/src/tasks/create-tasks.ts';
import { ContextValidator } from '../../packages/orchestrator/src/tasks/context-validator.ts';

const V1 = `
name: order
namespace_name: shop
version: 1.0.0
input_schema:
  type: object
  required: [order_id, amount]
  properties:
    order_id: { type: string, minLength: 3 }
    amount: { type: number, minimum: 0 }
    email: { type: string, format: email }
steps:
  - name: charge
    handler: { callable: charge }
`;
const V2 = V1.replace('version: 1.0.0', 'version: 1.10.0');
// Two roots (a, e); b and c after a; d after b and c.
const FANOUT = `
name: fanout
namespace_name: shop
version: 1.0.0
steps:
  - { name: a, handler: { callable: noop } }
  - { name: b, handler: { callable: noop }, dependencies: [a] }
  - { name: c, handler: { callable: noop }, dependencies: [a] }
  - { name: d, handler: { callable: noop }, dependencies: [b, c] }
  - { name: e, handler: { callable: noop } }
`;

describe('task creation', () => {
  let stack: Stack;
  const count = async () =>
    (await sql<{ n: number }>`SELECT count(*)::int AS n FROM tasks`.execute(stack.orchestrator.db)).rows[0]!.n;

  beforeAll(async () => {
    stack = await startStack();
    await stack.register(V1, V2, FANOUT);
  });
  afterAll(async () => stack?.cleanup());

  it('a request without a version gets the newest registered version', async () => {
    const [o] = await stack.orchestrator.createTasks([{ namespace: 'shop', name: 'order', context: { order_id: 'o-1', amount: 3 } }]);
    expect(o!.ok && o!.task.version).toBe('1.10.0');
    const [p] = await stack.orchestrator.createTasks([{ namespace: 'shop', name: 'order', version: '1.0.0', context: { order_id: 'o-2', amount: 3 } }]);
    expect(p!.ok && p!.task.version).toBe('1.0.0');
    // The rows keep the version of the template each task was made from.
    const ids = [o, p].map((x) => (x!.ok ? x!.task.id : ''));
    const { rows } = await sql<{ id: string; version: string; template_version: string }>`
      SELECT t.id, t.version, tp.version AS template_version FROM tasks t JOIN templates tp ON tp.id = t.template_id
      WHERE t.id = ANY(${ids}::text[])`.execute(stack.orchestrator.db);
    const byId = new Map(rows.map((r) => [r.id, r]));
    expect(ids.map((id) => [byId.get(id)?.version, byId.get(id)?.template_version])).toEqual([['1.10.0', '1.10.0'], ['1.0.0', '1.0.0']]);
  });

  it('a request without a version gets the newest also when another orchestrator registered it after this one last asked, and only the newest is written', async () => {
    const HELD = `
name: held
namespace_name: shop
version: 2.0.0
steps:
  - { name: first, handler: { callable: noop } }
`;
    await stack.register(HELD);
    const resolve = vi.spyOn(stack.orchestrator.registry, 'resolve');
    try {
      // The first creation asks the database which version is newest; the next takes the
      // version it holds, and the creation statement checks that it still is.
      const [a] = await stack.orchestrator.createTasks([{ namespace: 'shop', name: 'held', context: {} }]);
      const [b] = await stack.orchestrator.createTasks([{ namespace: 'shop', name: 'held', context: {} }]);
      expect([a, b].map((o) => o!.ok && o!.task.version)).toEqual(['2.0.0', '2.0.0']);
      expect(resolve).toHaveBeenCalledTimes(1);

      const other = await stack.another();
      await other.registerTemplates([parseTemplate(HELD.replace('version: 2.0.0', 'version: 2.1.0').replace('name: first', 'name: second'))]);
      const before = await count();
      const [c] = await stack.orchestrator.createTasks([{ namespace: 'shop', name: 'held', context: {} }]);
      expect(c!.ok && c!.task.version).toBe('2.1.0');
      expect(resolve).toHaveBeenCalledTimes(2);
      // The attempt with the version held wrote nothing: one task, with the newest's steps.
      expect(await count()).toBe(before + 1);
      const { rows } = await sql<{ name: string }>`SELECT s.name FROM steps s WHERE s.task_id = ${c!.ok ? c!.task.id : ''}`.execute(stack.orchestrator.db);
      expect(rows.map((r) => r.name)).toEqual(['second']);
    } finally {
      resolve.mockRestore();
    }
  });

  it('a context judged by the schema of a version held as the newest is judged again by the newest when refused', async () => {
    const JUDGED = `
name: judged
namespace_name: shop
version: 1.0.0
input_schema: { type: object, required: [a] }
steps:
  - { name: only, handler: { callable: noop } }
`;
    await stack.register(JUDGED);
    const [first] = await stack.orchestrator.createTasks([{ namespace: 'shop', name: 'judged', context: { a: 1 } }]);
    expect(first!.ok && first!.task.version).toBe('1.0.0');
    // Another orchestrator registers 1.1.0, whose schema wants b instead of a.
    const other = await stack.another();
    await other.registerTemplates([parseTemplate(JUDGED.replace('version: 1.0.0', 'version: 1.1.0').replace('required: [a]', 'required: [b]'))]);
    const outcomes = await stack.orchestrator.createTasks([
      { namespace: 'shop', name: 'judged', context: { b: 1 } },
      { namespace: 'shop', name: 'judged', context: { a: 1 } },
    ]);
    expect(outcomes.map((o) => (o.ok ? o.task.version : o.error.code))).toEqual(['1.1.0', 'INVALID_CONTEXT']);
    expect(!outcomes[1]!.ok && outcomes[1]!.error.message).toMatch(/judged@1\.1\.0: b is required/);
  });

  it('the same idempotency key returns the existing task, also when asked concurrently', async () => {
    const req = { namespace: 'shop', name: 'order', context: { order_id: 'o-3', amount: 1 }, idempotency_key: 'key-1' };
    const before = await count();
    const results = await Promise.all([
      stack.orchestrator.createTasks([req, req]),
      stack.orchestrator.createTasks([req]),
      stack.orchestrator.submitTask(req).then((o) => [o]),
    ]);
    const flat = results.flat();
    const ids = new Set(flat.map((o) => (o.ok ? o.task.id : 'refused')));
    expect(ids.size).toBe(1);
    expect(flat.filter((o) => o.ok && o.created)).toHaveLength(1);
    expect(await count()).toBe(before + 1);
  });

  it('a batch with a taken idempotency key creates the others once, with their steps, audit rows and first step message', async () => {
    const key = `taken-${Math.random().toString(36).slice(2, 8)}`;
    const rows = async (q: ReturnType<typeof sql<{ n: number }>>) => (await q.execute(stack.orchestrator.db)).rows[0]!.n;
    const [first] = await stack.orchestrator.createTasks([{ namespace: 'shop', name: 'order', context: { order_id: 'tk-1', amount: 1 }, idempotency_key: key }]);
    const outboxBefore = await rows(sql<{ n: number }>`SELECT count(*)::int AS n FROM outbox`);
    const outcomes = await stack.orchestrator.createTasks([
      { namespace: 'shop', name: 'order', context: { order_id: 'tk-2', amount: 2 } },
      { namespace: 'shop', name: 'order', context: { order_id: 'tk-1', amount: 1 }, idempotency_key: key },
    ]);
    expect(outcomes.map((o) => (o.ok ? o.created : o.error.code))).toEqual([true, false]);
    expect(outcomes[1]!.ok && first!.ok && outcomes[1]!.task.id).toBe(first!.ok && first!.task.id);
    const fresh = outcomes[0]!.ok ? outcomes[0]!.task.id : '';
    expect(await rows(sql<{ n: number }>`SELECT count(*)::int AS n FROM tasks WHERE context->>'order_id' = 'tk-2'`)).toBe(1);
    expect(await rows(sql<{ n: number }>`SELECT count(*)::int AS n FROM steps WHERE task_id = ${fresh}`)).toBe(1);
    // The task's creation and its step's two: created pending, then enqueued.
    expect(await rows(sql<{ n: number }>`SELECT count(*)::int AS n FROM transitions WHERE task_id = ${fresh}`)).toBe(3);
    // Its first step message went out once (its outbox row may already be confirmed and deleted).
    expect((await rows(sql<{ n: number }>`SELECT count(*)::int AS n FROM outbox`)) - outboxBefore).toBeLessThanOrEqual(1);
  });

  it('task and step ids carry their creation time first, so later ids sort after earlier ones, in JavaScript and in Postgres', async () => {
    // The time part alone: fixed width, so a number with more base-36 digits still sorts after.
    expect(timeOrderedId('tsk_', 35)).toMatch(/^tsk_00000000z[0-9a-z]{11}$/);
    expect(timeOrderedId('tsk_', 36) > timeOrderedId('tsk_', 35)).toBe(true);
    expect(timeOrderedId('tsk_', 36 ** 9 - 1).slice(4, 13)).toBe('zzzzzzzzz');

    const created = async (order: string) => {
      const before = Date.now();
      const [o] = await stack.orchestrator.createTasks([{ namespace: 'shop', name: 'fanout', version: '1.0.0', context: { order } }]);
      if (!o!.ok) throw o!.error;
      return { id: o!.task.id, before, after: Date.now() };
    };
    const first = await created('ids-1');
    await new Promise((r) => setTimeout(r, 3));
    const second = await created('ids-2');
    const stepsOf = async (taskId: string) =>
      (await sql<{ id: string }>`SELECT id FROM steps WHERE task_id = ${taskId} ORDER BY id`.execute(stack.orchestrator.db)).rows.map((r) => r.id);
    const steps = [await stepsOf(first.id), await stepsOf(second.id)];
    for (const { id, before, after } of [first, second]) {
      expect(id).toMatch(/^tsk_[0-9a-z]{20}$/);
      const at = parseInt(id.slice(4, 13), 36);
      expect(at).toBeGreaterThanOrEqual(before);
      expect(at).toBeLessThanOrEqual(after);
    }
    for (const ids of steps) {
      expect(ids).toHaveLength(5);
      for (const id of ids) expect(id).toMatch(/^stp_[0-9a-z]{20}$/);
      // Each its own, though made in the same millisecond: the random part keeps them apart.
      expect(new Set(ids.map((id) => id.slice(13))).size).toBe(5);
    }
    expect(second.id > first.id).toBe(true);
    // Every step of the later task after every step of the earlier one.
    expect(steps[1]![0]! > steps[0]![4]!).toBe(true);
    // Postgres orders them the same way (bytewise, COLLATE "C"), which is what puts new keys at the right-hand end of its indexes.
    const { rows } = await sql<{ id: string }>`SELECT id FROM tasks WHERE id IN (${second.id}, ${first.id}) ORDER BY id`.execute(stack.orchestrator.db);
    expect(rows.map((r) => r.id)).toEqual([first.id, second.id]);
  });

  it('every column a creation writes arrives in its place, with the optional ones set and left out', async () => {
    const [parentOutcome] = await stack.orchestrator.createTasks([{ namespace: 'shop', name: 'order', context: { order_id: 'o-par', amount: 1 } }]);
    if (!parentOutcome!.ok) throw parentOutcome!.error;
    const parent = parentOutcome!.task;
    const { rows: parentSteps } = await sql<{ id: string }>`SELECT id FROM steps WHERE task_id = ${parent.id}`.execute(stack.orchestrator.db);
    const key = `all-${Math.random().toString(36).slice(2, 8)}`;
    const context = { n: 7, quote: "it's \\ $j$ é", list: [1, null, { deep: true }] };
    const outcomes = await stack.orchestrator.createTasks([
      {
        namespace: 'shop', name: 'fanout', version: '1.0.0', context, idempotency_key: key, correlation_id: 'corr-all',
        parent: { task_id: parent.id, step_id: parentSteps[0]!.id }, requested_by: 'billing-service',
      },
      { namespace: 'shop', name: 'fanout', context: {} },
    ]);
    const [full, bare] = outcomes.map((o) => {
      if (!o.ok) throw o.error;
      return o.task.id;
    });
    const { rows: tasks } = await sql<Record<string, unknown>>`
      SELECT t.id, t.namespace, t.name, t.version, tp.name AS template, t.state, t.context, t.correlation_id, t.idempotency_key,
             t.parent_task_id, t.parent_step_id, t.requested_by
      FROM tasks t JOIN templates tp ON tp.id = t.template_id WHERE t.id = ANY(${[full!, bare!]}::text[]) ORDER BY t.id = ${bare!}`.execute(stack.orchestrator.db);
    expect(tasks).toEqual([
      { id: full, namespace: 'shop', name: 'fanout', version: '1.0.0', template: 'fanout', state: 'in_progress', context, correlation_id: 'corr-all',
        idempotency_key: key, parent_task_id: parent.id, parent_step_id: parentSteps[0]!.id, requested_by: 'billing-service' },
      { id: bare, namespace: 'shop', name: 'fanout', version: '1.0.0', template: 'fanout', state: 'in_progress', context: {}, correlation_id: bare,
        idempotency_key: null, parent_task_id: null, parent_step_id: null, requested_by: null },
    ]);
    const { rows: steps } = await sql<Record<string, unknown>>`
      SELECT s.name, s.position, s.state, s.attempt, s.max_attempts, s.deps_pending, s.enqueued_at IS NOT NULL AS enqueued,
             ARRAY(SELECT d.name FROM steps d WHERE d.id = ANY(s.dependents) ORDER BY d.name) AS dependents
      FROM steps s WHERE s.task_id = ${full!} ORDER BY s.position`.execute(stack.orchestrator.db);
    const step = (name: string, position: number, deps: number, dependents: string[]) =>
      deps === 0
        ? { name, position, state: 'enqueued', attempt: 1, max_attempts: 3, deps_pending: 0, enqueued: true, dependents }
        : { name, position, state: 'pending', attempt: 0, max_attempts: 3, deps_pending: deps, enqueued: false, dependents };
    expect(steps).toEqual([step('a', 0, 0, ['b', 'c']), step('e', 1, 0, []), step('b', 2, 1, ['d']), step('c', 3, 1, ['d']), step('d', 4, 2, [])]);
  });

  it("a created task's audit: its creation, then each step created pending in order, each root then enqueued", async () => {
    const outcomes = await stack.orchestrator.createTasks([
      { namespace: 'shop', name: 'fanout', context: { n: 1 } },
      { namespace: 'shop', name: 'fanout', context: { n: 2 } },
    ]);
    for (const o of outcomes) {
      if (!o.ok) throw o.error;
      const { rows } = await sql<{ step: string | null; from_state: string | null; to_state: string; attempt: number | null; reason: string; actor: string | null }>`
        SELECT s.name AS step, x.from_state, x.to_state, x.attempt, x.reason, x.actor
        FROM transitions x LEFT JOIN steps s ON s.id = x.step_id
        WHERE x.task_id = ${o.task.id} ORDER BY x.id`.execute(stack.orchestrator.db);
      // Steps in their positions (the compiled template's order: here a, e, b, c, d).
      const { rows: steps } = await sql<{ name: string }>`SELECT name FROM steps WHERE task_id = ${o.task.id} ORDER BY position`.execute(stack.orchestrator.db);
      expect(steps.map((x) => x.name).sort()).toEqual(['a', 'b', 'c', 'd', 'e']);
      const created = (step: string) => ({ step, from_state: null, to_state: 'pending', attempt: null, reason: 'task created', actor: null });
      const enqueued = (step: string) => ({ step, from_state: 'pending', to_state: 'enqueued', attempt: 1, reason: 'no dependencies', actor: null });
      expect(rows).toEqual([
        { step: null, from_state: null, to_state: 'in_progress', attempt: null, reason: 'task created', actor: null },
        ...steps.flatMap(({ name }) => (name === 'a' || name === 'e' ? [created(name), enqueued(name)] : [created(name)])),
      ]);
    }
  });

  it('with several steps to a message, a task with an idempotency key gets messages of its own, so a taken key leaves no message carrying another task', async () => {
    const taken = `pack-taken-${Math.random().toString(36).slice(2, 8)}`;
    const free = `pack-free-${Math.random().toString(36).slice(2, 8)}`;
    const deps = { db: stack.orchestrator.db, registry: stack.orchestrator.registry, validator: new ContextValidator(), names: stack.orchestrator.names, logger: pino({ level: 'silent' }), stepsPerMessage: 16 };
    const [first] = (await createTasks(deps, [{ namespace: 'shop', name: 'order', context: { order_id: 'pk-0', amount: 1 }, idempotency_key: taken }])).outcomes;
    const { outcomes, outbox } = await createTasks(deps, [
      { namespace: 'shop', name: 'order', context: { order_id: 'pk-1', amount: 1 } },
      { namespace: 'shop', name: 'order', context: { order_id: 'pk-0', amount: 1 }, idempotency_key: taken },
      { namespace: 'shop', name: 'order', context: { order_id: 'pk-2', amount: 2 } },
      { namespace: 'shop', name: 'order', context: { order_id: 'pk-3', amount: 3 }, idempotency_key: free },
    ]);
    expect(outcomes.map((o) => (o.ok ? o.created : o.error.code))).toEqual([true, false, true, true]);
    expect(outcomes[1]!.ok && first!.ok && outcomes[1]!.task.id).toBe(first!.ok && first!.task.id);
    const ids = outcomes.map((o) => (o.ok ? o.task.id : ''));
    // Which tasks each message written carries steps of: the two without a key together, the
    // free key's alone, none of the taken key's task.
    const carried = outbox.map((m) => {
      const body = JSON.parse(m.body) as { message_type: string; task_id?: string; steps?: Array<{ task_id: string }> };
      return [...new Set(body.message_type === 'steps' ? body.steps!.map((s) => s.task_id) : [body.task_id!])].sort();
    });
    expect(carried.sort((a, b) => a.length - b.length)).toEqual([[ids[3]], [ids[0], ids[2]].sort()]);
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM outbox WHERE id = ANY(${outbox.map((m) => m.id)}::bigint[])`.execute(stack.orchestrator.db);
    expect(rows[0]!.n).toBe(2);
  });

  it('when the task of a taken key cannot be read back, only that request is refused (retry with the key), and the other tasks of the batch stand', async () => {
    const key = `unreadable-${Math.random().toString(36).slice(2, 8)}`;
    const [first] = await stack.orchestrator.createTasks([{ namespace: 'shop', name: 'order', context: { order_id: 'ur-0', amount: 1 }, idempotency_key: key }]);
    // The database as the orchestrator's, except that the read of taken keys' tasks fails (a
    // connection lost after the creation committed).
    const real = stack.orchestrator.db.getExecutor();
    const failing = new Proxy(real, {
      get(target, prop, receiver) {
        if (prop === 'executeQuery') {
          return (q: CompiledQuery, id: unknown) =>
            q.sql.includes('(namespace, idempotency_key) IN')
              ? Promise.reject(new Error('Connection terminated unexpectedly'))
              : (target.executeQuery as (q: CompiledQuery, id: unknown) => Promise<unknown>).call(target, q, id);
        }
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    }) as QueryExecutor;
    const db = { getExecutor: () => failing } as unknown as Db;
    const deps = { db, registry: stack.orchestrator.registry, validator: new ContextValidator(), names: stack.orchestrator.names, logger: pino({ level: 'silent' }) };
    const { outcomes, outbox } = await createTasks(deps, [
      { namespace: 'shop', name: 'order', context: { order_id: 'ur-1', amount: 1 } },
      { namespace: 'shop', name: 'order', context: { order_id: 'ur-0', amount: 1 }, idempotency_key: key },
    ]);
    expect(outcomes[0]!.ok && outcomes[0]!.created).toBe(true);
    expect(!outcomes[1]!.ok && outcomes[1]!.error.code).toBe('INTERNAL');
    expect(!outcomes[1]!.ok && outcomes[1]!.error.message).toMatch(/retry with the same key/);
    expect(outbox).toHaveLength(1);
    const created = outcomes[0]!.ok ? outcomes[0]!.task.id : '';
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM steps WHERE task_id = ${created} AND state = 'enqueued'`.execute(stack.orchestrator.db);
    expect(rows[0]!.n).toBe(1);
    // Asked again with the same key, the existing task comes back.
    const [again] = await stack.orchestrator.createTasks([{ namespace: 'shop', name: 'order', context: { order_id: 'ur-0', amount: 1 }, idempotency_key: key }]);
    expect(again!.ok && !again!.created && again!.task.id).toBe(first!.ok && first!.task.id);
  });

  it('a context that breaks the input schema is refused naming every field, and no task row exists', async () => {
    const before = await count();
    const [o] = await stack.orchestrator.createTasks([
      { namespace: 'shop', name: 'order', context: { order_id: 'x', amount: -1, email: 'not-an-email' } },
    ]);
    expect(o!.ok).toBe(false);
    if (o!.ok) return;
    expect(o!.error.code).toBe('INVALID_CONTEXT');
    expect(o!.error.issues.map((i) => i.path).sort()).toEqual(['amount', 'email', 'order_id']);
    const [m] = await stack.orchestrator.createTasks([{ namespace: 'shop', name: 'order', context: {} }]);
    expect(!m!.ok && m!.error.issues.map((i) => `${i.path} ${i.message}`).sort()).toEqual(['amount is required', 'order_id is required']);
    expect(await count()).toBe(before);
  });

  it('unknown namespace, template and version are refused with distinct codes', async () => {
    const outcomes = await stack.orchestrator.createTasks([
      { namespace: 'nobody', name: 'order', context: {} },
      { namespace: 'shop', name: 'refund', context: {} },
      { namespace: 'shop', name: 'order', version: '9.9.9', context: {} },
    ]);
    expect(outcomes.map((o) => (o.ok ? 'ok' : o.error.code))).toEqual(['UNKNOWN_NAMESPACE', 'UNKNOWN_TEMPLATE', 'UNKNOWN_VERSION']);
    expect(!outcomes[2]!.ok && outcomes[2]!.error.message).toMatch(/registered: 1\.0\.0, 1\.10\.0|registered: 1\.10\.0, 1\.0\.0/);
  });

  it('a refused request in a batch does not stop the others', async () => {
    const outcomes = await stack.orchestrator.createTasks([
      { namespace: 'shop', name: 'order', context: { order_id: 'ok-1', amount: 1 } },
      { namespace: 'shop', name: 'order', context: { amount: 1 } },
      { namespace: 'shop', name: 'order', context: { order_id: 'ok-2', amount: 2 }, parent: { task_id: 'tsk_missing' } },
      { namespace: 'shop', name: 'order', context: { order_id: 'ok-3', amount: 3 } },
    ]);
    expect(outcomes.map((o) => (o.ok ? 'ok' : o.error.code))).toEqual(['ok', 'INVALID_CONTEXT', 'UNKNOWN_TASK', 'ok']);
  });

  it('HTTP: 201 on create, 200 with the same task on a repeated key, 400 and 404 with codes', async () => {
    const url = stack.orchestrator.httpUrl!;
    const post = (body: unknown) =>
      fetch(`${url}/v1/tasks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const body = { namespace: 'shop', name: 'order', context: { order_id: 'h-1', amount: 5 }, idempotency_key: 'http-1' };
    const a = await post(body);
    expect(a.status).toBe(201);
    const ja = (await a.json()) as { task: { id: string; steps: Array<Record<string, unknown>> } & Record<string, unknown> };
    expect(ja.task.steps).toHaveLength(1);
    // The answer is the task as created (not read back); it agrees with what GET shows.
    const got = (await (await fetch(`${url}/v1/tasks/${ja.task.id}`)).json()) as typeof ja.task;
    const fixed = (t: Record<string, unknown>) => [t['id'], t['namespace'], t['name'], t['version'], t['correlation_id'], t['idempotency_key'], t['created_at'], t['context']];
    expect(fixed(ja.task)).toEqual(fixed(got));
    const stepFixed = (s: Record<string, unknown>) => [s['id'], s['name'], s['max_attempts'], s['dependencies'], s['handler_callable']];
    expect(ja.task.steps.map(stepFixed)).toEqual(got.steps.map(stepFixed));
    expect(ja.task.steps[0]).toMatchObject({ state: 'enqueued', attempt: 1, enqueued_at: ja.task['created_at'], result: null });
    const b = await post(body);
    expect(b.status).toBe(200);
    expect(((await b.json()) as { task: { id: string } }).task.id).toBe(ja.task.id);
    const bad = await post({ namespace: 'shop', name: 'order', context: { amount: 'x' } });
    expect(bad.status).toBe(400);
    const jb = (await bad.json()) as { error: { code: string; issues: Array<{ path: string }> } };
    expect(jb.error.code).toBe('INVALID_CONTEXT');
    expect(jb.error.issues.map((i) => i.path).sort()).toEqual(['amount', 'order_id']);
    expect((await post({ namespace: 'shop', name: 'nope', context: {} })).status).toBe(404);
    const malformed = await post({ name: 5 });
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as { error: { code: string } }).error.code).toBe('INVALID_MESSAGE');
    const get = await fetch(`${url}/v1/tasks/${ja.task.id}`);
    expect(get.status).toBe(200);
    const missing = await fetch(`${url}/v1/tasks/tsk_nope`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('UNKNOWN_TASK');
    const ready = await fetch(`${url}/health/ready`);
    expect(ready.status).toBe(200);
  });

  it('HTTP: POST /v1/tasks/batch creates or refuses each task on its own, in order, with the status POST /v1/tasks would give it', async () => {
    const client = new HttpTaskClient({ baseUrl: stack.orchestrator.httpUrl! });
    const before = await count();
    const key = `bulk-${Math.random().toString(36).slice(2, 8)}`;
    const out = await client.createTasks([
      { namespace: 'shop', name: 'order', context: { order_id: 'bulk-1', amount: 1 } },
      { namespace: 'shop', name: 'order', context: { order_id: 'x', amount: -1 } },
      { namespace: 'shop', name: 'refund', context: {} },
      { namespace: 'shop', name: 'order', version: '1.0.0', context: { order_id: 'bulk-2', amount: 2 }, idempotencyKey: key },
      { namespace: 'shop', name: 'order', version: '1.0.0', context: { order_id: 'bulk-2', amount: 2 }, idempotencyKey: key },
    ]);
    expect(out.map((o) => (o.ok ? [o.created, o.task.version] : [o.error.status, o.error.code]))).toEqual([
      [true, '1.10.0'],
      [400, 'INVALID_CONTEXT'],
      [404, 'UNKNOWN_TEMPLATE'],
      [true, '1.0.0'],
      [false, '1.0.0'],
    ]);
    // The same idempotency key twice in one batch makes one task, which both answers show (201, then 200).
    const [, , , a, b] = out;
    expect(a!.ok && b!.ok && a!.task.id === b!.task.id).toBe(true);
    expect(a!.ok && a!.task.steps.map((s) => [s.name, s.state])).toEqual([['charge', 'enqueued']]);
    expect(await count()).toBe(before + 2);
    // Asked again later, the key's task comes back as 200 (created: false).
    const [again] = await client.createTasks([{ namespace: 'shop', name: 'order', context: { order_id: 'bulk-2', amount: 2 }, idempotencyKey: key }]);
    expect(again!.ok && [again!.created, again!.task.id]).toEqual([false, a!.ok && a!.task.id]);
    // A request that fails validation in the client names its place, and nothing is sent.
    const bad = await client.createTasks([{ namespace: 'shop', name: 'order', context: {} }, { namespace: 'Shop!', name: 'order', context: {} }]).catch((e: unknown) => e);
    expect(bad).toMatchObject({ code: 'INVALID_MESSAGE', issues: [{ path: 'tasks.1.namespace' }] });
    const raw = await fetch(`${stack.orchestrator.httpUrl}/v1/tasks/batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tasks: [] }) });
    expect(raw.status).toBe(400);
    expect(((await raw.json()) as { error: { code: string; message: string } }).error.message).toMatch(/tasks/);
    expect(await count()).toBe(before + 2);
  });

  it('AMQP: a task request gets a reply with the task, or the refusal', async () => {
    const o = stack.orchestrator;
    const replies = new Map<string, TaskReply>();
    const ch = await o.broker.model!.createChannel();
    await ch.consume('amq.rabbitmq.reply-to', (m) => {
      if (m) replies.set(m.properties.correlationId as string, JSON.parse(m.content.toString()) as TaskReply);
    }, { noAck: true });
    const send = (id: string, context: unknown) =>
      ch.publish(o.names.taskRequestsExchange, 'shop', Buffer.from(JSON.stringify({
        protocol_version: PROTOCOL_VERSION, message_type: 'task_request', namespace: 'shop', name: 'order', context,
      })), { replyTo: 'amq.rabbitmq.reply-to', correlationId: id });
    send('good', { order_id: 'amqp-1', amount: 1 });
    send('bad', { order_id: 'amqp-2' });
    await eventually(async () => (replies.size === 2 ? true : undefined), 5000, 'two replies');
    await ch.close();
    const good = TaskReply.parse(replies.get('good'));
    expect(good.ok && good.task.namespace).toBe('shop');
    const bad = TaskReply.parse(replies.get('bad'));
    expect(!bad.ok && bad.error.code).toBe('INVALID_CONTEXT');
  });

  it('AMQP: each request of a task_requests message is created or refused on its own, and answered by its request_id', async () => {
    const o = stack.orchestrator;
    const marker = `batch${Math.random().toString(36).slice(2, 8)}`;
    const dead = await DeadLetterReader.start(o.broker, o.names.deadLetterQueue);
    const messages: Array<{ type: string; body: unknown }> = [];
    const ch = await o.broker.model!.createChannel();
    try {
      await ch.consume('amq.rabbitmq.reply-to', (m) => {
        if (m && m.properties.correlationId === marker) messages.push({ type: String(m.properties.type), body: JSON.parse(m.content.toString()) });
      }, { noAck: true });
      const request = (requestId: string | undefined, fields: Record<string, unknown>) => ({
        protocol_version: PROTOCOL_VERSION, message_type: 'task_request', namespace: 'shop', name: 'order', ...(requestId ? { request_id: requestId } : {}), ...fields,
      });
      const before = await count();
      const body = {
        protocol_version: PROTOCOL_VERSION,
        message_type: 'task_requests',
        requests: [
          request('good', { context: { order_id: `${marker}-1`, amount: 1 } }),
          request('bad-context', { context: { order_id: `${marker}-2` } }),
          request('unknown', { name: 'refund', context: {} }),
          request('good-too', { context: { order_id: `${marker}-3`, amount: 2 }, idempotency_key: `${marker}-key` }),
          // Parked alone: a field of the wrong type (answered, its request_id is readable) and
          // a request without request_id (not answered: no reply could say which it answers).
          request('wrong-type', { context: 'order', marker }),
          request(undefined, { context: { order_id: `${marker}-4`, amount: 1 }, marker }),
        ],
      };
      ch.publish(o.names.taskRequestsExchange, 'shop', Buffer.from(JSON.stringify(body)), { replyTo: 'amq.rabbitmq.reply-to', correlationId: marker });
      await eventually(async () => (messages.length === 2 && dead.parked.filter((p) => p.body.includes(Buffer.from(marker))).length === 2 ? true : undefined), 5000, 'two reply messages and two parked requests');

      const batch = messages.find((m) => m.type === 'task_replies')!;
      const replies = TaskReplies.parse(batch.body).replies;
      const byId = new Map(replies.map((r) => [r.request_id, r]));
      expect([...byId.keys()].sort()).toEqual(['bad-context', 'good', 'good-too', 'unknown']);
      const good = byId.get('good')!;
      expect(good.ok && [good.created, good.task.namespace, good.task.name]).toEqual([true, 'shop', 'order']);
      expect(byId.get('good-too')!.ok).toBe(true);
      expect(byId.get('bad-context')).toMatchObject({ ok: false, error: { code: 'INVALID_CONTEXT' } });
      expect(byId.get('unknown')).toMatchObject({ ok: false, error: { code: 'UNKNOWN_TEMPLATE' } });
      // The parked request with a request_id is told why, in a reply of its own.
      const refusal = TaskReply.parse(messages.find((m) => m.type === 'task_reply')!.body);
      expect(refusal).toMatchObject({ ok: false, request_id: 'wrong-type', error: { code: 'INVALID_MESSAGE' } });
      expect(refusal.ok === false && refusal.error.message).toMatch(/task request 5 of 6 in a task_requests message does not match its schema: context/);
      const parked = dead.parked.filter((p) => p.body.includes(Buffer.from(marker)));
      expect(parked.map((p) => [JSON.parse(p.body.toString()).request_id, p.code]).sort()).toEqual([
        [undefined, 'INVALID_MESSAGE'],
        ['wrong-type', 'INVALID_MESSAGE'],
      ]);
      expect(parked.find((p) => !JSON.parse(p.body.toString()).request_id)!.reason).toMatch(/needs its request_id/);
      expect(await count()).toBe(before + 2);
    } finally {
      await ch.close();
      await dead.close();
    }
  });

  it('AMQP: a task_requests message with a broken envelope is parked whole, and one refusal without request_id answers it', async () => {
    const o = stack.orchestrator;
    const marker = `envelope${Math.random().toString(36).slice(2, 8)}`;
    const dead = await DeadLetterReader.start(o.broker, o.names.deadLetterQueue);
    const replies: unknown[] = [];
    const ch = await o.broker.model!.createChannel();
    try {
      await ch.consume('amq.rabbitmq.reply-to', (m) => {
        if (m && m.properties.correlationId === marker) replies.push(JSON.parse(m.content.toString()));
      }, { noAck: true });
      const body = { protocol_version: PROTOCOL_VERSION, message_type: 'task_requests', requests: [], marker };
      ch.publish(o.names.taskRequestsExchange, 'shop', Buffer.from(JSON.stringify(body)), { replyTo: 'amq.rabbitmq.reply-to', correlationId: marker });
      const parked = await eventually(async () => dead.find(marker), 5000, 'the parked message');
      expect(parked.code).toBe('INVALID_MESSAGE');
      expect(parked.reason).toMatch(/task_requests message: requests must be an array of 1 to 500 task requests; it has 0/);
      await eventually(async () => (replies.length > 0 ? true : undefined), 5000, 'the refusal');
      expect(replies).toHaveLength(1);
      const refusal = TaskReply.parse(replies[0]);
      expect(refusal).toMatchObject({ ok: false, error: { code: 'INVALID_MESSAGE' } });
      expect('request_id' in refusal).toBe(false);
    } finally {
      await ch.close();
      await dead.close();
    }
  });

  it('AMQP: AmqpTaskRequester sends the requests made in one turn together, and each caller gets its own task', async () => {
    const requester = new AmqpTaskRequester(stack.orchestrator.broker, { prefix: stack.orchestrator.names.prefix });
    try {
      const before = await count();
      const outcomes = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          requester.createTask({ namespace: 'shop', name: 'order', context: { order_id: `turn-${i}`, amount: i % 3 === 0 ? -1 : i } }).then(
            (r) => ({ ok: true as const, order: r.task.id }),
            (e: { code: string }) => ({ ok: false as const, code: e.code }),
          ),
        ),
      );
      // Every third context breaks the input schema: only those callers are refused.
      outcomes.forEach((o, i) => expect(o.ok ? 'created' : o.code).toBe(i % 3 === 0 ? 'INVALID_CONTEXT' : 'created'));
      const ids = outcomes.flatMap((o) => (o.ok ? [o.order] : []));
      expect(new Set(ids).size).toBe(20);
      expect(await count()).toBe(before + 20);
      const { rows } = await sql<{ id: string; order_id: string }>`SELECT id, context->>'order_id' AS order_id FROM tasks WHERE id = ANY(${ids}::text[])`.execute(stack.orchestrator.db);
      const orderOf = new Map(rows.map((r) => [r.id, r.order_id]));
      outcomes.forEach((o, i) => {
        if (o.ok) expect(orderOf.get(o.order)).toBe(`turn-${i}`);
      });
    } finally {
      await requester.close();
    }
  });

  it('a batch is created by one statement on a kept plan that reads no table but the templates, by key, and the setting ends with it', async () => {
    // auto_explain shows the plans the creation runs on, on this installation's tables that
    // were never analyzed: a plan kept from small tables must not scan them once they grow.
    // The creation reads no table at all (the template's version comes with the task); the
    // check that the version held as the newest still is reads the templates of its name.
    const one = createDb(stack.databaseUrl, stack.schema, 1);
    const plans: string[] = [];
    one.pool.on('connect', (client) => client.on('notice', (n) => plans.push(String(n.message))));
    try {
      await sql`LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on;
        SET auto_explain.log_level = notice`.execute(one.db);
      const deps = { db: one.db, registry: stack.orchestrator.registry, validator: new ContextValidator(), names: stack.orchestrator.names, logger: pino({ level: 'silent' }) };
      const { outcomes } = await createTasks(deps, [{ namespace: 'shop', name: 'order', context: { order_id: 'o-kept', amount: 1 } }]);
      expect(outcomes[0]!.ok).toBe(true);
      const nodes = plans.flatMap((p) => p.split('\n').filter((l) => l.includes('(cost='))).join('\n');
      expect(nodes).toMatch(/Insert on tasks/);
      expect(nodes).toMatch(/Insert on steps/);
      // shop.order was resolved before: its newest version is held, and checked.
      expect(nodes).toMatch(/Function Scan on create_tasks_rows_newest/);
      const check = nodes.slice(0, nodes.indexOf('Insert on tasks'));
      expect(check).toMatch(/Index Scan using templates_namespace_name_version_key on templates/);
      // Only the reference checks (migration 0005) look rows up, by key; the creation itself
      // reads no table.
      expect(nodes).not.toMatch(/Seq Scan/);
      const creation = nodes.slice(nodes.indexOf('Insert on tasks'));
      expect(creation).not.toMatch(/Index Scan|Index Only Scan|Bitmap/);
      const { rows } = await sql<{ plan_cache_mode: string }>`SHOW plan_cache_mode`.execute(one.db);
      expect(rows[0]!.plan_cache_mode).toBe('force_custom_plan');
    } finally {
      await one.db.destroy();
    }
  });
});
