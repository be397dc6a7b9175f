import { installStopOnSignals } from './signals.ts';
import { hostname } from 'node:os';
import { nanoid } from 'nanoid';
import { pino, type Logger } from 'pino';
import { z } from 'zod';
import { DEFAULT_LOG_LEVEL, type WorkerOptions } from './config.ts';
import type { StepContext, StepHandler } from './context.ts';
import { PermanentError, RetryableError } from './errors.ts';
import { EXEC_PROTOCOL, type ExecStep } from './exec-protocol.ts';
import { ExecChild } from './exec-child.ts';
import { Worker, type WorkerState } from './worker.ts';

/** How long a child may take to send its hello. */
export const DEFAULT_EXEC_START_TIMEOUT_MS = 30_000;
/** At stop, how long the child may take to exit once its stdin is closed (then SIGTERM, then SIGKILL). */
export const DEFAULT_EXEC_STOP_TIMEOUT_MS = 5_000;

/**
 * What {@link createExecWorker} accepts: the worker's own options, without handlers (the
 * child names them in its hello), plus the child's command.
 */
export interface ExecWorkerOptions extends Omit<WorkerOptions, 'handlers'> {
  /** The program holding the handlers, started once and kept running (restarted if it dies). */
  command: string;
  /** @defaultValue [] */
  args?: readonly string[];
  /** Added to this process's environment for the child (which also gets TASKER_NAMESPACE and TASKER_EXEC_PROTOCOL). */
  env?: NodeJS.ProcessEnv;
  /** @defaultValue this process's working directory */
  cwd?: string;
  /** How long a (re)started child may take to send its hello. @defaultValue 30000 */
  startTimeoutMs?: number;
  /** At stop: how long the child may take to exit after its stdin closes, before SIGTERM (and as long again before SIGKILL). @defaultValue 5000 */
  stopTimeoutMs?: number;
  /** First delay before restarting a child that died; doubles while it keeps dying, up to `maxRestartDelayMs`. @defaultValue 100 */
  restartDelayMs?: number;
  /** @defaultValue 5000 */
  maxRestartDelayMs?: number;
}

const ExecOptionsSchema = z.object({
  command: z.string().min(1, 'must name the program to run'),
  args: z.array(z.string()),
  startTimeoutMs: z.int().min(1),
  stopTimeoutMs: z.int().min(0),
  restartDelayMs: z.int().min(0),
  maxRestartDelayMs: z.int().min(0),
});

/**
 * A worker whose handlers live in another process, in any language: the namespace's queue
 * is consumed by the TypeScript {@link Worker} (acks after confirmed results, parking,
 * timeouts, graceful shutdown, all unchanged), and each step is forwarded to a long-lived
 * child over its stdin and stdout in JSON lines (see exec-protocol.ts and docs/protocol.md).
 *
 * - Steps in flight are correlated by id; the child may run them concurrently.
 * - The step's timeout is the Worker's: at the deadline the step fails with
 *   `HANDLER_TIMEOUT` and the child gets an advisory `cancel`.
 * - A child that dies fails its in-flight steps as retryable (`EXEC_CHILD_EXITED`) and is
 *   restarted with backoff; steps arriving meanwhile wait for it.
 * - A callable the child did not name in its hello fails with `HANDLER_NOT_FOUND`, naming
 *   the handlers it did name.
 */
export class ExecWorker {
  readonly namespace: string;
  readonly id: string;
  private readonly logger: Logger;
  private readonly child: ExecChild;
  private worker: Worker | null = null;
  private starting: Promise<void> | null = null;
  private stopping: Promise<void> | null = null;
  private stopped = false;
  private readonly options: ExecWorkerOptions;

