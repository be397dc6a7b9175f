import type { CreationSummary, TimelineSummary } from '../timeline-summary.ts';
import pino from 'pino';
import { AmqpTaskRequester } from '@tasker/client';
import { HttpLoad, taskBody, taskInput } from '../http-load.ts';
import type { ChildMessage } from '../proc.ts';
import type { TaskerStack } from '../tasker-stack.ts';
import { nowMs, percentile, pool, round, sleep } from '../util.ts';

/** In-flight HTTP requests of the load generator in the throughput run's HTTP creation. */
export const HTTP_CONCURRENCY = 64;
/**
 * In-flight `POST /v1/tasks` of the creation section: the rate is measured with as many in
 * flight as the AMQP measurement's (AMQP_WINDOW), which keeps the orchestrator busy, and with
 * HTTP_CONCURRENCY, the figure of the sessions before 2026-11-27's eleventh.
 */
export const HTTP_CREATE_CONCURRENCY = [256, HTTP_CONCURRENCY] as const;
/** In-flight AMQP task requests of the load generator. */
export const AMQP_WINDOW = 256;

export interface ThroughputResult {
  tasks: number;
  steps: number;
  seconds: number;
  steps_per_sec: number;
  tasks_per_sec: number;
  /** How the tasks were created. */
  created_via: Via;
  /** From the first request to the last one accepted. */
  create_seconds: number;
  failed_requests: number;
  error_tasks: number;
  timed_out: boolean;
  /**
   * What the whole server wrote over the measurement, per step, other clients' work included
   * (machine.ts pgWalBetween, from the WAL itself): transaction ids handed out (transactions
   * that wrote), WAL bytes, and, where pg_walinspect could be created, commit records and
   * full-page images.
   */
  pg_write_xacts_per_step?: number;
  pg_commits_per_step?: number;
  pg_wal_bytes_per_step?: number;
  pg_wal_fpi_per_step?: number;
  /** With --trace: the orchestrators' SQL statements, and their transactions (BEGIN, alone or pipelined, and creation batches) per step. */
  sql_statements_per_step?: number;
  transactions_per_step?: number;
  /** CPU time per step of every process on the machine over the measurement, ms (others' included, named `other: …`). */
  cpu_ms_per_step?: Record<string, number>;
  /** With --repeat: steps/s of every repetition (the figures are the median one's). */
  samples?: number[];
  /** CPU (% of one core) and event-loop utilization of each Tasker process over the measurement. */
  processes?: Record<string, { cpu_pct_of_one_core: number; event_loop_utilization: number }>;
}

/** How a creation run goes: requests in flight, and what happens between an untimed warm-up and the timed requests. */
export interface CreationRun {
  /** Requests in flight. */
  concurrency?: number;
  /** Requests sent first, with the same connections, and not counted (JIT, connections, pools). @defaultValue 0 */
  warmup?: number;
  /** Wraps the timed requests (the caller records where the CPU went during them). */
  measure?: <T>(fn: () => Promise<T>) => Promise<T>;
  /** Added to the tasks' `context.i`. @defaultValue 0 */
  offset?: number;
}

/** Creates `count` tasks over HTTP one per request (round robin over the orchestrators), `HTTP_CONCURRENCY` in flight unless told. */
export async function createOverHttp(
  stack: { urls: string[]; token: string },
  namespace: string,
  name: string,
  count: number,
  deadline: number,
  run: CreationRun = {},
): Promise<Created> {
  const { urls } = stack;
  const concurrency = run.concurrency ?? HTTP_CONCURRENCY;
  const offset = run.offset ?? 0;
  const load = new HttpLoad(concurrency, stack.token);
  const latencies: number[] = [];
  const post = async (i: number, timed: boolean) => {
    const t = performance.now();
    const res = await load.post(`${urls[i % urls.length]}/v1/tasks`, taskBody(namespace, name, offset + i));
    if (res.status !== 201) throw new Error(`POST /v1/tasks answered ${res.status}: ${res.text.slice(0, 300)}`);
    if (timed) latencies.push(performance.now() - t);
  };
  try {
    const created = await warmThenTime('HTTP creation', count, run, async (from, total, timed) => {
      const r = await pool(total, concurrency, (i) => post(from + i, timed), deadline);
      return { ok: r.done, failed: r.failed, firstError: r.firstError };
    });
    return { ...created, latency_ms: latencyOf(latencies) };
  } finally {
    load.close();
  }
}

