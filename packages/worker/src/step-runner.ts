import { WaitForTask } from './wait-for-task.ts';
import type { Logger } from 'pino';
import {
  answering,
  ErrorCode,
  Limits,
  TaskerError,
  type StepError,
  type StepMessage,
  type StepResult,
} from '@tasker/protocol';
import { createStepContext, type RequestTask, type StepHandler } from './context.ts';
import { toStepError } from './errors.ts';

export interface StepRunnerDeps {
  handlers: Readonly<Record<string, StepHandler>>;
  workerId: string;
  /** The worker's logger; each step gets a child with taskId, step, stepId and attempt. */
  logger: Logger;
  requestTask: RequestTask;
  /** Deliveries of this step message so far, from the broker's headers. */
  deliveryCount?: number;
}

/** One attempt of one step, running. */
export interface StepRun {
  /**
   * The attempt's result: resolves when the handler returns or throws, or at the step's
   * deadline, whichever comes first. Never rejects.
   */
  readonly result: Promise<StepResult>;
  /**
   * Resolves when the handler has really returned (or thrown), which for a handler that
   * ignores its signal can be long after the deadline (the worker frees its slot after a grace period).
   */
  readonly settled: Promise<void>;
  /** Aborts the handler's signal (shutdown); the result, if any comes, is the caller's to ignore. */
  abort(reason: unknown): void;
}

type JsonResult = Extract<StepResult, { status: 'success' }>['result'];
type Outcome =
  | { status: 'success'; result: JsonResult }
  | { status: 'failure'; error: StepError }
  | { status: 'waiting'; wait_for: { task_id: string } };

/** What a handler that returned after its deadline produced, as far as anyone cares. */
const LATE: Outcome = { status: 'success', result: null };

/** Node clamps larger timer delays to 1 ms; no template timeout comes close (7 days at most). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Runs one step message through its handler and builds the StepResult: success with the
 * returned value, or the failure the thrown value maps to (see `toStepError`). A step with
 * `timeout_ms` gets its failure (`HANDLER_TIMEOUT`, retryable) at the deadline without
 * waiting for the handler: a handler that ignores `ctx.signal` cannot hold the step.
 */
