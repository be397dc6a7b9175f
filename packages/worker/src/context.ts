import { WaitForTask } from './wait-for-task.ts';
import type { Logger } from 'pino';
import type { StepMessage } from '@tasker/protocol';
import type { CreateTaskOptions, CreateTaskRequest, CreateTaskResult } from '@tasker/client';

/** A step handler: its return value (JSON-serializable; `undefined` → null) is the step's result. */
export type StepHandler = (ctx: StepContext) => unknown | Promise<unknown>;

/** How the context creates tasks: the worker's AmqpTaskRequester, or a stand-in in tests. */
export type RequestTask = (req: CreateTaskRequest, options: CreateTaskOptions) => Promise<CreateTaskResult>;

/** What a handler gets for one attempt of one step. */
export interface StepContext {
  readonly taskId: string;
  readonly stepId: string;
  readonly stepName: string;
  readonly namespace: string;
  readonly taskName: string;
  readonly taskVersion: string;
  /** The task's correlation id, carried to tasks created from this step. */
  readonly correlationId: string;
  /** 1 for the first attempt. */
  readonly attempt: number;
  readonly maxAttempts: number;
  /** `<step_id>:<attempt>`: the same across redeliveries of this attempt. Use it for side effects. */
  readonly idempotencyKey: string;
  /** The task's context (its input), whole. */
  readonly input: Readonly<Record<string, unknown>>;
  /** One field of the task's context. */
  getInput<T = unknown>(key: string): T | undefined;
  /** The result of a step this one depends on, directly or transitively, by step name. */
  getDependencyResult<T = unknown>(stepName: string): T | undefined;
  /** The results of every step this one depends on, directly or transitively, by step name. */
  readonly dependencyResults: Readonly<Record<string, unknown>>;
  /** The template's `handler.initialization` for this step. */
  readonly initialization: Readonly<Record<string, unknown>>;
  /** The template's `handler.method`, or null. */
  readonly method: string | null;
  /** Aborted at the step's deadline (reason: `HANDLER_TIMEOUT`) and at shutdown (`WORKER_SHUTDOWN`). */
  readonly signal: AbortSignal;
  /** Carries taskId, step, stepId, attempt and namespace. */
  readonly logger: Logger;
  /**
   * Creates a task in any namespace. Defaults: `parent` = this task and step,
   * `correlationId` = this task's, `idempotencyKey` = `<stepId>:<namespace>.<name>:<n>`
   * where n counts the calls in this invocation (1, 2, ...): the key holds no attempt, so
   * a retried or redelivered step gets the task it created before instead of a second one.
   * Gives up when {@link signal} is aborted.
   */
  createTask(req: CreateTaskRequest, options?: CreateTaskOptions): Promise<CreateTaskResult>;
  /**
   * Return this from the handler to make the step wait for a task (typically one it just
   * created) without holding a worker: the step completes with that task's result, or fails
   * with its error. `return ctx.waitFor((await ctx.createTask({...})).task.id)`.
   */
  waitFor(taskId: string): WaitForTask;
}

export interface ContextDeps {
  /** The step's signal, made when first asked for (most handlers never look at it). */
  signal: () => AbortSignal;
  /** The step's logger, made when first asked for. */
  logger: () => Logger;
  requestTask: RequestTask;
}

export function createStepContext(message: StepMessage, deps: ContextDeps): StepContext {
  const input = message.input as Record<string, unknown>;
  const dependencyResults = message.dependency_results as Record<string, unknown>;
  let createTaskCalls = 0;
  return {
    taskId: message.task_id,
    stepId: message.step_id,
    stepName: message.step_name,
    namespace: message.namespace,
    taskName: message.task_name,
    taskVersion: message.task_version,
    correlationId: message.correlation_id,
    attempt: message.attempt,
    maxAttempts: message.max_attempts,
    idempotencyKey: message.idempotency_key,
    input,
    getInput: <T>(key: string) => (Object.hasOwn(input, key) ? (input[key] as T) : undefined),
    getDependencyResult: <T>(stepName: string) =>
      Object.hasOwn(dependencyResults, stepName) ? (dependencyResults[stepName] as T) : undefined,
    dependencyResults,
    initialization: message.handler.initialization as Record<string, unknown>,
    method: message.handler.method,
    get signal() {
      return deps.signal();
    },
    get logger() {
      return deps.logger();
    },
    waitFor: (taskId: string) => new WaitForTask(taskId),
    createTask: (req, options = {}) => {
      createTaskCalls += 1;
      const n = createTaskCalls;
      const signal = options.signal ? AbortSignal.any([deps.signal(), options.signal]) : deps.signal();
      return deps.requestTask(
        {
          ...req,
          parent: req.parent ?? { taskId: message.task_id, stepId: message.step_id },
          correlationId: req.correlationId ?? (message.correlation_id || undefined),
          idempotencyKey: req.idempotencyKey ?? `${message.step_id}:${req.namespace}.${req.name}:${n}`,
        },
        { ...options, signal },
      );
    },
  };
}