/**
 * A creation measurement: `run.warmup` tasks sent untimed (numbered after the timed ones;
 * any error fails the measurement), then the `count` timed ones inside `run.measure`.
 * `send` sends `total` tasks numbered from `from`.
 */
async function warmThenTime(
  what: string,
  count: number,
  run: Pick<CreationRun, 'warmup' | 'measure'>,
  send: (from: number, total: number, timed: boolean) => Promise<Omit<Created, 'seconds'>>,
): Promise<Created> {
  const warmup = run.warmup ?? 0;
  if (warmup > 0) {
    const w = await send(count, warmup, false);
    if (w.firstError) throw new Error(`${what} warm-up: ${w.firstError.message}`);
  }
  const measure = run.measure ?? ((fn) => fn());
  return measure(async () => {
    const t0 = performance.now();
    const r = await send(0, count, true);
    return { ...r, seconds: (performance.now() - t0) / 1000 };
  });
}

function latencyOf(ms: number[]): { p50: number; p99: number } | undefined {
  return ms.length > 0 ? { p50: round(percentile(ms, 50), 2), p99: round(percentile(ms, 99), 2) } : undefined;
}

/** Tasks per `POST /v1/tasks/batch` request of the load generator, and such requests in flight. */
export const HTTP_BATCH_SIZE = 100;
export const HTTP_BATCH_CONCURRENCY = 4;

/** Creates `count` tasks over HTTP in `POST /v1/tasks/batch` requests of `HTTP_BATCH_SIZE`, `HTTP_BATCH_CONCURRENCY` in flight. */
export async function createOverHttpBatch(
  stack: { urls: string[]; token: string },
  namespace: string,
  name: string,
  count: number,
  deadline: number,
  run: Pick<CreationRun, 'warmup' | 'measure'> = {},
): Promise<Created> {
  const { urls } = stack;
  const load = new HttpLoad(HTTP_BATCH_CONCURRENCY, stack.token);
  /** Sends the `total` tasks numbered from `from` in requests of HTTP_BATCH_SIZE. */
  const send = async (from: number, total: number) => {
    let created = 0;
    const r = await pool(
      Math.ceil(total / HTTP_BATCH_SIZE),
      HTTP_BATCH_CONCURRENCY,
      async (i) => {
        const first = i * HTTP_BATCH_SIZE;
        const tasks = Array.from({ length: Math.min(HTTP_BATCH_SIZE, total - first) }, (_, j) => taskInput(namespace, name, from + first + j));
        const res = await load.post(`${urls[i % urls.length]}/v1/tasks/batch`, JSON.stringify({ tasks }));
        if (res.status !== 200) throw new Error(`POST /v1/tasks/batch answered ${res.status}: ${res.text.slice(0, 300)}`);
        const { results } = JSON.parse(res.text) as { results: Array<{ status: number }> };
        const refused = results.find((x) => x.status !== 201);
        if (refused) throw new Error(`POST /v1/tasks/batch refused a task: ${JSON.stringify(refused).slice(0, 300)}`);
        created += results.length;
      },
      deadline,
    );
    return { ok: created, failed: total - created, firstError: r.firstError };
  };
  try {
    return await warmThenTime('HTTP batch creation', count, run, send);
  } finally {
    load.close();
  }
}

export interface Created {
  seconds: number;
  ok: number;
  failed: number;
  firstError: Error | null;
  /** Each timed request's time from sent to answered (HTTP one per request). */
  latency_ms?: { p50: number; p99: number };
}

