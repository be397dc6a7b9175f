/**
 * Per-step overhead of a worker, in any language, without the orchestrator or the database:
 * step messages are published straight to the namespace's queue (on an AMQP prefix of their
 * own, removed afterwards) and the time until each result reaches the results exchange is
 * measured. The handler is a conformance worker's `conformance_succeed`, which does nothing,
 * so what is measured is the worker runtime: decode, dispatch to the handler (and, for the
 * exec bridge, the JSON-lines round trip to the child), result encoding, confirmed publish,
 * ack — plus one publish and one delivery through RabbitMQ each way.
 *
 * Two figures: the latency one step at a time (nothing else in flight), and the rate with
 * `inFlight` steps kept outstanding. Used by `bin/overhead.ts` and by `pnpm bench`
 * (section `languages`). A measurement, not a test: it asserts nothing about speed.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import amqp from 'amqplib';
import { coreTopology, names, namespaceTopology, DEFAULT_TOPOLOGY_OPTIONS, type QueueType, type Topology } from '@tasker/protocol';
import { WorkerProcess } from './worker-process.ts';

/** The namespace the measured worker serves (each measurement has a prefix of its own). */
const NAMESPACE = 'overhead';

export interface WorkerOverheadOptions {
  /** A conformance worker's command line: it must serve `conformance_succeed` in `TASKER_NAMESPACE`. */
  command: readonly string[];
  /** Added to this process's environment for the worker; `TASKER_AMQP_URL`, `TASKER_AMQP_PREFIX` and `TASKER_NAMESPACE` are set here. */
  env?: NodeJS.ProcessEnv;
  /** Working directory of the worker. @defaultValue process.cwd() */
  cwd?: string;
  /** @defaultValue TASKER_AMQP_URL, else amqp://guest:guest@127.0.0.1:5672 */
  amqpUrl?: string;
  /** AMQP prefix of everything declared (and removed afterwards); it must be one no one else uses. @defaultValue `overhead<random hex>` */
  prefix?: string;
  /** Type of the step queue and of the other work queues declared. @defaultValue 'quorum' */
  queueType?: QueueType;
  /** Steps timed one at a time. @defaultValue 300 */
  steps?: number;
  /** Unmeasured steps, one at a time, before the timed ones (connections, JIT, caches). @defaultValue 20 */
  warmup?: number;
  /**
   * The warm-up goes on, one step at a time, until it has also run this long: a one-at-a-time
   * load gets faster over its first seconds, as V8 optimizes the Node code on the path (this
   * kit's included). @defaultValue 0
   */
  warmupMs?: number;
  /** Steps kept outstanding for the rate. @defaultValue 200 */
  inFlight?: number;
  /**
   * Steps of the rate measurement: a new one is published as each result arrives, so
   * `inFlight` stay outstanding until the last ones. Equal to `inFlight`, it is one batch.
   * @defaultValue 5 × inFlight
   */
  inFlightSteps?: number;
  /** The worker's output goes here (appended) as well as to the error messages. @defaultValue null */
  logPath?: string | null;
  /** How long the worker may take to consume its queue. @defaultValue 60000 */
  startTimeoutMs?: number;
  /** How long any one result may take. @defaultValue 60000 */
  resultTimeoutMs?: number;
  /** Epoch ms after which no further step is timed one at a time (the rate is still measured). @defaultValue none */
  deadline?: number;
}

export interface WorkerOverhead {
  queue_type: QueueType;
  /** Spawn of the command → its consumer on the step queue, ms. */
  start_ms: number;
  /** Steps timed one at a time (fewer than asked when `deadline` passed). */
  steps: number;
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
  mean_ms: number;
  max_ms: number;
  in_flight: number;
  in_flight_steps: number;
  in_flight_seconds: number;
  in_flight_steps_per_sec: number;
  /** `deadline` passed before every sequential step was timed. */
  timed_out: boolean;
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}
const round = (x: number, digits = 3): number => Math.round(x * 10 ** digits) / 10 ** digits;

