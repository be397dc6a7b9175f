import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { ErrorCode, TaskerError } from '@tasker/protocol';
import { EXEC_PROTOCOL, parseChildLine, type ExecCreateTask, type ExecResult, type ExecStep } from './exec-protocol.ts';

/** Code of the retryable failure of a step whose child process died while running it. */
export const EXEC_CHILD_EXITED = 'EXEC_CHILD_EXITED';
/** Code of the retryable failure of a step that found no running child within the start timeout. */
export const EXEC_CHILD_UNAVAILABLE = 'EXEC_CHILD_UNAVAILABLE';

/** Lines of a child that are not bridge messages are logged, cut to this length. */
const MAX_LOGGED_LINE_CHARS = 500;

export interface ExecChildOptions {
  command: string;
  args: readonly string[];
  env: NodeJS.ProcessEnv;
  cwd?: string | undefined;
  logger: Logger;
  /** How long a (re)started child may take to send its hello. */
  startTimeoutMs: number;
  /** At stop: how long the child may take to exit once its stdin is closed, before SIGTERM, and again before SIGKILL. */
  stopTimeoutMs: number;
  /** First restart delay after the child died; doubles on each death in a row up to {@link maxRestartDelayMs}. */
  restartDelayMs: number;
  maxRestartDelayMs: number;
}

/** The answer a call waits for: the child's result line, or why there will be none. */
export type CallOutcome =
  | { ok: true; result: ExecResult }
  | { ok: false; code: typeof EXEC_CHILD_EXITED | typeof EXEC_CHILD_UNAVAILABLE; message: string };

export interface CallHooks {
  /** Aborted at the step's deadline or at shutdown: the child gets an advisory cancel. */
  signal: AbortSignal;
  /** Runs a create_task request of the child on behalf of this step. */
  createTask(req: ExecCreateTask['request']): Promise<unknown>;
  /** The step's logger, for the child's log lines about it. */
  logger: Logger;
}

interface Pending {
  resolve(outcome: CallOutcome): void;
  hooks: CallHooks;
}

/** One incarnation of the child process. */
interface Incarnation {
  proc: ChildProcess;
  /** Resolves with the handler names once the hello came; rejects if it exits or stays silent first. */
  ready: Promise<string[]>;
  exited: Promise<void>;
  alive: boolean;
  /** The hello came. */
  helloed: boolean;
  pending: Map<string, Pending>;
}

/**
 * A long-lived child process speaking the exec bridge protocol. Calls are correlated by
 * id, many may be in flight; a child that dies fails its calls (the caller turns that into
 * a retryable step failure) and is started again after a backoff, while new calls wait for
 * it up to the start timeout.
 */
export class ExecChild {
  private current: Incarnation | null = null;
  private nextId = 0;
  private stopping = false;
  private restarts = 0;
  private restartTimer: NodeJS.Timeout | null = null;
  /** Resolves when a child is up again; replaced on every death. */
  private up: { promise: Promise<void>; resolve: () => void } = deferred();
  private isUp = false;
  handlers: readonly string[] = [];

  constructor(private readonly o: ExecChildOptions) {}

  /** Starts the child and resolves with the handlers it names; rejects if it does not say hello in time. */
  async start(): Promise<readonly string[]> {
    const inc = this.spawn();
    try {
      this.handlers = await inc.ready;
    } catch (err) {
      this.stopping = true; // a child that never started is not restarted
      await this.kill(inc);
      throw err;
    }
    return this.handlers;
  }

  /** Sends a step to the child; resolves when it answers, or when it dies or cannot be reached. Never rejects. */
  async call(step: ExecStep, hooks: CallHooks): Promise<CallOutcome> {
    const inc = await this.running(hooks.signal);
    if (!inc) {
      return {
        ok: false,
        code: EXEC_CHILD_UNAVAILABLE,
        message: `the worker's child process (${this.o.command}) was not running within ${this.o.startTimeoutMs} ms`,
      };
    }
    const id = String(++this.nextId);
    return new Promise<CallOutcome>((resolve) => {
      const onAbort = (): void => {
        const reason = hooks.signal.reason as { code?: unknown } | undefined;
        this.write(inc, { type: 'cancel', id, reason: typeof reason?.code === 'string' ? reason.code : 'ABORTED' });
      };
      inc.pending.set(id, {
        hooks,
        resolve: (outcome) => {
          hooks.signal.removeEventListener('abort', onAbort);
          inc.pending.delete(id);
          resolve(outcome);
        },
      });
      hooks.signal.addEventListener('abort', onAbort, { once: true });
      this.write(inc, { type: 'step', id, step });
    });
  }

