/**
 * @tasker/worker: the runtime and SDK a team runs for its namespace.
 *
 * Terminology
 * - **namespace**: a team's scope (`payments`); a worker serves exactly one and reads only
 *   its step queue.
 * - **task**: one run of a template with a context (its input).
 * - **step**: one node of a task's DAG; the orchestrator dispatches it when its
 *   dependencies are complete.
 * - **attempt**: one execution of a step; a retry is a new attempt (1, 2, ...).
 * - **handler**: the function that runs a step, found by the step's `handler.callable`.
 * - **result**: the worker's answer to one attempt: success with the handler's value, or
 *   a failure that is permanent (fail the step) or retryable (try again while attempts
 *   remain).
 *
 * ```ts
 * const worker = createWorker({
 *   namespace: 'payments',
 *   handlers: { team_scaling_payments_validate_eligibility: async (ctx) => ({ ok: true }) },
 * });
 * worker.installSignalHandlers();
 * await worker.start();
 * ```
 */
export { Worker, createWorker, type WorkerState } from './worker.ts';
export {
  DEFAULT_AMQP_URL,
  DEFAULT_CONCURRENCY,
  DEFAULT_LOG_LEVEL,
  DEFAULT_SHUTDOWN_GRACE_MS,
  DEFAULT_OVERRUN_GRACE_MS,
  resolveWorkerOptions,
  type ResolvedWorkerOptions,
  type WorkerOptions,
} from './config.ts';
export type { StepContext, StepHandler } from './context.ts';
export { WaitForTask } from './wait-for-task.ts';
export {
  PERMANENT_ERROR_CODE,
  PermanentError,
  RETRYABLE_ERROR_CODE,
  RetryableError,
  type PermanentErrorOptions,
  type RetryableErrorOptions,
} from './errors.ts';
export { parkedRoutingKey } from './dead-letter.ts';
export type { CreateTaskOptions, CreateTaskRequest, CreateTaskResult } from '@tasker/client';
export {
  DEFAULT_EXEC_START_TIMEOUT_MS,
  DEFAULT_EXEC_STOP_TIMEOUT_MS,
  ExecWorker,
  createExecWorker,
  type ExecWorkerOptions,
} from './exec-bridge.ts';
export { EXEC_CHILD_EXITED, EXEC_CHILD_UNAVAILABLE } from './exec-child.ts';
export { EXEC_PROTOCOL, type ExecStep } from './exec-protocol.ts';