async function declare(ch: amqp.Channel, topology: Topology[]): Promise<void> {
  for (const t of topology) {
    for (const e of t.exchanges) await ch.assertExchange(e.name, e.type, { durable: true });
    for (const q of t.queues) await ch.assertQueue(q.name, { durable: true, arguments: q.arguments });
    for (const b of t.bindings) {
      if (b.kind === 'queue') await ch.bindQueue(b.destination, b.source, b.pattern);
      else await ch.bindExchange(b.destination, b.source, b.pattern);
    }
  }
}

async function remove(url: string, topology: Topology[]): Promise<void> {
  // A connection of its own: the measuring channel may be closed by then.
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createChannel();
    for (const t of topology) {
      for (const q of t.queues) await ch.deleteQueue(q.name);
      for (const e of t.exchanges) await ch.deleteExchange(e.name);
    }
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/**
 * Starts the worker command, measures it (see the file's comment), stops it (SIGTERM, then
 * SIGKILL to its process group after 10 s) and removes everything it declared, on success
 * and on failure. Rejects when the worker does not consume, a result is late, or a step is
 * answered with anything but success.
 */
export async function measureWorkerOverhead(options: WorkerOverheadOptions): Promise<WorkerOverhead> {
  const url = options.amqpUrl ?? process.env['TASKER_AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';
  const queueType = options.queueType ?? DEFAULT_TOPOLOGY_OPTIONS.queueType;
  const steps = options.steps ?? 300;
  const warmup = options.warmup ?? 20;
  const warmupMs = options.warmupMs ?? 0;
  const inFlight = options.inFlight ?? 200;
  const inFlightSteps = options.inFlightSteps ?? 5 * inFlight;
  const resultTimeoutMs = options.resultTimeoutMs ?? 60_000;
  for (const [name, v] of Object.entries({ steps, inFlight, inFlightSteps })) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a whole number of at least 1; got ${v}`);
  }
  if (!Number.isInteger(warmup) || warmup < 0) throw new Error(`warmup must be a whole number; got ${warmup}`);
  if (!Number.isFinite(warmupMs) || warmupMs < 0) throw new Error(`warmupMs must be a number of milliseconds, 0 or more; got ${warmupMs}`);
  if (options.command.length === 0) throw new Error('the worker command is empty');

  const n = names(options.prefix ?? `overhead${randomBytes(4).toString('hex')}`);
  const topologyOptions = { ...DEFAULT_TOPOLOGY_OPTIONS, queueType };
  const topology = [coreTopology(n, topologyOptions), namespaceTopology(n, NAMESPACE, topologyOptions)];
  const conn = await amqp.connect(url, { noDelay: true });
  let worker: WorkerProcess | null = null;
  try {
    const ch = await conn.createConfirmChannel();
    await declare(ch, topology);

    // Every result as it arrives; the waiter of a step is resolved from the consumer, so the
    // time is taken on arrival, not when a poll notices it.
    const arrived = new Map<string, number>();
    const waiters = new Map<string, () => void>();
    let wrong: string | null = null;
    const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
    await ch.bindQueue(queue, n.resultsExchange, NAMESPACE);
    await ch.consume(
      queue,
      (m) => {
        if (!m) return;
        const at = performance.now();
        type Result = { step_id: string; status?: string; error?: unknown };
        const body = JSON.parse(m.content.toString()) as Result | { message_type: 'step_results'; results: Result[] };
        // A worker may answer several steps in one `step_results` message.
        for (const r of 'results' in body ? body.results : [body]) {
          if (r.status !== 'success') wrong ??= `step ${r.step_id} answered ${r.status}: ${JSON.stringify(r.error ?? null)}`;
          arrived.set(r.step_id, at);
          waiters.get(r.step_id)?.();
        }
      },
      { noAck: true },
    );

    worker = new WorkerProcess(
      options.command,
      { ...process.env, TASKER_LOG_LEVEL: 'warn', ...options.env, TASKER_AMQP_URL: url, TASKER_AMQP_PREFIX: n.prefix, TASKER_NAMESPACE: NAMESPACE },
      options.logPath ?? null,
      options.cwd,
    );
    const spawnedAt = performance.now();
    worker.start();
    const startBy = Date.now() + (options.startTimeoutMs ?? 60_000);
    while ((await ch.checkQueue(n.stepQueue(NAMESPACE))).consumerCount === 0) {
      if (!worker.running) throw new Error(`the worker exited before consuming its queue:\n${worker.tail.join('\n')}`);
      if (Date.now() > startBy) throw new Error(`the worker did not consume its queue within ${options.startTimeoutMs ?? 60_000} ms:\n${worker.tail.join('\n')}`);
      await sleep(20);
    }
    const startMs = performance.now() - spawnedAt;

    let seq = 0;
    const publish = (): { id: string; at: number } => {
      const id = `stp_overhead_${++seq}`;
      const msg = {
        protocol_version: 1, message_type: 'step', task_id: 'tsk_overhead', namespace: NAMESPACE, task_name: 'overhead', task_version: '1.0.0',
        correlation_id: 'corr', step_id: id, step_name: 'succeed', attempt: 1, max_attempts: 1, timeout_ms: null,
        handler: { callable: 'conformance_succeed', method: null, initialization: {} }, input: { value: 'x' }, dependency_results: {},
        idempotency_key: `${id}:1`, dispatched_at: new Date().toISOString(),
      };
      const at = performance.now();
      ch.publish(n.stepsExchange, NAMESPACE, Buffer.from(JSON.stringify(msg)), {
        // The properties the orchestrator sets on a step message (stepOutgoing).
        messageId: msg.idempotency_key, correlationId: msg.correlation_id, type: 'step', persistent: true, contentType: 'application/json',
      });
      return { id, at };
    };
    const result = (id: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(id);
          resolve(arrived.get(id)!);
        };
        const timer = setTimeout(() => {
          waiters.delete(id);
          reject(new Error(`no result for ${id} after ${resultTimeoutMs} ms${worker?.running ? '' : ' (the worker exited)'}:\n${worker?.tail.join('\n')}`));
        }, resultTimeoutMs);
        if (arrived.has(id)) done();
        else waiters.set(id, done);
      });
    const check = (): void => {
      if (wrong) throw new Error(`the worker did not answer success: ${wrong}`);
    };

    // Warm-up, then one step at a time.
    const warmUntil = performance.now() + warmupMs;
    for (let i = 0; i < warmup || performance.now() < warmUntil; i++) await result(publish().id);
    check();
    const latencies: number[] = [];
    let timedOut = false;
    for (let i = 0; i < steps; i++) {
      if (options.deadline !== undefined && Date.now() > options.deadline && latencies.length > 0) {
        timedOut = true;
        break;
      }
      const { id, at } = publish();
      latencies.push((await result(id)) - at);
    }
    check();
    latencies.sort((a, b) => a - b);

    // The rate: `inFlight` outstanding, a new step published as each result arrives.
    const t0 = performance.now();
    let published = 0;
    const lane = async (): Promise<void> => {
      while (published < inFlightSteps) {
        published++;
        await result(publish().id);
      }
    };
    await Promise.all(Array.from({ length: Math.min(inFlight, inFlightSteps) }, lane));
    const seconds = (performance.now() - t0) / 1000;
    check();

    return {
      queue_type: queueType,
      start_ms: round(startMs, 1),
      steps: latencies.length,
      p50_ms: round(percentile(latencies, 0.5)),
      p95_ms: round(percentile(latencies, 0.95)),
      p99_ms: round(percentile(latencies, 0.99)),
      mean_ms: round(latencies.reduce((a, b) => a + b, 0) / latencies.length),
      max_ms: round(latencies[latencies.length - 1]!),
      in_flight: Math.min(inFlight, inFlightSteps),
      in_flight_steps: inFlightSteps,
      in_flight_seconds: round(seconds),
      in_flight_steps_per_sec: round(inFlightSteps / seconds, 1),
      timed_out: timedOut,
    };
  } finally {
    if (worker) {
      worker.signal('SIGTERM');
      // An unreferenced timer: it must not keep this process alive once the worker is gone.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([worker.exited(), new Promise((resolve) => (timer = setTimeout(resolve, 10_000).unref()))]);
      clearTimeout(timer);
      await worker.killGroup();
      await worker.closeLog();
    }
    await conn.close().catch(() => undefined);
    await remove(url, topology).catch(() => undefined);
  }
}