/** A connected AMQP task requester (Tasker's client), its reply channel opened by one request to `bench_idle`. */
export async function openRequester(stack: TaskerStack): Promise<AmqpTaskRequester> {
  const requester = await AmqpTaskRequester.connect({
    url: stack.o.amqpUrl,
    prefix: stack.prefix,
    logger: pino({ level: 'silent' }),
    connectionName: 'tasker-bench',
    maxRequestsPerMessage: stack.o.requestsPerMessage,
  });
  await requester.createTask({ namespace: 'bench_idle', name: 'diamond', context: { i: -1 } });
  return requester;
}

/** Creates `count` tasks with AMQP task requests, `AMQP_WINDOW` in flight (the orchestrator batches them per turn of its loop). */
export async function createOverAmqp(
  stack: TaskerStack,
  namespace: string,
  name: string,
  count: number,
  deadline: number,
  requester?: AmqpTaskRequester,
  run: Pick<CreationRun, 'warmup' | 'measure'> = {},
): Promise<Created> {
  const r = requester ?? (await openRequester(stack));
  try {
    return await warmThenTime('AMQP creation', count, run, async (from, total) => {
      const p = await pool(
        total,
        AMQP_WINDOW,
        async (i) => {
          await r.createTask({ namespace, name, context: { i: from + i } }, { timeoutMs: 60_000 });
        },
        deadline,
      );
      return { ok: p.done, failed: p.failed, firstError: p.firstError };
    });
  } finally {
    if (!requester) await r.close();
  }
}

export type Via = 'amqp' | 'http';

/** Waits until no task is in progress (polling every `pollMs`); false at the deadline. */
async function waitNoneLive(stack: TaskerStack, deadline: number, pollMs: number): Promise<boolean> {
  for (;;) {
    if (!(await stack.anyLive())) return true;
    if (Date.now() >= deadline) return false;
    await sleep(pollMs);
  }
}

/**
 * The throughput measurement: `count` diamond tasks created as fast as they are accepted
 * (AMQP task requests, or HTTP) while the worker runs; steps per second from the first
 * request until the bench sees no task in progress (polled every 10 ms, so the figure errs
 * low by at most that).
 */
export async function diamondThroughput(stack: TaskerStack, count: number, deadline: number, via: Via): Promise<ThroughputResult> {
  const requester = via === 'amqp' ? await openRequester(stack) : null;
  await waitNoneLive(stack, deadline, 10);
  const t0 = performance.now();
  const created =
    requester !== null
      ? await createOverAmqp(stack, 'bench', 'diamond', count, deadline, requester).finally(() => requester.close())
      : await createOverHttp(stack, 'bench', 'diamond', count, deadline);
  if (created.firstError) process.stderr.write(`  creation errors (${created.failed}): ${created.firstError.message}\n`);
  const finished = await waitNoneLive(stack, deadline, 10);
  const seconds = (performance.now() - t0) / 1000;
  const { live, error } = await stack.counts();
  const doneTasks = created.ok - live;
  return {
    tasks: created.ok,
    steps: doneTasks * 4,
    seconds: round(seconds, 3),
    steps_per_sec: round((doneTasks * 4) / seconds, 1),
    tasks_per_sec: round(doneTasks / seconds, 1),
    created_via: via,
    create_seconds: round(created.seconds, 3),
    failed_requests: created.failed,
    error_tasks: error,
    timed_out: !finished,
  };
}

/**
 * Warm-up: a few tasks through the whole path (JIT, pools, prepared plans), not measured,
 * created the way the measured tasks will be (as the peers warm up with their own producer).
 */
export async function warmUp(stack: TaskerStack, count: number, deadline: number, via: Via): Promise<void> {
  if (via === 'amqp') await createOverAmqp(stack, 'bench', 'diamond', count, deadline);
  else await createOverHttp(stack, 'bench', 'diamond', count, deadline);
  await waitNoneLive(stack, deadline, 20);
}

