import { describe, expect, it, vi } from 'vitest';
import { TaskCache } from '../src/results/task-cache.ts';
import type { StepState } from '../src/results/batch-plan.ts';
import type { LockedTask } from '../src/tasks/dispatch.ts';

function task(id: string, over: Partial<LockedTask> = {}): LockedTask {
  return {
    id,
    state: 'in_progress',
    namespace: 'ns',
    name: 'two',
    version: '1.0.0',
    template_id: '1',
    correlation_id: id,
    context: { id },
    parent_task_id: null,
    parent_step_id: null,
    ...over,
  };
}

function steps(taskId: string, result: unknown = null): StepState[] {
  return [
    { id: `${taskId}_a`, task_id: taskId, name: 'a', state: 'complete', attempt: 1, max_attempts: 3, deps_pending: 0, dependents: [`${taskId}_b`], result, error: null, finished_at: null },
    { id: `${taskId}_b`, task_id: taskId, name: 'b', state: 'enqueued', attempt: 1, max_attempts: 3, deps_pending: 0, dependents: [], result: null, error: null, finished_at: null },
  ];
}

function hold(cache: TaskCache, ...tasks: LockedTask[]): void {
  cache.keep(new Map(tasks.map((t) => [t.id, t])), tasks.flatMap((t) => steps(t.id)));
}

describe('TaskCache', () => {
  it('gives a batch only when it holds every one of its tasks, and says what the write must find, in id order', () => {
    const cache = new TaskCache(1 << 20);
    hold(cache, task('t2'), task('t1'));
    expect(cache.take(['t1', 't3'])).toBeNull();
    const batch = cache.take(['t2', 't1', 't2'])!;
    expect([...batch.tasks.keys()].sort()).toEqual(['t1', 't2']);
    expect(batch.steps.size).toBe(4);
    expect(batch.check).toEqual({
      taskIds: ['t1', 't2'],
      tasks: 't1 in_progress,t2 in_progress',
      steps: 't1_a complete 1 0,t1_b enqueued 1 0,t2_a complete 1 0,t2_b enqueued 1 0',
    });
    expect(cache.stats).toMatchObject({ hits: 1, misses: 1 });
  });

  it('hands out copies: a plan that changes them changes nothing held until the batch keeps them', () => {
    const cache = new TaskCache(1 << 20);
    hold(cache, task('t1'));
    const first = cache.take(['t1'])!;
    first.steps.get('t1_b')!.state = 'complete';
    first.tasks.get('t1')!.state = 'complete';
    expect(cache.take(['t1'])!.check.steps).toContain('t1_b enqueued 1 0');
    // A batch that finished the task: it is dropped, not held as complete.
    cache.keep(first.tasks, first.steps.values());
    expect(cache.take(['t1'])).toBeNull();
    expect(cache.size).toBe(0);
  });

  it('holds neither child tasks (their outcome needs a read) nor ids the check text could not carry', () => {
    const cache = new TaskCache(1 << 20);
    hold(cache, task('child', { parent_task_id: 'p', parent_step_id: 'p_a' }), task('has space'), task('has,comma'), task('ok_1-x'));
    expect(cache.size).toBe(1);
    expect(cache.take(['ok_1-x'])).not.toBeNull();
  });

  it('refuses a task that another batch of this orchestrator is writing, until that batch leaves', () => {
    const cache = new TaskCache(1 << 20);
    hold(cache, task('t1'), task('t2'));
    cache.enter(['t1']);
    cache.enter(['t1', 't2']);
    expect(cache.take(['t1', 't2'])).toBeNull();
    expect(cache.stats.busy).toBe(1);
    cache.leave(['t1']);
    expect(cache.take(['t1', 't2'])).not.toBeNull();
    cache.leave(['t1', 't2']);
    cache.enter(['t2', 't2']);
    expect(cache.take(['t2'])).not.toBeNull();
  });

  it('once full, holds a newcomer only in the place of a task kept more than 30 s ago, never one bigger than it all', () => {
    vi.useFakeTimers();
    try {
      // Each task here is estimated at 600 + 2 × 400 bytes plus its JSON: two fit in 3,000.
      const cache = new TaskCache(3000);
      hold(cache, task('t1'), task('t2'));
      hold(cache, task('t3'));
      // Full of tasks kept just now (the ones whose results come next): the newcomer waits.
      expect(cache.size).toBe(2);
      expect(cache.take(['t3'])).toBeNull();
      vi.advanceTimersByTime(31_000);
      hold(cache, task('t2'));
      hold(cache, task('t3'));
      // t1 sat idle for 31 s: it went; t2 was kept again just now: it stays.
      expect(cache.take(['t1'])).toBeNull();
      expect(cache.take(['t2', 't3'])).not.toBeNull();
      vi.advanceTimersByTime(31_000);
      cache.keep(new Map([['t4', task('t4')]]), steps('t4', 'x'.repeat(5000)));
      expect(cache.take(['t4'])).toBeNull();
      cache.drop(['t2', 'unknown']);
      expect(cache.size).toBe(1);
      expect(cache.take(['t3'])).not.toBeNull();
    } finally {
      vi.useRealTimers();
    }
  });

  it('rests when more than a quarter of the batches it gave were found stale (results shared with other orchestrators), then tries again', () => {
    const cache = new TaskCache(1 << 20);
    const round = (staleEvery: number, n: number) => {
      let given = 0;
      for (let i = 0; i < n; i++) {
        hold(cache, task('t1'));
        const batch = cache.take(['t1']);
        if (!batch) continue;
        given++;
        if (i % staleEvery === 0) cache.stale(['t1']);
      }
      return given;
    };
    // One in five stale: it keeps giving.
    expect(round(5, 200)).toBe(200);
    // Every other one stale: after its window it reads for a while instead.
    const given = round(2, 200);
    expect(given).toBeLessThan(200);
    expect(cache.stats.resting).toBe(200 - given);
    // The rest ends: it gives again.
    const resting = cache.stats.resting;
    expect(round(1000, 600)).toBeGreaterThan(0);
    expect(cache.stats.resting).toBeGreaterThan(resting);
    hold(cache, task('t1'));
    expect(cache.take(['t1'])).not.toBeNull();
  });

  it('holds and gives nothing while other orchestrators share the results, and starts afresh when alone again', () => {
    const cache = new TaskCache(1 << 20);
    hold(cache, task('t1'));
    cache.setShared(true);
    expect(cache.size).toBe(0);
    hold(cache, task('t2'));
    expect(cache.size).toBe(0);
    expect(cache.take(['t2'])).toBeNull();
    expect(cache.stats.shared).toBe(1);
    cache.setShared(false);
    hold(cache, task('t3'));
    expect(cache.take(['t3'])).not.toBeNull();
    expect(cache.take(['t1'])).toBeNull();
  });
});
