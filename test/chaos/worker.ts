#!/usr/bin/env node
/**
 * The chaos suite's worker process (one of several; the runner SIGKILLs and restarts them).
 *
 * Serves the `chaos` namespace with one handler, `chaos_step`, for every step of the chaos
 * templates. Each execution:
 * 1. draws its fate: a transient failure (CHAOS_FAIL_RATE), a hang until the step's
 *    deadline (CHAOS_HANG_RATE), or success;
 * 2. works for a short random time (so kills land in the middle of steps);
 * 3. records itself (step_id, attempt, pid, fate, time) in `chaos_executions`, in the
 *    handlers' own schema of the chaos database: these rows are the handlers' side of
 *    the story, checked against the orchestrator's audit at the end. If the row cannot be
 *    written (Postgres is down) the attempt fails with a RetryableError, never succeeds
 *    unrecorded;
 * 4. then fails, hangs or returns as drawn.
 *
 * Environment: TASKER_AMQP_URL, TASKER_AMQP_PREFIX, TASKER_LOG_LEVEL (read by the worker
 * SDK), CHAOS_DATABASE_URL, CHAOS_EXECUTIONS_SCHEMA, CHAOS_WORKER_NAME, CHAOS_CONCURRENCY,
 * CHAOS_FAIL_RATE, CHAOS_HANG_RATE.
 */
import pg from 'pg';
import { createWorker, RetryableError, type StepContext } from '@tasker/worker';

const env = process.env;
const required = (name: string): string => {
  const v = env[name];
  if (!v) {
    console.error(`chaos worker: ${name} is not set`);
    process.exit(2);
  }
  return v;
};

const databaseUrl = required('CHAOS_DATABASE_URL');
const schema = required('CHAOS_EXECUTIONS_SCHEMA');
const workerName = env['CHAOS_WORKER_NAME'] ?? `worker-${process.pid}`;
const concurrency = Number(env['CHAOS_CONCURRENCY'] ?? '20');
const failRate = Number(env['CHAOS_FAIL_RATE'] ?? '0.15');
const hangRate = Number(env['CHAOS_HANG_RATE'] ?? '0.005');
/** Work time of one execution: uniform in [WORK_MIN_MS, WORK_MAX_MS]. */
const WORK_MIN_MS = 5;
const WORK_MAX_MS = 120;

if (!/^[a-z_][a-z0-9_]*$/.test(schema)) {
  console.error(`chaos worker: CHAOS_EXECUTIONS_SCHEMA '${schema}' is not a plain identifier`);
  process.exit(2);
}

const pool = new pg.Pool({
  connectionString: databaseUrl,
  max: Math.min(concurrency, 10),
  // Fail fast while Postgres is down: the attempt is retried, it must not hang on a connect.
  connectionTimeoutMillis: 2000,
  idleTimeoutMillis: 5000,
});
// An idle client whose server went away (Postgres restarted) emits 'error' on the pool;
// without a listener that would crash the worker, which is not what is being tested.
pool.on('error', () => undefined);

type Fate = 'transient' | 'hang' | 'success';

function drawFate(): Fate {
  const r = Math.random();
  if (r < failRate) return 'transient';
  if (r < failRate + hangRate) return 'hang';
  return 'success';
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

async function record(ctx: StepContext, fate: Fate, startedAt: Date): Promise<void> {
  await pool.query(
    `INSERT INTO "${schema}".chaos_executions
       (step_id, task_id, task_name, step_name, attempt, max_attempts, pid, worker, fate, started_at, recorded_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, clock_timestamp())`,
    [ctx.stepId, ctx.taskId, ctx.taskName, ctx.stepName, ctx.attempt, ctx.maxAttempts, process.pid, workerName, fate, startedAt],
  );
}

async function chaosStep(ctx: StepContext): Promise<unknown> {
  const startedAt = new Date();
  const fate = drawFate();
  await sleep(WORK_MIN_MS + Math.random() * (WORK_MAX_MS - WORK_MIN_MS), ctx.signal);
  try {
    await record(ctx, fate, startedAt);
  } catch (err) {
    throw new RetryableError(`chaos: could not record the execution: ${(err as Error).message}`, {
      code: 'CHAOS_RECORD_FAILED',
      retryAfterMs: 200,
    });
  }
  if (fate === 'transient') {
    throw new RetryableError('chaos: transient failure', { code: 'CHAOS_TRANSIENT', retryAfterMs: 20 + Math.floor(Math.random() * 80) });
  }
  if (fate === 'hang') {
    // Waits for the step's deadline (timeout_seconds): the attempt fails as HANDLER_TIMEOUT.
    await new Promise<never>((_, reject) => {
      if (ctx.signal.aborted) reject(ctx.signal.reason);
      ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true });
    });
  }
  return { step: ctx.stepName, attempt: ctx.attempt, pid: process.pid, saw: Object.keys(ctx.dependencyResults).sort() };
}

const worker = createWorker({
  namespace: 'chaos',
  concurrency,
  handlers: { chaos_step: chaosStep },
  // The runner ends the workers with SIGTERM once every task is done: nothing is running then.
  shutdownGraceMs: 3000,
  workerId: `${workerName}:${process.pid}`,
});
worker.installSignalHandlers();
await worker.start();
