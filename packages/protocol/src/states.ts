/**
 * Task and step state machines. The orchestrator only moves a row along an edge listed
 * here, and always with a compare-and-set on the current state (and attempt, for steps).
 *
 * Step:
 *   pending ──(all dependencies complete)──▶ enqueued
 *   enqueued ──(success result)──▶ complete
 *   enqueued ──(retryable error, attempts left)──▶ waiting_retry ──(delay expired)──▶ enqueued (attempt + 1)
 *   enqueued ──(permanent error, or no attempts left)──▶ error
 *   enqueued ──(handler asks to wait for a task it created)──▶ waiting_child
 *   waiting_child ──(that task completes | fails or is cancelled)──▶ complete | error
 *   error ──(operator: retry)──▶ enqueued (attempt + 1)
 *   error ──(operator: resolve, or complete with a result)──▶ complete
 *   pending | enqueued | waiting_retry | waiting_child ──(task cancelled)──▶ cancelled
 *
 * Task:
 *   in_progress ──(every step complete)──▶ complete
 *   in_progress ──(a step in error and nothing left in flight)──▶ error
 *   in_progress ──(cancel)──▶ cancelled
 *   error ──(operator retries or resolves a failed step)──▶ in_progress
 */
export const StepState = {
  PENDING: 'pending',
  ENQUEUED: 'enqueued',
  WAITING_RETRY: 'waiting_retry',
  WAITING_CHILD: 'waiting_child',
  COMPLETE: 'complete',
  ERROR: 'error',
  CANCELLED: 'cancelled',
} as const;
export type StepState = (typeof StepState)[keyof typeof StepState];

export const TaskState = {
  IN_PROGRESS: 'in_progress',
  COMPLETE: 'complete',
  ERROR: 'error',
  CANCELLED: 'cancelled',
} as const;
export type TaskState = (typeof TaskState)[keyof typeof TaskState];

export const STEP_TRANSITIONS: Readonly<Record<StepState, readonly StepState[]>> = {
  pending: ['enqueued', 'cancelled'],
  enqueued: ['complete', 'waiting_retry', 'waiting_child', 'error', 'cancelled'],
  waiting_retry: ['enqueued', 'cancelled'],
  waiting_child: ['complete', 'error', 'cancelled'],
  complete: [],
  error: [],
  cancelled: [],
};

/** Edges only an operator's action takes (HTTP API / CLI), each recorded with who and why. */
export const OPERATOR_STEP_TRANSITIONS: Readonly<Partial<Record<StepState, readonly StepState[]>>> = {
  error: ['enqueued', 'complete'],
};

export const TASK_TRANSITIONS: Readonly<Record<TaskState, readonly TaskState[]>> = {
  in_progress: ['complete', 'error', 'cancelled'],
  complete: [],
  error: [],
  cancelled: [],
};

/** A failed task resumes when an operator retries or resolves one of its failed steps. */
export const OPERATOR_TASK_TRANSITIONS: Readonly<Partial<Record<TaskState, readonly TaskState[]>>> = {
  error: ['in_progress'],
};

export const TERMINAL_TASK_STATES: readonly TaskState[] = ['complete', 'error', 'cancelled'];
/** States no automatic transition leaves (an operator may still retry or resolve an error). */
export const TERMINAL_STEP_STATES: readonly StepState[] = ['complete', 'error', 'cancelled'];

export function canStepTransition(from: StepState, to: StepState, by: 'engine' | 'operator' = 'engine'): boolean {
  return STEP_TRANSITIONS[from].includes(to) || (by === 'operator' && (OPERATOR_STEP_TRANSITIONS[from] ?? []).includes(to));
}

export function canTaskTransition(from: TaskState, to: TaskState, by: 'engine' | 'operator' = 'engine'): boolean {
  return TASK_TRANSITIONS[from].includes(to) || (by === 'operator' && (OPERATOR_TASK_TRANSITIONS[from] ?? []).includes(to));
}