  /** Closes the child's stdin and waits for it to exit: SIGTERM, then SIGKILL, if it takes too long. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const inc = this.current;
    if (!inc || !inc.alive) return;
    inc.proc.stdin?.end();
    if (await this.exitsWithin(inc, this.o.stopTimeoutMs)) return;
    this.o.logger.warn({ timeoutMs: this.o.stopTimeoutMs }, 'child did not exit after its stdin closed: SIGTERM');
    await this.kill(inc);
  }

  private async kill(inc: Incarnation): Promise<void> {
    if (!inc.alive) return;
    inc.proc.kill('SIGTERM');
    if (await this.exitsWithin(inc, this.o.stopTimeoutMs)) return;
    this.o.logger.warn('child did not exit after SIGTERM: SIGKILL');
    inc.proc.kill('SIGKILL');
    await inc.exited;
  }

  private async exitsWithin(inc: Incarnation, ms: number): Promise<boolean> {
    const timer = new AbortController();
    const done = await Promise.race([
      inc.exited.then(() => true),
      sleep(ms, false, { signal: timer.signal }).catch(() => false),
    ]);
    timer.abort();
    return done;
  }

  /** The running child once it said hello; null if none came within the start timeout or the signal aborted. */
  private async running(signal: AbortSignal): Promise<Incarnation | null> {
    const inc = this.current;
    if (inc?.alive && inc.helloed) return inc;
    if (this.stopping) return null;
    const timer = new AbortController();
    const gaveUp = sleep(this.o.startTimeoutMs, null, { signal: AbortSignal.any([timer.signal, signal]) }).catch(() => null);
    const result = await Promise.race([this.up.promise.then(() => this.current), gaveUp]);
    timer.abort();
    return result?.alive ? result : null;
  }