export interface OverheadResult {
  samples: number;
  /** (task duration / 4): from sending POST /v1/tasks to seeing the task complete in the database. */
  p50: number;
  p99: number;
  mean: number;
  /** The same from the task row's own times (created_at → completed_at, both `now()` of their transactions). */
  db_p50: number;
  db_p99: number;
  /** Gap between a step's handler returning and the next step's handler starting (sub-ms, taken in the worker). */
  gap_p50: number;
  gap_p99: number;
  /** The same gap from the step rows' finished_at → next started_at (worker timestamps of 1 ms resolution). */
  gap_rows_p50: number;
  gap_rows_p99: number;
  /** Latency of POST /v1/tasks alone. */
  create_p50: number;
  /**
   * The two ends of a task that its gaps leave out (the shared monotonic clock, sub-ms, compared across
   * the bench's and the worker's processes): POST /v1/tasks sent → the first step's handler
   * starts, and the last step's handler starts → the bench sees the task complete (it reads
   * the row back to back once the worker says the last handler ran).
   */
  first_handler_p50: number;
  first_handler_p99: number;
  seen_p50: number;
  seen_p99: number;
  /** With --timeline: where each step's time goes, leg by leg (timeline-summary.ts). */
  timeline?: TimelineSummary;
  /** With --timeline: where the time from the request to the first step's handler goes. */
  timeline_creation?: CreationSummary;
  /**
   * The same count of tasks run first, before the load settled (main.ts): the figures a
   * measurement right after a quiet machine gives. Then `settle_seconds` more of the same load
   * ran unmeasured before the measured pass.
   */
  first_pass?: { p50: number; p99: number; gap_p50: number; gap_p99: number; settle_seconds: number };
  timed_out: boolean;
}

/**
 * Per-step overhead: a 4-step linear task, one at a time. The worker tells the bench over
 * IPC when the last step's handler runs; only then does the bench read the task row, back to
 * back, until it has ended.
 */
export async function linearOverhead(
  stack: TaskerStack,
  count: number,
  warm: number,
  deadline: number,
  /** Filled with each measured request's send time (util.ts nowMs), for the timeline. */
  sends?: number[],
): Promise<OverheadResult> {
  const worker = stack.worker;
  if (!worker) throw new Error('overhead needs the worker');
  const seen = new Map<string, () => void>();
  const early = new Set<string>();
  const off = worker.on((m: ChildMessage) => {
    if (m.type !== 'progress' || typeof m.taskId !== 'string') return;
    const w = seen.get(m.taskId);
    if (w) w();
    else early.add(m.taskId);
  });
  const load = new HttpLoad(1, stack.token);
  const perStep: number[] = [];
  const perStepDb: number[] = [];
  const gaps: number[] = [];
  const gapsRows: number[] = [];
  const creates: number[] = [];
  const firstHandler: number[] = [];
  const ends: number[] = [];
  let timedOut = false;
  try {
    for (let i = 0; i < warm + count; i++) {
      if (Date.now() >= deadline) {
        timedOut = true;
        break;
      }
      const t0 = performance.now();
      // The clock every process shares, as the worker's handlers stamp their results (util.ts nowMs).
      const sentAt = nowMs();
      const res = await load.post(`${stack.urls[0]}/v1/tasks`, taskBody('bench', 'linear4', i));
      const tCreated = performance.now();
      if (res.status !== 201) throw new Error(`POST /v1/tasks answered ${res.status}: ${res.text.slice(0, 300)}`);
      const id = (JSON.parse(res.text) as { task: { id: string } }).task.id;
      if (!early.delete(id)) {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`task ${id}: last step not run within 15 s`)), 15_000);
          seen.set(id, () => {
            clearTimeout(timer);
            resolve();
          });
        });
        seen.delete(id);
      }
      // Back to back, from the moment the worker says the last handler ran until the row says
      // the task ended: the end is seen one read late at most (about 0.15 ms here). Reading
      // every millisecond instead (≈1.1 ms with timer slack) saw it 0.5-0.7 ms later, 0.1-0.2 ms
      // a step, without changing the gaps (bench/RESULTS.md, session 20).
      let state = 'in_progress';
      const readUntil = Date.now() + 15_000;
      for (let k = 0; state === 'in_progress'; k++) {
        if (k > 0) {
          if (Date.now() > readUntil) throw new Error(`task ${id}: not ended 15 s after its last handler ran`);
          await new Promise((r) => setImmediate(r));
        }
        const { rows } = await stack.db.query<{ state: string }>('SELECT state FROM tasks WHERE id = $1', [id]);
        state = rows[0]?.state ?? 'missing';
      }
      const t1 = performance.now();
      const seenAt = nowMs();
      if (state !== 'complete') throw new Error(`task ${id} ended ${state}`);
      if (i < warm) continue;
      sends?.push(sentAt);
      const { rows: task } = await stack.db.query<{ ms: number }>(
        'SELECT extract(epoch FROM completed_at - created_at) * 1000 AS ms FROM tasks WHERE id = $1',
        [id],
      );
      const { rows: steps } = await stack.db.query<{ started_at: Date; finished_at: Date; t: number }>(
        `SELECT started_at, finished_at, (result->>'t')::float8 AS t FROM steps WHERE task_id = $1 ORDER BY position`,
        [id],
      );
      creates.push(tCreated - t0);
      perStep.push((t1 - t0) / 4);
      perStepDb.push(Number(task[0]!.ms) / 4);
      for (let k = 1; k < steps.length; k++) {
        gaps.push(steps[k]!.t - steps[k - 1]!.t);
        gapsRows.push(steps[k]!.started_at.getTime() - steps[k - 1]!.finished_at.getTime());
      }
      if (steps.length > 0) {
        firstHandler.push(steps[0]!.t - sentAt);
        ends.push(seenAt - steps[steps.length - 1]!.t);
      }
    }
  } finally {
    off();
    load.close();
  }
  const r = (xs: number[], p: number) => round(percentile(xs, p), 3);
  return {
    samples: perStep.length,
    p50: r(perStep, 50),
    p99: r(perStep, 99),
    mean: round(perStep.reduce((a, b) => a + b, 0) / Math.max(1, perStep.length), 3),
    db_p50: r(perStepDb, 50),
    db_p99: r(perStepDb, 99),
    gap_p50: r(gaps, 50),
    gap_p99: r(gaps, 99),
    gap_rows_p50: r(gapsRows, 50),
    gap_rows_p99: r(gapsRows, 99),
    create_p50: r(creates, 50),
    first_handler_p50: r(firstHandler, 50),
    first_handler_p99: r(firstHandler, 99),
    seen_p50: r(ends, 50),
    seen_p99: r(ends, 99),
    timed_out: timedOut,
  };
}

