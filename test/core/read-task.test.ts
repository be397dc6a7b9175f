import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { RetryableError } from '@tasker/worker';
import type { JsonValue, TaskView } from '@tasker/protocol';
import { startStack, taskWhen, finished, type Stack } from '../support/stack.ts';

// readTask reads a task, its steps, transitions, parent and children in one statement. These
// tests hold its answer against the tables read row by row, the way it read them before.

const PARENT = `
name: order
namespace_name: rt_shop
version: 1.2.0
steps:
  - { name: reserve, handler: { callable: reserve }, retry: { retryable: true, max_attempts: 3 } }
  - { name: ship, handler: { callable: ship }, dependencies: [reserve] }
  - { name: bill, handler: { callable: bill }, dependencies: [reserve] }
  - { name: close, handler: { callable: close }, dependencies: [ship, bill] }
`;
const CHILD = `
name: label
namespace_name: rt_post
version: 1.0.0
steps:
  - { name: print, handler: { callable: print } }
`;

const iso = (d: Date | null): string | null => (d ? d.toISOString() : null);

/** The view from the tables, one read each: what readTask must agree with. */
async function fromRows(client: pg.Client, schema: string, id: string): Promise<Omit<TaskView, 'steps'> & { steps: Array<Record<string, unknown>> }> {
  const q = async <R extends pg.QueryResultRow>(text: string, values: unknown[]) => (await client.query<R>(text.replaceAll('$S', schema), values)).rows;
  const summary = (r: Record<string, any>) => ({
    id: r.id, namespace: r.namespace, name: r.name, version: r.version, state: r.state, correlation_id: r.correlation_id,
    idempotency_key: r.idempotency_key, parent_task_id: r.parent_task_id, parent_step_id: r.parent_step_id, created_at: iso(r.created_at),
  });
  const [t] = await q<Record<string, any>>('SELECT * FROM $S.tasks WHERE id = $1', [id]);
  const steps = await q<Record<string, any>>('SELECT * FROM $S.steps WHERE task_id = $1 ORDER BY position', [id]);
  const names = new Map(steps.map((s) => [s.id, s.name]));
  const transitions = await q<Record<string, any>>('SELECT * FROM $S.transitions WHERE task_id = $1 ORDER BY id', [id]);
  const parent = t!.parent_task_id ? (await q<Record<string, any>>('SELECT * FROM $S.tasks WHERE id = $1', [t!.parent_task_id]))[0] : undefined;
  const children = await q<Record<string, any>>('SELECT * FROM $S.tasks WHERE parent_task_id = $1 ORDER BY created_at, id', [id]);
  return {
    ...summary(t!),
    context: t!.context,
    error: t!.error,
    updated_at: iso(t!.updated_at)!,
    completed_at: iso(t!.completed_at),
    steps: steps.map((s) => ({
      id: s.id, name: s.name, state: s.state, attempt: s.attempt, max_attempts: s.max_attempts, result: s.result, error: s.error,
      enqueued_at: iso(s.enqueued_at), started_at: iso(s.started_at), finished_at: iso(s.finished_at),
      next_retry_at: iso(s.next_retry_at), waiting_for_task_id: s.waiting_for_task_id,
    })),
    transitions: transitions.map((r) => ({
      step_id: r.step_id, step: r.step_id ? (names.get(r.step_id) ?? null) : null, from_state: r.from_state, to_state: r.to_state,
      attempt: r.attempt, reason: r.reason, actor: r.actor, at: iso(r.at)!,
    })),
    parent: parent ? summary(parent) : null,
    children: children.map(summary),
  } as never;
}

