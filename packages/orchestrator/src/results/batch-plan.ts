import type { LockedTask } from '../tasks/dispatch.ts';
import type { TransitionRow } from '../tasks/transitions.ts';

/** A step as a result batch sees it, read under its task's lock (lock_tasks_read_steps). */
export interface StepState {
  id: string;
  task_id: string;
  name: string;
  state: string;
  attempt: number;
  max_attempts: number;
  deps_pending: number;
  /** Ids of the steps that depend on this one. */
  dependents: string[];
  /** Set for complete steps only. */
  result: unknown;
  /** Set for failed steps only. */
  error: unknown;
  finished_at: string | null;
}

/** What one result does to its step (decided from the result and the step's policy). */
export interface Change {
  id: string;
  task_id: string;
  attempt: number;
  /** The state it was in: `enqueued` or `waiting_child` for a result, any unfinished state for an operator's action. */
  from_state: string;
  state: 'complete' | 'error' | 'waiting_retry' | 'waiting_child';
  waiting_for: string | null;
  result: unknown;
  error: unknown;
  /** Null for a step completed by hand before it ever ran. */
  started_at: string | null;
  finished_at: string;
  retry_in_ms: number | null;
  reason: string;
}

/**
 * One step row to write: the values it was read with (the write is a compare-and-set on
 * them) and the values it ends with. `outcome` is set when a result was applied to it.
 */
export interface StepWrite {
  id: string;
  from_state: string;
  from_attempt: number;
  from_deps_pending: number;
  state: string;
  attempt: number;
  deps_pending: number;
  /** It moved to `enqueued` for its first attempt. */
  enqueue: boolean;
  outcome: Change | null;
  /**
   * Why it moved, when it did (a result applied, or released by its dependencies): the row's
   * audit row, which write_result_rows writes from the row itself (migration 0018). Null for
   * a row that only counts down its pending dependencies.
   */
  reason: string | null;
  /** Who moved it, for an operator's action. */
  actor?: string;
}

export interface TaskWrite {
  id: string;
  /** The state the compare-and-set expects: a task finishes from in_progress only. */
  from_state: 'in_progress';
  state: 'complete' | 'error';
  error: unknown;
  /** Why it ended: its audit row (migration 0018). */
  reason: string;
}

export interface BatchPlan {
  steps: StepWrite[];
  tasks: TaskWrite[];
  /**
   * Audit rows the step and task rows do not say (an operator's reopening of a failed
   * task), written before theirs. The batch's own moves are audited from its rows.
   */
  audit: TransitionRow[];
  /** Steps that became ready (state `enqueued`, attempt 1): their step messages go out. */
  released: StepState[];
  /** Tasks this batch finished (their `state` in the map is updated). */
  finished: LockedTask[];
  /** The batch's steps grouped by task, as the plan left them. */
  stepsByTask: Map<string, StepState[]>;
}

const IN_FLIGHT = new Set(['enqueued', 'waiting_retry', 'waiting_child']);

/**
 * Everything a batch of decided results implies, worked out in memory from the rows read
 * under the task locks: the results' own transitions, readiness of dependents (each
 * completed step takes one off its dependents' pending count; a pending dependent that
 * reaches zero while its task is live is enqueued), and tasks that finish (every step
 * complete, or a step failed and nothing is in flight any more). Holding the task locks
 * means nobody else changes these rows meanwhile, so the plan can be written in one
 * statement; the write still compares each row with what was read, and a mismatch aborts
 * the batch rather than writing a plan made from stale rows.
 *
 * `tasks` and `steps` are updated in place to the state after the batch.
 */
export function planBatch(tasks: Map<string, LockedTask>, steps: Map<string, StepState>, changes: Change[]): BatchPlan {
  const origin = new Map<string, { state: string; attempt: number; deps_pending: number }>();
  const outcomes = new Map<string, Change>();
  const enqueued = new Set<string>();
  const touch = (s: StepState) => {
    if (!origin.has(s.id)) origin.set(s.id, { state: s.state, attempt: s.attempt, deps_pending: s.deps_pending });
  };

  for (const c of changes) {
    const s = steps.get(c.id)!;
    touch(s);
    s.state = c.state;
    s.attempt = c.attempt;
    s.result = c.state === 'complete' ? (c.result ?? null) : null;
    s.error = c.state === 'complete' ? null : c.error;
    s.finished_at = c.finished_at;
    outcomes.set(c.id, c);
  }

  const decremented: StepState[] = [];
  for (const c of changes) {
    if (c.state !== 'complete') continue;
    for (const id of steps.get(c.id)!.dependents) {
      const d = steps.get(id);
      if (!d) continue;
      touch(d);
      d.deps_pending -= 1;
      decremented.push(d);
    }
  }
  const released: StepState[] = [];
  for (const d of new Set(decremented)) {
    if (d.state === 'pending' && d.deps_pending === 0 && tasks.get(d.task_id)?.state === 'in_progress') {
      d.state = 'enqueued';
      d.attempt = 1;
      enqueued.add(d.id);
      released.push(d);
    }
  }

  const byTask = new Map<string, StepState[]>();
  for (const s of steps.values()) {
    let list = byTask.get(s.task_id);
    if (!list) byTask.set(s.task_id, (list = []));
    list.push(s);
  }
  const taskWrites: TaskWrite[] = [];
  const finished: LockedTask[] = [];
  for (const id of new Set(changes.map((c) => c.task_id))) {
    const task = tasks.get(id);
    if (!task || task.state !== 'in_progress') continue;
    const list = byTask.get(id) ?? [];
    const failed = list.filter((s) => s.state === 'error');
    if (list.every((s) => s.state === 'complete')) {
      task.state = 'complete';
      taskWrites.push({ id, from_state: 'in_progress', state: 'complete', error: null, reason: 'all steps complete' });
      finished.push(task);
    } else if (failed.length > 0 && !list.some((s) => IN_FLIGHT.has(s.state))) {
      // The task's error names the step that failed first.
      const first = failed.reduce((a, b) => (time(b.finished_at) < time(a.finished_at) ? b : a));
      task.state = 'error';
      taskWrites.push({
        id,
        from_state: 'in_progress',
        state: 'error',
        error: { step: first.name, error: first.error },
        reason: `step '${first.name}' failed and no other step can progress`,
      });
      finished.push(task);
    }
  }

  const writes: StepWrite[] = [...origin].map(([id, from]) => {
    const s = steps.get(id)!;
    const outcome = outcomes.get(id) ?? null;
    return {
      id,
      from_state: from.state,
      from_attempt: from.attempt,
      from_deps_pending: from.deps_pending,
      state: s.state,
      attempt: s.attempt,
      deps_pending: s.deps_pending,
      enqueue: enqueued.has(id),
      outcome,
      reason: outcome !== null ? outcome.reason : enqueued.has(id) ? 'dependencies complete' : null,
    };
  });
  return { steps: writes, tasks: taskWrites, audit: [], released, finished, stepsByTask: byTask };
}

/** A finish time for ordering; a step without one sorts last. */
function time(at: string | null): number {
  const t = at ? Date.parse(at) : NaN;
  return Number.isNaN(t) ? Infinity : t;
}