export interface CreateResult {
  /** One task per `POST /v1/tasks`, HTTP_CREATE_CONCURRENCY[0] (256) in flight. */
  http_per_sec: number;
  /** One task per `POST /v1/tasks`, HTTP_CONCURRENCY (64) in flight. */
  http_64_per_sec: number;
  /** `HTTP_BATCH_SIZE` tasks per `POST /v1/tasks/batch`. */
  http_batch_per_sec: number;
  amqp_per_sec: number;
  /** Untimed tasks each measurement began with. */
  warmup: number;
  http: CreateRun;
  http_64: CreateRun;
  http_batch: CreateRun;
  amqp: CreateRun;
}

export interface CreateRun {
  tasks: number;
  seconds: number;
  failed: number;
  /** Requests in flight. */
  in_flight: number;
  /** Sent → answered, of each timed request (HTTP one per request). */
  latency_ms?: { p50: number; p99: number };
}

export type CreateMeasurement = Via | 'http_64' | 'http_batch';

/**
 * Task creation alone: diamond tasks of the namespace `bench_idle`, which no worker serves,
 * so their first steps wait in its queue and nothing else runs meanwhile. Each measurement
 * starts with `warmup` untimed tasks of its own kind on its own connections: a rate taken
 * from the first request of a fresh load generator also measures the connections' set-up and
 * the JIT (3,000 tasks one per request, 64 in flight, on 2026-11-27: 1,816–2,066 tasks/s cold,
 * 2,312–2,439 after 1,000 untimed, and 2,499–2,861 for 10,000 cold).
 */