describe('reading a task in one statement', () => {
  let stack: Stack;
  let client: pg.Client;
  const tries = new Map<string, number>();
  const create = async (namespace: string, name: string, context: Record<string, JsonValue>): Promise<{ task: { id: string } }> => {
    const [o] = await stack.orchestrator.createTasks([{ namespace, name, context }]);
    if (!o?.ok) throw new Error(`not created: ${o?.ok === false ? o.error.message : 'no outcome'}`);
    return o;
  };

  beforeAll(async () => {
    stack = await startStack();
    client = new pg.Client({ connectionString: stack.databaseUrl });
    await client.connect();
    await stack.register(PARENT, CHILD);
    await stack.worker({
      namespace: 'rt_shop',
      handlers: {
        reserve: (ctx) => {
          const n = (tries.get(ctx.taskId) ?? 0) + 1;
          tries.set(ctx.taskId, n);
          if (n === 1) throw new RetryableError('stock service busy', { code: 'BUSY', retryAfterMs: 1, details: { shelf: 'A3' } });
          return { reserved: ctx.getInput('items'), at: 'shelf "A3"\n', unicode: 'é✓' };
        },
        ship: async (ctx) => {
          const label = await ctx.createTask({ namespace: 'rt_post', name: 'label', context: { order: ctx.taskId } });
          await ctx.createTask({ namespace: 'rt_post', name: 'label', context: { order: ctx.taskId, copy: 2 } });
          return ctx.waitFor(label.task.id);
        },
        bill: () => ({ amount: 12.5, lines: [1, 2.25, null, { deep: [true, false] }] }),
        close: () => null,
      },
    });
    await stack.worker({ namespace: 'rt_post', handlers: { print: (ctx) => ({ printed: ctx.getInput('order') }) } });
  });
  afterAll(async () => {
    await client?.end();
    await stack?.cleanup();
  });

  it('gives what the tables hold: steps in template order, transitions in order, the parent and the children', async () => {
    const { task } = await create('rt_shop', 'order', { items: ['pen', 'ink'] });
    const done = await taskWhen(stack.orchestrator, task.id, finished);
    expect(done.state).toBe('complete');
    // Both children ended too (the second one nobody waits for).
    const family = (await stack.orchestrator.getTask(task.id, { family: true }))!;
    for (const c of family.children!) await taskWhen(stack.orchestrator, c.id, finished);

    const view = (await stack.orchestrator.getTask(task.id, { transitions: true, family: true }))!;
    const rows = await fromRows(client, stack.schema, task.id);
    expect(view).toEqual({
      ...rows,
      steps: rows.steps.map((s, i) => ({ ...s, dependencies: [[], ['reserve'], ['reserve'], ['ship', 'bill']][i], handler_callable: s.name })),
    });
    // What the comparison rests on: the run went through a retry, a child and its sibling.
    expect(view.steps.map((s) => [s.name, s.attempt])).toEqual([['reserve', 2], ['ship', 1], ['bill', 1], ['close', 1]]);
    expect(view.steps[0]!.result).toEqual({ reserved: ['pen', 'ink'], at: 'shelf "A3"\n', unicode: 'é✓' });
    expect(view.steps[2]!.result).toEqual({ amount: 12.5, lines: [1, 2.25, null, { deep: [true, false] }] });
    expect(view.transitions!.some((t) => t.step === 'reserve' && t.to_state === 'waiting_retry')).toBe(true);
    expect(view.children).toHaveLength(2);
    expect(view.parent).toBeNull();
    expect(view.steps[0]!.started_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

    const child = (await stack.orchestrator.getTask(view.children![0]!.id, { transitions: true, family: true }))!;
    const childRows = await fromRows(client, stack.schema, child.id);
    expect(child).toEqual({ ...childRows, steps: childRows.steps.map((s) => ({ ...s, dependencies: [], handler_callable: 'print' })) });
    expect(child.parent?.id).toBe(task.id);
    expect(child.parent_step_id).toBe(view.steps[1]!.id);
    expect(child.children).toEqual([]);
  });

  it('leaves out what was not asked for, and answers null for no such task', async () => {
    const { task } = await create('rt_post', 'label', {});
    await taskWhen(stack.orchestrator, task.id, finished);
    const plain = (await stack.orchestrator.getTask(task.id))!;
    expect(plain).not.toHaveProperty('transitions');
    expect(plain).not.toHaveProperty('parent');
    expect(plain).not.toHaveProperty('children');
    expect(plain.steps.map((s) => s.state)).toEqual(['complete']);
    const withTransitions = (await stack.orchestrator.getTask(task.id, { transitions: true }))!;
    expect(withTransitions.transitions!.length).toBeGreaterThan(1);
    expect(withTransitions).not.toHaveProperty('children');
    expect(await stack.orchestrator.getTask('tsk_missing_0000000000')).toBeNull();
  });

  it('reads a task whose steps have not run: their times and results are null', async () => {
    // No worker serves rt_idle: the task stays with its first step enqueued and the rest pending.
    await stack.register(`
name: idle
namespace_name: rt_idle
version: 1.0.0
steps:
  - { name: a, handler: { callable: a } }
  - { name: b, handler: { callable: b }, dependencies: [a] }
`);
    const { task } = await create('rt_idle', 'idle', { note: null });
    const view = (await stack.orchestrator.getTask(task.id, { transitions: true, family: true }))!;
    const rows = await fromRows(client, stack.schema, task.id);
    expect(view).toEqual({ ...rows, steps: rows.steps.map((s, i) => ({ ...s, dependencies: [[], ['a']][i], handler_callable: s.name })) });
    expect(view.steps.map((s) => [s.state, s.started_at, s.result])).toEqual([['enqueued', null, null], ['pending', null, null]]);
    expect(view.children).toEqual([]);
  });
});