  private spawn(): Incarnation {
    const { command, args, env, cwd, logger } = this.o;
    // Own process group: a Ctrl-C in a terminal reaches the runtime, which finishes its steps
    // and then closes the child's stdin, instead of killing the child mid-step.
    const proc = spawn(command, [...args], { env, cwd, stdio: ['pipe', 'pipe', 'inherit'], detached: true });
    const pending = new Map<string, Pending>();
    let helloTimer: NodeJS.Timeout | undefined;
    let onHello!: (handlers: string[]) => void;
    let onNoHello!: (err: Error) => void;
    const ready = new Promise<string[]>((resolve, reject) => {
      onHello = resolve;
      onNoHello = reject;
    });
    ready.catch(() => undefined);
    let startedAt = Date.now();
    const inc: Incarnation = { proc, ready, exited: Promise.resolve(), alive: true, helloed: false, pending };
    inc.exited = new Promise((resolve) => {
      const gone = (code: number | null, signal: NodeJS.Signals | null, spawnError?: Error): void => {
        if (!inc.alive) return;
        inc.alive = false;
        clearTimeout(helloTimer);
        const how = spawnError ? `could not be started: ${spawnError.message}` : `exited (code ${code}, signal ${signal})`;
        onNoHello(new TaskerError(ErrorCode.INTERNAL, `the worker's child process ${command} ${how} before its hello`));
        for (const p of [...pending.values()]) {
          p.resolve({ ok: false, code: EXEC_CHILD_EXITED, message: `the worker's child process ${how} while running this step` });
        }
        if (this.current === inc && this.isUp) {
          this.isUp = false;
          this.up = deferred();
        }
        // Before the first hello, start() reports the failure and nothing is restarted.
        if (!this.stopping && this.handlers.length > 0) {
          logger.error({ code, signal, inFlight: pending.size }, `child process ${how}; restarting it`);
          this.scheduleRestart(Date.now() - startedAt);
        }
        resolve();
      };
      proc.once('exit', (code, signal) => gone(code, signal));
      proc.once('error', (err) => gone(null, null, err));
    });
    helloTimer = setTimeout(() => {
      onNoHello(
        new TaskerError(
          ErrorCode.INTERNAL,
          `the worker's child process ${command} sent no hello within ${this.o.startTimeoutMs} ms ` +
            `(its first stdout line must be {"type":"hello","protocol":"${EXEC_PROTOCOL}","handlers":[...]})`,
        ),
      );
      if (this.current === inc) void this.kill(inc);
    }, this.o.startTimeoutMs);
    proc.stdin!.on('error', (err) => logger.debug({ err }, 'child stdin closed'));
    createInterface({ input: proc.stdout!, crlfDelay: Infinity }).on('line', (line) => {
      if (line.trim() === '') return;
      const m = parseChildLine(line);
      switch (m.kind) {
        case 'hello':
          if (inc.helloed) return;
          clearTimeout(helloTimer);
          inc.helloed = true;
          startedAt = Date.now();
          if (this.handlers.length > 0 && m.handlers.join('\n') !== this.handlers.join('\n')) {
            logger.warn({ before: this.handlers, now: m.handlers }, 'restarted child names other handlers; the first list stays in force');
          }
          onHello(m.handlers);
          logger.info({ pid: proc.pid, handlers: m.handlers }, 'child process ready');
          if (this.current === inc && !this.isUp) {
            this.isUp = true;
            this.up.resolve();
          }
          return;
        case 'result': {
          const p = pending.get(m.id);
          if (p) p.resolve({ ok: true, result: m });
          else logger.warn({ id: m.id }, 'child answered a step that is not in flight (answered twice, or after it died?); ignored');
          return;
        }
        case 'create_task':
          void this.createTask(inc, m);
          return;
        case 'log': {
          const target = (m.id && pending.get(m.id)?.hooks.logger) || logger;
          target[m.level]({ ...(m.fields ?? {}), source: 'child' }, m.message);
          return;
        }
        case 'ignored':
          logger.debug({ type: m.type }, 'child sent a message type this runtime does not know; ignored');
          return;
        case 'invalid':
          logger.warn(
            { problem: m.problem, line: line.slice(0, MAX_LOGGED_LINE_CHARS) },
            'child wrote a stdout line that is not a bridge message (log to stderr instead); ignored',
          );
          return;
      }
    });
    this.current = inc;
    return inc;
  }

  private scheduleRestart(livedMs: number): void {
    // A child that ran a while before dying is not crash-looping: start over from the first delay.
    if (livedMs > 10 * this.o.maxRestartDelayMs) this.restarts = 0;
    const delay = Math.min(this.o.maxRestartDelayMs, this.o.restartDelayMs * 2 ** this.restarts);
    this.restarts += 1;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (this.stopping) return;
      const inc = this.spawn();
      inc.ready.catch((err: unknown) => this.o.logger.error({ err }, 'restarted child did not become ready'));
    }, delay);
  }

  private async createTask(inc: Incarnation, m: ExecCreateTask): Promise<void> {
    const p = inc.pending.get(m.id);
    let reply: Record<string, unknown>;
    if (!p) {
      reply = {
        ok: false,
        error: { code: ErrorCode.INTERNAL, message: `create_task for step call '${m.id}', which is not in flight` },
      };
    } else {
      try {
        const r = (await p.hooks.createTask(m.request)) as { created: boolean; task: unknown };
        reply = { ok: true, created: r.created, task: r.task };
      } catch (err) {
        const e = err instanceof TaskerError ? err.toJSON() : { code: ErrorCode.INTERNAL, message: String((err as Error)?.message ?? err) };
        reply = { ok: false, error: e };
      }
    }
    this.write(inc, { type: 'create_task_result', request_id: m.request_id, ...reply });
  }

  private write(inc: Incarnation, message: unknown): void {
    if (!inc.alive || !inc.proc.stdin?.writable) return;
    inc.proc.stdin.write(`${JSON.stringify(message)}\n`);
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