export async function creationRates(
  stack: TaskerStack,
  count: number,
  warmup: number,
  deadline: number,
  /** Wraps each measurement's timed requests (the caller records where the CPU went during them). */
  measure: <T>(what: CreateMeasurement, fn: () => Promise<T>) => Promise<T> = (_what, fn) => fn(),
): Promise<CreateResult> {
  /** A measurement's figures; its rate is taken from the unrounded seconds. */
  const report = (what: string, c: Created, inFlight: number): { run: CreateRun; perSec: number } => {
    if (c.firstError) process.stderr.write(`  ${what} errors (${c.failed}): ${c.firstError.message}\n`);
    return {
      run: { tasks: c.ok, seconds: round(c.seconds, 3), failed: c.failed, in_flight: inFlight, ...(c.latency_ms ? { latency_ms: c.latency_ms } : {}) },
      perSec: round(c.ok / c.seconds, 1),
    };
  };
  const [saturating, usual] = HTTP_CREATE_CONCURRENCY;
  const http = report(
    'HTTP creation',
    await createOverHttp(stack, 'bench_idle', 'diamond', count, deadline, { concurrency: saturating, warmup, measure: (fn) => measure('http', fn) }),
    saturating,
  );
  const http64 = report(
    `HTTP creation (${usual} in flight)`,
    await createOverHttp(stack, 'bench_idle', 'diamond', count, deadline, { concurrency: usual, warmup, offset: 10 * count, measure: (fn) => measure('http_64', fn) }),
    usual,
  );
  const batch = report(
    'HTTP batch creation',
    await createOverHttpBatch(stack, 'bench_idle', 'diamond', count, deadline, { warmup, measure: (fn) => measure('http_batch', fn) }),
    HTTP_BATCH_CONCURRENCY,
  );
  const amqp = report(
    'AMQP creation',
    await createOverAmqp(stack, 'bench_idle', 'diamond', count, deadline, undefined, { warmup, measure: (fn) => measure('amqp', fn) }),
    AMQP_WINDOW,
  );
  return {
    http_per_sec: http.perSec,
    http_64_per_sec: http64.perSec,
    http_batch_per_sec: batch.perSec,
    amqp_per_sec: amqp.perSec,
    warmup,
    http: http.run,
    http_64: http64.run,
    http_batch: batch.run,
    amqp: amqp.run,
  };
}

export interface MemoryResult {
  tasks_in_flight: number;
  create_seconds: number;
  /** Orchestrator VmHWM once started, before any task. */
  orchestrator_after_start_mb: number | null;
  /** Orchestrator VmHWM after the tasks were created (no worker yet). */
  orchestrator_after_create_mb: number | null;
  /** Orchestrator VmHWM after the backlog drained. */
  orchestrator_mb: number | null;
  worker_mb: number | null;
  drain_steps_per_sec: number;
  drain_seconds: number;
  timed_out: boolean;
}

/**
 * Memory with many tasks in flight: create `count` diamond tasks with no worker running (all
 * of them in progress, their first steps queued), then start the worker and drain them.
 */
export async function memoryInFlight(stack: TaskerStack, count: number, deadlineFor: () => number): Promise<MemoryResult> {
  const created = await createOverAmqp(stack, 'bench', 'diamond', count, deadlineFor());
  if (created.firstError) process.stderr.write(`  creation errors (${created.failed}): ${created.firstError.message}\n`);
  const { live } = await stack.counts();
  const afterCreate = stack.orchestrators[0]!.peakMemoryMb();
  await stack.startWorker();
  const t0 = performance.now();
  const finished = await waitNoneLive(stack, deadlineFor(), 20);
  const seconds = (performance.now() - t0) / 1000;
  const left = (await stack.counts()).live;
  return {
    tasks_in_flight: live,
    create_seconds: round(created.seconds, 3),
    orchestrator_after_start_mb: stack.startMb[0] ?? null,
    orchestrator_after_create_mb: afterCreate,
    orchestrator_mb: stack.orchestrators[0]!.peakMemoryMb(),
    worker_mb: stack.worker?.peakMemoryMb() ?? null,
    drain_steps_per_sec: round(((live - left) * 4) / seconds, 1),
    drain_seconds: round(seconds, 3),
    timed_out: !finished,
  };
}