export function runStep(message: StepMessage, deps: StepRunnerDeps): StepRun {
  const startedAt = new Date();
  // The step's logger and abort signal are made on first use: one of each per step was a
  // measurable share of the worker's CPU per step (pino serializes a child's bindings when
  // it is made; an AbortController is a native object), and most steps use neither.
  let stepLogger: Logger | null = null;
  const log = (): Logger =>
    (stepLogger ??= deps.logger.child({
      taskId: message.task_id,
      step: message.step_name,
      stepId: message.step_id,
      attempt: message.attempt,
    }));
  let controller: AbortController | null = null;
  let abortedWith: { reason: unknown } | null = null;
  const signal = (): AbortSignal => {
    if (!controller) {
      controller = new AbortController();
      if (abortedWith) controller.abort(abortedWith.reason);
    }
    return controller.signal;
  };
  const abort = (reason: unknown): void => {
    if (abortedWith) return;
    abortedWith = { reason };
    controller?.abort(reason);
  };
  // Properties are set one by one on the object answering() makes, not spread: a spread
  // followed by more properties (`{ ...base, status }`) cost V8 2-5 µs an object on the
  // bench's machines, more than the rest of building a result (issue 7).
  const build = (outcome: Outcome): StepResult => {
    const r: Record<string, unknown> = answering(message);
    r.started_at = startedAt.toISOString();
    r.finished_at = new Date().toISOString();
    r.worker_id = deps.workerId;
    if (deps.deliveryCount) r.delivery_count = deps.deliveryCount;
    r.status = outcome.status;
    if (outcome.status === 'waiting') r.wait_for = outcome.wait_for;
    else if (outcome.status === 'success') r.result = outcome.result;
    else r.error = outcome.error;
    return r as StepResult;
  };

  const callable = message.handler.callable;
  const handler = Object.hasOwn(deps.handlers, callable) ? deps.handlers[callable] : undefined;
  if (!handler) {
    const available = Object.keys(deps.handlers).sort();
    const error: StepError = {
      kind: 'permanent',
      code: ErrorCode.HANDLER_NOT_FOUND,
      message:
        `no handler for callable '${callable}' (step ${message.step_name}) in namespace '${message.namespace}'; ` +
        `this worker has: ${available.length > 0 ? available.join(', ') : '(none)'}`,
    };
    log().error({ callable, available }, error.message);
    return { result: Promise.resolve(build({ status: 'failure', error })), settled: Promise.resolve(), abort: () => undefined };
  }

  if (deps.logger.isLevelEnabled('debug')) log().debug({ callable }, 'step started');
  const ctx = createStepContext(message, { signal, logger: log, requestTask: deps.requestTask });
  const startMs = Date.now();
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;

  // Settles when the handler really returns; the value is only turned into a result if
  // it came in time.
  const handled = Promise.resolve()
    .then(() => handler(ctx))
    .then(
      (value) => ({ ok: true as const, value }),
      (thrown: unknown) => ({ ok: false as const, thrown }),
    );

  const inTime: Promise<Outcome> = handled.then((h) => {
    // Past the deadline the step is answered already: neither serialize nor log this one.
    if (timedOut) return LATE;
    if (h.ok) return successOutcome(h.value, log);
    const { error, notes } = toStepError(h.thrown);
    const fields = { err: h.thrown, kind: error.kind, code: error.code };
    if (notes.length > 0) log().warn({ notes }, 'handler error adjusted to fit a step result');
    if (error.kind === 'permanent') log().warn(fields, 'step failed permanently');
    else log().warn(fields, 'step failed; retryable');
    return { status: 'failure', error };
  });

  let outcome = inTime;
  const timeoutMs = message.timeout_ms;
  if (timeoutMs !== null) {
    const deadline = new Promise<Outcome>((resolve) => {
      timer = setTimeout(() => {
        timedOut = true;
        const text = `handler for step ${message.step_name} did not finish within its timeout of ${timeoutMs} ms`;
        abort(new TaskerError(ErrorCode.HANDLER_TIMEOUT, text));
        log().warn(
          { timeoutMs },
          'step timed out: result sent now; the handler was aborted',
        );
        resolve({ status: 'failure', error: { kind: 'retryable', code: ErrorCode.HANDLER_TIMEOUT, message: text } });
      }, Math.min(timeoutMs, MAX_TIMER_MS));
    });
    outcome = Promise.race([inTime, deadline]);
  }

  const settled = handled.then(() => {
    clearTimeout(timer);
    if (timedOut) {
      log().warn({ lateByMs: Date.now() - startMs - (timeoutMs ?? 0) }, 'timed-out handler returned; its result is ignored');
    }
  });
  const result = outcome.then((o) => {
    clearTimeout(timer);
    const r = build(o);
    // Debug, not info: one line per step is the hot path's biggest write at volume; failures stay at warn.
    if (r.status === 'success' && deps.logger.isLevelEnabled('debug')) log().debug({ durationMs: Date.now() - startMs }, 'step succeeded');
    return r;
  });
  return { result, settled, abort };
}

/** The returned value as the JSON that travels, or a permanent failure if it cannot travel. */
function successOutcome(value: unknown, log: () => Logger): Outcome {
  if (value instanceof WaitForTask) return { status: 'waiting', wait_for: { task_id: value.taskId } };
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (err) {
    const message = `the handler's result is not JSON-serializable: ${(err as Error).message}`;
    log().error(message);
    return { status: 'failure', error: { kind: 'permanent', code: ErrorCode.INVALID_MESSAGE, message } };
  }
  // undefined (and a function or symbol, which JSON cannot hold either) is "no result": null.
  if (json === undefined) return { status: 'success', result: null };
  const bytes = Buffer.byteLength(json);
  if (bytes > Limits.maxResultBytes) {
    const message = `the handler's result is ${bytes} bytes as JSON; the limit is ${Limits.maxResultBytes} bytes`;
    log().error(message);
    return { status: 'failure', error: { kind: 'permanent', code: ErrorCode.PAYLOAD_TOO_LARGE, message } };
  }
  return { status: 'success', result: JSON.parse(json) as JsonResult };
}
