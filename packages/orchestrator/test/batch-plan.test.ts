import { describe, expect, it } from 'vitest';
import { planBatch, type Change, type StepState } from '../src/results/batch-plan.ts';
import type { LockedTask } from '../src/tasks/dispatch.ts';

// A diamond: a; b and c after a; d after b and c.
function diamond(taskState = 'in_progress', states: Record<string, string> = {}) {
  const task: LockedTask = {
    id: 't1', state: taskState, namespace: 'ns', name: 'diamond', version: '1.0.0', template_id: '1',
    correlation_id: 'c', context: {}, parent_task_id: null, parent_step_id: null,
  };
  const step = (name: string, deps: number, dependents: string[]): StepState => ({
    id: `s_${name}`, task_id: 't1', name, state: states[name] ?? (deps === 0 ? 'enqueued' : 'pending'),
    attempt: states[name] === 'pending' || (!states[name] && deps > 0) ? 0 : 1, max_attempts: 3,
    deps_pending: deps, dependents, result: null, error: null, finished_at: null,
  });
  const steps = new Map(
    [step('a', 0, ['s_b', 's_c']), step('b', 1, ['s_d']), step('c', 1, ['s_d']), step('d', 2, [])].map((s) => [s.id, s]),
  );
  return { tasks: new Map([[task.id, task]]), steps };
}

const at = (ms: number) => new Date(Date.UTC(2026, 10, 26, 12, 0, 0, ms)).toISOString();
function change(id: string, state: Change['state'], over: Partial<Change> = {}): Change {
  return {
    id, task_id: 't1', attempt: 1, from_state: 'enqueued', state, waiting_for: null,
    result: state === 'complete' ? { ok: id } : null, error: state === 'complete' ? null : { code: 'X' },
    started_at: at(0), finished_at: at(10), retry_in_ms: state === 'waiting_retry' ? 1000 : null, reason: 'r', ...over,
  };
}

describe('result batch plan', () => {
  it('a completed step releases its dependents; each row is written as a compare-and-set on what was read', () => {
    const { tasks, steps } = diamond();
    const plan = planBatch(tasks, steps, [change('s_a', 'complete')]);
    expect(plan.released.map((s) => s.name).sort()).toEqual(['b', 'c']);
    expect(plan.steps.find((w) => w.id === 's_a')).toMatchObject({ from_state: 'enqueued', from_attempt: 1, state: 'complete', enqueue: false });
    expect(plan.steps.find((w) => w.id === 's_b')).toMatchObject({
      from_state: 'pending', from_attempt: 0, from_deps_pending: 1, state: 'enqueued', attempt: 1, deps_pending: 0, enqueue: true, outcome: null,
    });
    // Each move carries its reason, from which its audit row is written (migration 0018).
    expect(plan.steps.map((w) => `${w.id}:${w.from_state}->${w.state}:${w.reason}`)).toEqual([
      's_a:enqueued->complete:r', 's_b:pending->enqueued:dependencies complete', 's_c:pending->enqueued:dependencies complete',
    ]);
    expect(plan.audit).toEqual([]);
    expect(plan.tasks).toEqual([]);
  });

  it('a step with two dependencies completing in one batch is released once, with both counted', () => {
    const { tasks, steps } = diamond('in_progress', { a: 'complete', b: 'enqueued', c: 'enqueued' });
    steps.get('s_b')!.deps_pending = 0;
    steps.get('s_c')!.deps_pending = 0;
    const plan = planBatch(tasks, steps, [change('s_b', 'complete'), change('s_c', 'complete')]);
    expect(plan.released.map((s) => s.name)).toEqual(['d']);
    expect(plan.steps.find((w) => w.id === 's_d')).toMatchObject({ from_deps_pending: 2, deps_pending: 0, state: 'enqueued' });
  });

  it('one of two dependencies complete: the dependent only counts down', () => {
    const { tasks, steps } = diamond('in_progress', { a: 'complete', b: 'enqueued', c: 'enqueued' });
    const plan = planBatch(tasks, steps, [change('s_b', 'complete')]);
    expect(plan.released).toEqual([]);
    expect(plan.steps.find((w) => w.id === 's_d')).toMatchObject({ from_deps_pending: 2, deps_pending: 1, state: 'pending', enqueue: false, reason: null });
  });

  it('the last step completing completes the task', () => {
    const { tasks, steps } = diamond('in_progress', { a: 'complete', b: 'complete', c: 'complete', d: 'enqueued' });
    const plan = planBatch(tasks, steps, [change('s_d', 'complete')]);
    expect(plan.tasks).toEqual([{ id: 't1', from_state: 'in_progress', state: 'complete', error: null, reason: 'all steps complete' }]);
    expect(plan.finished.map((t) => t.id)).toEqual(['t1']);
    expect(tasks.get('t1')!.state).toBe('complete');
  });

  it('a failed step fails the task only once nothing else is in flight, naming the step that failed first', () => {
    const { tasks, steps } = diamond('in_progress', { a: 'complete', b: 'enqueued', c: 'enqueued' });
    const first = planBatch(tasks, steps, [change('s_c', 'error', { finished_at: at(50) })]);
    expect(first.tasks).toEqual([]); // b is still running
    const { tasks: t2, steps: s2 } = diamond('in_progress', { a: 'complete', b: 'enqueued', c: 'error' });
    s2.get('s_c')!.finished_at = at(50);
    s2.get('s_c')!.error = { code: 'C_FAILED' };
    const second = planBatch(t2, s2, [change('s_b', 'error', { finished_at: at(80), error: { code: 'B_FAILED' } })]);
    expect(second.tasks).toEqual([
      { id: 't1', from_state: 'in_progress', state: 'error', error: { step: 'c', error: { code: 'C_FAILED' } }, reason: "step 'c' failed and no other step can progress" },
    ]);
  });

  it('a retry keeps the task in flight and releases nothing', () => {
    const { tasks, steps } = diamond();
    const plan = planBatch(tasks, steps, [change('s_a', 'waiting_retry')]);
    expect(plan.released).toEqual([]);
    expect(plan.tasks).toEqual([]);
    expect(plan.steps).toHaveLength(1);
  });

  it('a task no longer in progress gets the result recorded but no dependent enqueued', () => {
    const { tasks, steps } = diamond('cancelled');
    const plan = planBatch(tasks, steps, [change('s_a', 'complete')]);
    expect(plan.released).toEqual([]);
    expect(plan.steps.find((w) => w.id === 's_b')).toMatchObject({ state: 'pending', deps_pending: 0, enqueue: false });
    expect(plan.tasks).toEqual([]);
  });
});