  constructor(options: ExecWorkerOptions) {
    const env = process.env;
    const parsed = ExecOptionsSchema.safeParse({
      command: options.command,
      args: [...(options.args ?? [])],
      startTimeoutMs: options.startTimeoutMs ?? DEFAULT_EXEC_START_TIMEOUT_MS,
      stopTimeoutMs: options.stopTimeoutMs ?? DEFAULT_EXEC_STOP_TIMEOUT_MS,
      restartDelayMs: options.restartDelayMs ?? 100,
      maxRestartDelayMs: options.maxRestartDelayMs ?? 5000,
    });
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.map(String).join('.') || 'options'}: ${i.message}`);
      throw new Error(`invalid exec worker options: ${problems.join('; ')}`);
    }
    const o = parsed.data;
    this.namespace = options.namespace;
    this.id = options.workerId ?? `${hostname()}:${process.pid}:${nanoid(6)}`;
    // One base logger for the Worker and the child, so both carry the same fields.
    const base = options.logger ?? pino({ level: env['TASKER_LOG_LEVEL'] ?? DEFAULT_LOG_LEVEL, name: 'tasker-worker' });
    this.logger = base.child({ namespace: this.namespace, workerId: this.id, component: 'exec-bridge' });
    this.child = new ExecChild({
      command: o.command,
      args: o.args,
      env: {
        ...env,
        ...(options.env ?? {}),
        TASKER_NAMESPACE: this.namespace,
        TASKER_EXEC_PROTOCOL: EXEC_PROTOCOL,
      },
      cwd: options.cwd,
      logger: this.logger,
      startTimeoutMs: o.startTimeoutMs,
      stopTimeoutMs: o.stopTimeoutMs,
      restartDelayMs: o.restartDelayMs,
      maxRestartDelayMs: o.maxRestartDelayMs,
    });
    this.options = { ...options, logger: base, workerId: this.id };
  }

  /** The handlers the child named in its hello (empty before start). */
  get handlers(): readonly string[] {
    return this.child.handlers;
  }

  get state(): WorkerState {
    return this.worker?.state ?? (this.stopped ? 'stopped' : this.starting ? 'starting' : 'created');
  }

  /**
   * Starts the child, waits for its hello, then starts the Worker with one forwarding
   * handler per callable the child named. Rejects if the child does not start, or if the
   * Worker cannot (bad options, no broker).
   */
  start(): Promise<void> {
    if (this.starting || this.stopping) return Promise.reject(new Error(`exec worker ${this.id} cannot start twice`));
    this.starting = this.doStart();
    return this.starting;
  }

  private async doStart(): Promise<void> {
    const { command, args, env: _e, cwd: _c, startTimeoutMs: _s, stopTimeoutMs: _t, restartDelayMs: _r, maxRestartDelayMs: _m, ...workerOptions } =
      this.options;
    this.logger.info({ command, args }, 'starting the child process');
    const names = await this.child.start();
    const handlers: Record<string, StepHandler> = {};
    for (const callable of names) handlers[callable] = (ctx) => this.forward(callable, ctx);
    try {
      this.worker = new Worker({ ...workerOptions, handlers });
      if (this.stopping) return;
      await this.worker.start();
    } catch (err) {
      await this.child.stop();
      throw err;
    }
  }

  private async forward(callable: string, ctx: StepContext): Promise<unknown> {
    const step: ExecStep = {
      task_id: ctx.taskId,
      step_id: ctx.stepId,
      step_name: ctx.stepName,
      namespace: ctx.namespace,
      task_name: ctx.taskName,
      task_version: ctx.taskVersion,
      correlation_id: ctx.correlationId,
      attempt: ctx.attempt,
      max_attempts: ctx.maxAttempts,
      idempotency_key: ctx.idempotencyKey,
      handler: { callable, method: ctx.method, initialization: { ...ctx.initialization } },
      input: { ...ctx.input },
      dependency_results: { ...ctx.dependencyResults },
    };
    const outcome = await this.child.call(step, {
      signal: ctx.signal,
      logger: ctx.logger,
      createTask: (r) =>
        ctx.createTask({
          namespace: r.namespace,
          name: r.name,
          context: r.context,
          ...(r.version !== undefined ? { version: r.version } : {}),
          ...(r.idempotency_key !== undefined ? { idempotencyKey: r.idempotency_key } : {}),
          ...(r.correlation_id !== undefined ? { correlationId: r.correlation_id } : {}),
          ...(r.requested_by !== undefined ? { requestedBy: r.requested_by } : {}),
        }),
    });
    if (!outcome.ok) throw new RetryableError(outcome.message, { code: outcome.code });
    const r = outcome.result;
    if (r.status === 'success') return r.result ?? null;
    if (r.status === 'waiting') return ctx.waitFor(r.wait_for.task_id);
    const e = r.error;
    const common = { ...(e.code !== undefined ? { code: e.code } : {}), ...(e.details !== undefined ? { details: e.details } : {}) };
    if (e.kind === 'permanent') throw new PermanentError(e.message, common);
    throw new RetryableError(e.message, { ...common, ...(e.retry_after_ms != null ? { retryAfterMs: e.retry_after_ms } : {}) });
  }

  /**
   * Stops the Worker (running steps finish within its shutdown grace, the rest go back to
   * the queue), then closes the child's stdin and waits for it to exit. Idempotent.
   */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    await this.starting?.catch(() => undefined);
    await this.worker?.stop();
    await this.child.stop();
    this.stopped = true;
  }

  /** SIGTERM or SIGINT → stop(), then exit 0 (1 if stopping failed); a second signal exits at once with 1. */
  installSignalHandlers(): () => void {
    return installStopOnSignals(() => this.stop(), this.logger, 'exec worker');
  }

}

/** Builds an exec worker; nothing starts before {@link ExecWorker.start}. Throws on invalid options. */
export function createExecWorker(options: ExecWorkerOptions): ExecWorker {
  return new ExecWorker(options);
}
