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
  return new Context(message, deps);
}

/**
 * A class rather than an object literal: a literal with getters (`signal`, `logger`) cost V8
 * about 2 µs to make on the bench's machines, once per step; the class's getters are made
 * once. The methods stay functions of the instance, so a handler may destructure them.
 */
class Context implements StepContext {
  readonly taskId: string;
  readonly stepId: string;
  readonly stepName: string;
  readonly namespace: string;
  readonly taskName: string;
  readonly taskVersion: string;
  readonly correlationId: string;
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly idempotencyKey: string;
  readonly input: Readonly<Record<string, unknown>>;
  readonly dependencyResults: Readonly<Record<string, unknown>>;
  readonly initialization: Readonly<Record<string, unknown>>;
  readonly method: string | null;
  readonly getInput: <T = unknown>(key: string) => T | undefined;
  readonly getDependencyResult: <T = unknown>(stepName: string) => T | undefined;
  readonly waitFor: (taskId: string) => WaitForTask;
  readonly createTask: (req: CreateTaskRequest, options?: CreateTaskOptions) => Promise<CreateTaskResult>;
  readonly #deps: ContextDeps;

  constructor(message: StepMessage, deps: ContextDeps) {
    const input = message.input as Record<string, unknown>;
    const dependencyResults = message.dependency_results as Record<string, unknown>;
    let createTaskCalls = 0;
    this.#deps = deps;
    this.taskId = message.task_id;
    this.stepId = message.step_id;
    this.stepName = message.step_name;
    this.namespace = message.namespace;
    this.taskName = message.task_name;
    this.taskVersion = message.task_version;
    this.correlationId = message.correlation_id;
    this.attempt = message.attempt;
    this.maxAttempts = message.max_attempts;
    this.idempotencyKey = message.idempotency_key;
    this.input = input;
    this.dependencyResults = dependencyResults;
    this.initialization = message.handler.initialization as Record<string, unknown>;
    this.method = message.handler.method;
    this.getInput = <T>(key: string) => (Object.hasOwn(input, key) ? (input[key] as T) : undefined);
    this.getDependencyResult = <T>(stepName: string) =>
      Object.hasOwn(dependencyResults, stepName) ? (dependencyResults[stepName] as T) : undefined;
    this.waitFor = (taskId: string) => new WaitForTask(taskId);
    this.createTask = (req, options = {}) => {
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
    };
  }

  get signal(): AbortSignal {
    return this.#deps.signal();
  }

  get logger(): Logger {
    return this.#deps.logger();
  }
}
