/**
 * Task and step state machines. The orchestrator only moves a row along an edge listed
 * here, and always with a compare-and-set on the current state (and attempt, for steps).
 *
 * Step:
 *   pending ──(all dependencies complete)──▶ enqueued
 *   enqueued ──(success result)──▶ complete
 *   enqueued ──(retryable error, attempts left)──▶ waiting_retry ──(delay expired)──▶ enqueued (attempt + 1)
 *   enqueued ──(permanent error, or no attempts left)──▶ error
 *   pending | enqueued | waiting_retry ──(task cancelled)──▶ cancelled
 *
 * Task:
 *   in_progress ──(every step complete)──▶ complete
 *   in_progress ──(a step in error and nothing left in flight)──▶ error
 *   in_progress ──(cancel)──▶ cancelled
 */
export const StepState = {
  PENDING: 'pending',
  ENQUEUED: 'enqueued',
  WAITING_RETRY: 'waiting_retry',
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
  enqueued: ['complete', 'waiting_retry', 'error', 'cancelled'],
  waiting_retry: ['enqueued', 'cancelled'],
  complete: [],
  error: [],
  cancelled: [],
};

export const TASK_TRANSITIONS: Readonly<Record<TaskState, readonly TaskState[]>> = {
  in_progress: ['complete', 'error', 'cancelled'],
  complete: [],
  error: [],
  cancelled: [],
};

export const TERMINAL_TASK_STATES: readonly TaskState[] = ['complete', 'error', 'cancelled'];
export const TERMINAL_STEP_STATES: readonly StepState[] = ['complete', 'error', 'cancelled'];

export function canStepTransition(from: StepState, to: StepState): boolean {
  return STEP_TRANSITIONS[from].includes(to);
}

export function canTaskTransition(from: TaskState, to: TaskState): boolean {
  return TASK_TRANSITIONS[from].includes(to);
}
