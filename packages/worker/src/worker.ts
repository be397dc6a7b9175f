import { installStopOnSignals } from './signals.ts';
import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import {
  ControlMessage,
  ErrorCode,
  STEP_MESSAGES_SHAPE,
  StepMessage,
  TaskerError,
  decodeMessage,
  decodeOneOrMany,
  type DecodedPart,
  type StepResult,
} from '@tasker/protocol';
import { Broker, amqpUsername, type Consumer, type Delivery } from '@tasker/transport';
import { AmqpTaskRequester } from '@tasker/client';
import { redactUrl, resolveWorkerOptions, type ResolvedWorkerOptions, type WorkerOptions } from './config.ts';
import { parkStepMessage } from './dead-letter.ts';
import { Slots } from './slots.ts';
import { PrefetchTuner } from './prefetch.ts';
import { runStep, type StepRun } from './step-runner.ts';
import { ResultPublisher } from './result-publisher.ts';

/** How often start() checks for the namespace's queue. */
const QUEUE_POLL_MS = 1000;
/** How often start() says it is still waiting for the queue. */
const QUEUE_WAIT_LOG_MS = 5000;
/** Pause before giving back a message whose result (or parking) could not be published, so a lasting fault does not spin. */
const PUBLISH_FAILURE_BACKOFF_MS = 1000;

export type WorkerState = 'created' | 'starting' | 'running' | 'stopping' | 'stopped';

/** One delivery being handled, from decoding to the ack: one step, or several (a `steps` message). */
interface Job {
  readonly delivery: Delivery;
  /** Its steps once decoded, each with its run once started (for cancellations). */
  readonly steps: Array<{ taskId: string; run: StepRun | null }>;
  /** Given back to the queue at shutdown: nothing more is published or acked for it. */
  handedBack: boolean;
}

/**
 * How one step of a delivery ended: answered (its result confirmed, or it was parked),
 * `failed` (the result or the parking was not confirmed: the delivery goes back after a
 * pause) or `given_back` (the worker stopped before it started).
 */
type StepEnd = 'answered' | 'failed' | 'given_back';

/**
 * The worker runtime of one namespace: consumes the namespace's step queue, runs each step
 * through its handler, publishes the result (confirmed) and only then acks the step (a
 * `steps` message once every one of its steps is answered).
 * At-least-once: a step whose result was not confirmed is delivered again, and the
 * orchestrator ignores a second result for the same attempt.
 */
export class Worker {
  readonly id: string;
  readonly namespace: string;
  private readonly options: ResolvedWorkerOptions;
  private readonly logger: Logger;
  private readonly queue: string;
  /** The connection's broker user, which RabbitMQ validates as each result's user_id (parsed once, not per step). */
  private readonly userId: string;
  private readonly slots: Slots;
  private readonly prefetchTuner: PrefetchTuner;
  /** Handlers answered as timed out that still hold their slot (until they return, or the overrun grace ends). */
  private overrunning = 0;
  private readonly jobs = new Map<Job, Promise<void>>();
  /** Aborted by stop(): ends the wait for the queue and the waits for a slot. */
  private readonly shutdown = new AbortController();
  private currentState: WorkerState = 'created';
  private broker: Broker | null = null;
  private consumer: Consumer | null = null;
  private requester: AmqpTaskRequester | null = null;
  private results: ResultPublisher | null = null;
  private starting: Promise<void> | null = null;
  private stopping: Promise<void> | null = null;

  constructor(options: WorkerOptions, env: NodeJS.ProcessEnv = process.env) {
    this.options = resolveWorkerOptions(options, env);
    this.id = this.options.workerId;
    this.namespace = this.options.namespace;
    this.logger = this.options.logger;
    this.queue = this.options.names.stepQueue(this.namespace);
    this.userId = amqpUsername(this.options.amqpUrl);
    this.slots = new Slots(this.options.concurrency);
    this.prefetchTuner = new PrefetchTuner(this.options.concurrency);
    // Every step waiting for a slot listens for the shutdown: with `steps` messages there may
    // be hundreds (prefetch × steps per message), not a leak.
    setMaxListeners(0, this.shutdown.signal);
  }

  get state(): WorkerState {
    return this.currentState;
  }

  /**
   * Step messages the broker may send before this worker acks one: its concurrency, or fewer
   * when messages carry several steps each (see prefetch.ts).
   */
  get prefetch(): number {
    return this.prefetchTuner.current;
  }

  /**
   * Connects, waits until the namespace's step queue exists (the orchestrator declares it
   * when a template of the namespace is registered), then consumes it. Resolves once
   * consuming, or early if stop() is called meanwhile. Rejects if RabbitMQ cannot be
   * reached (after the broker's start-up retries).
   */
  start(): Promise<void> {
    if (this.currentState !== 'created') {
      return Promise.reject(new Error(`worker ${this.id} cannot start: it is ${this.currentState}`));
    }
    this.currentState = 'starting';
    this.starting = this.doStart();
    return this.starting;
  }

  private async doStart(): Promise<void> {
    const o = this.options;
    this.logger.info(
      { url: redactUrl(o.amqpUrl), queue: this.queue, concurrency: o.concurrency, handlers: Object.keys(o.handlers) },
      'worker starting',
    );
    const broker = await Broker.connect({
      url: o.amqpUrl,
      connectionName: `tasker-worker ${this.namespace} ${this.id}`,
      logger: this.logger,
    });
    this.broker = broker;
    try {
      if (!(await this.waitForQueue(broker))) return;
      this.requester = new AmqpTaskRequester(broker, { prefix: o.names.prefix, logger: this.logger });
      this.results = new ResultPublisher(broker, { exchange: o.names.resultsExchange, routingKey: this.namespace, userId: this.userId });
      this.consumer = await broker.consume(this.queue, { prefetch: o.concurrency }, (d) => this.onDelivery(d));
      await this.listenForCancellations(broker);
    } catch (err) {
      this.broker = null;
      await broker.close();
      throw err;
    }
    if (this.shutdown.signal.aborted) return; // stop() closes the consumer
    this.currentState = 'running';
    this.logger.info({ queue: this.queue }, 'worker consuming');
  }

  /**
   * Cancellations reach every worker on the control fanout exchange, through a queue of this
   * worker's own (exclusive, deleted with the connection, re-created after a reconnect):
   * running handlers of a cancelled task get their signal aborted.
   */
  private async listenForCancellations(broker: Broker): Promise<void> {
    const exchange = this.options.names.controlExchange;
    await broker.channel(false, async (ch) => {
      const q = await ch.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
      await ch.bindQueue(q.queue, exchange, '');
      await ch.consume(q.queue, (msg) => {
        if (!msg) return;
        const decoded = decodeMessage(ControlMessage, msg.content, 'control message');
        if (!decoded.ok) {
          this.logger.warn({ reason: decoded.error.message }, 'control message ignored');
          return;
        }
        const ids = new Set(decoded.value.task_ids);
        for (const job of this.jobs.keys()) {
          for (const step of job.steps) {
            if (ids.has(step.taskId) && step.run) {
              this.logger.info({ taskId: step.taskId, reason: decoded.value.reason }, 'task cancelled: aborting its running step');
              step.run.abort(new TaskerError(ErrorCode.INVALID_STATE, `task ${step.taskId} was cancelled: ${decoded.value.reason}`));
            }
          }
        }
      }, { noAck: true });
    });
  }

  /** True once the queue exists; false if stop() came first. */
  private async waitForQueue(broker: Broker): Promise<boolean> {
    const signal = this.shutdown.signal;
    const since = Date.now();
    let lastLog = 0;
    while (!signal.aborted) {
      // Throws while (re)connecting: then it is simply not known to exist yet.
      if (await broker.queueExists(this.queue).catch(() => false)) return true;
      if (Date.now() - lastLog >= QUEUE_WAIT_LOG_MS) {
        lastLog = Date.now();
        this.logger.info(
          { queue: this.queue, waitedMs: lastLog - since },
          'waiting for the step queue: the orchestrator declares it when a template of this namespace is registered',
        );
      }
      await sleep(QUEUE_POLL_MS, undefined, { signal }).catch(() => undefined);
    }
    return false;
  }

  private onDelivery(delivery: Delivery): Promise<void> {
    if (this.shutdown.signal.aborted) {
      // Sent before our cancel reached the broker: not ours to run any more.
      delivery.nack(true);
      return Promise.resolve();
    }
    const job: Job = { delivery, steps: [], handedBack: false };
    const done = this.handle(job)
      .catch((err: unknown) => this.logger.error({ err }, 'unexpected failure handling a step delivery'))
      .finally(() => this.jobs.delete(job));
    this.jobs.set(job, done);
    return done;
  }

  private async handle(job: Job): Promise<void> {
    const d = job.delivery;
    // One step, or several in a `steps` message: each is run (or parked) on its own.
    const decoded = decodeOneOrMany(StepMessage, STEP_MESSAGES_SHAPE, d.body, 'step message');
    this.tunePrefetch(decoded.ok ? decoded.value.length : 1);
    const ends = decoded.ok
      ? await Promise.all(decoded.value.map((part) => this.runPart(job, part)))
      : [await this.park(job, decoded.error)];
    if (job.handedBack) return;
    if (ends.includes('failed')) {
      // A lasting fault should not spin: pause before the delivery goes back.
      await sleep(PUBLISH_FAILURE_BACKOFF_MS, undefined, { signal: this.shutdown.signal }).catch(() => undefined);
      if (!job.handedBack) d.nack(true);
    } else if (ends.includes('given_back')) {
      d.nack(true); // stopping before a step started: give it back (its answered siblings are answered again, harmlessly)
    } else {
      // Acked only now: a result that was never confirmed must not lose its step.
      d.ack();
    }
  }

  /** Follows the steps per message received with the consumer's prefetch. */
  private tunePrefetch(steps: number): void {
    const consumer = this.consumer;
    if (!consumer) return;
    const want = this.prefetchTuner.observe(steps);
    if (want === null) return;
    const from = this.prefetchTuner.current;
    consumer.setPrefetch(want).then(
      () => {
        this.prefetchTuner.settled(want);
        this.logger.debug({ queue: this.queue, from, to: want }, 'prefetch follows the steps per message');
      },
      (err: unknown) => {
        this.prefetchTuner.settled(null);
        this.logger.debug({ err, queue: this.queue }, 'prefetch not changed (the channel is closed; the next message tries again)');
      },
    );
  }

  /** Runs one step of a delivery (or parks it) and publishes its result. */
  private async runPart(job: Job, part: DecodedPart<StepMessage>): Promise<StepEnd> {
    // A step of a `steps` message is parked alone, as its own JSON; a lone one, body untouched.
    // The JSON is made only for a step parked (it was made for every step: 3 % of the worker's
    // CPU in the bench's throughput run).
    const place = part.place;
    const parkedBody = () => (place === null ? undefined : part.body);
    if (!part.decoded.ok) return this.park(job, part.decoded.error, parkedBody());
    const message = part.decoded.value;
    if (message.namespace !== this.namespace) {
      return this.park(
        job,
        new TaskerError(
          ErrorCode.INVALID_MESSAGE,
          `${place ?? 'step message'} is for namespace '${message.namespace}' but came from ${this.queue}, the queue of '${this.namespace}'`,
        ),
        parkedBody(),
      );
    }
    const step: Job['steps'][number] = { taskId: message.task_id, run: null };
    job.steps.push(step);

    // Steps of `steps` messages beyond the concurrency simply wait for a slot; what is worth
    // a warning is a slot still held by a handler answered as timed out.
    if (this.slots.available === 0 && this.overrunning > 0) {
      this.logger.warn(
        { taskId: message.task_id, step: message.step_name, busy: this.slots.inUse },
        'step waits for a slot held by a handler that outlived its deadline',
      );
    }
    let release: () => void;
    try {
      release = await this.slots.acquire(this.shutdown.signal);
    } catch {
      return 'given_back'; // stopping before it started
    }
    const d = job.delivery;
    // Quorum queues count earlier deliveries in x-delivery-count; classic ones only flag a redelivery.
    const previous = Number(d.message.properties.headers?.['x-delivery-count'] ?? (d.message.fields.redelivered ? 1 : 0));
    const run = runStep(message, {
      handlers: this.options.handlers,
      workerId: this.id,
      deliveryCount: previous + 1,
      logger: this.logger,
      requestTask: (req, opts) => {
        if (!this.requester) return Promise.reject(new TaskerError(ErrorCode.INTERNAL, 'worker is not connected'));
        return this.requester.createTask(req, opts);
      },
    });
    step.run = run;
    // The slot is free when the handler really returns, not when its step is answered; but
    // a handler that ignores its signal past the deadline frees it after overrunGraceMs, so
    // it can never hold a slot forever (issue: crash safety, guarantee 6).
    void run.settled.then(release);
    const result = await run.result;
    if (result.status === 'failure' && result.error.code === ErrorCode.HANDLER_TIMEOUT) {
      let returned = false;
      this.overrunning += 1;
      const over = (): void => {
        if (returned) return;
        returned = true;
        this.overrunning -= 1;
      };
      void run.settled.then(over);
      setTimeout(() => {
        if (returned) return;
        this.logger.warn(
          { taskId: message.task_id, step: message.step_name, attempt: message.attempt, overrunGraceMs: this.options.overrunGraceMs },
          'handler still running after its deadline and the grace period: its slot is freed; the function keeps running unobserved',
        );
        over();
        release();
      }, this.options.overrunGraceMs).unref();
    }
    if (job.handedBack) return 'given_back';
    return this.publishResult(job, message, result);
  }

  private async publishResult(job: Job, message: StepMessage, result: StepResult): Promise<StepEnd> {
    try {
      // With user_id (RabbitMQ validates it against this connection's user) the orchestrator
      // can check that a result for a namespace came from that namespace's user (issue 6).
      // Results ready together share one message (result-publisher.ts).
      await this.results!.publish(result, message.correlation_id);
      return 'answered';
    } catch (err) {
      if (!job.handedBack) {
        // If the connection is gone, the nack is a no-op and the broker redelivers anyway;
        // if only the publish failed, this gives the step to a worker that can answer it.
        this.logger.error(
          { err, taskId: message.task_id, step: message.step_name, attempt: message.attempt },
          'step result not confirmed by the broker; the step message goes back to the queue',
        );
      }
      return 'failed';
    }
  }

  /** Parks what cannot be run: the delivery's body, or `body` (one step of a `steps` message). */
  private async park(job: Job, reason: TaskerError, body?: string): Promise<StepEnd> {
    const parked = body === undefined ? undefined : Buffer.from(body);
    const preview = (parked ?? job.delivery.body).subarray(0, 512).toString('utf8');
    this.logger.error(
      { code: reason.code, reason: reason.message, queue: this.queue, bodyPreview: preview },
      'invalid step message: parked in the dead letters',
    );
    try {
      await parkStepMessage(this.broker!, this.options.names, this.namespace, this.queue, job.delivery, reason, parked);
      return 'answered';
    } catch (err) {
      // Same as a result that was not confirmed: give it back after a pause and park it on
      // a later delivery (the queue's delivery limit bounds the attempts).
      this.logger.error({ err }, 'could not park the invalid step message; it goes back to the queue');
      return 'failed';
    }
  }

  /**
   * Stops consuming, lets running handlers finish and publish within `shutdownGraceMs`,
   * then aborts the rest (`ctx.signal`, reason `WORKER_SHUTDOWN`) and gives their
   * messages back to the queue, and closes the connection. Idempotent.
   */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const wasStarted = this.currentState !== 'created';
    this.currentState = 'stopping';
    const reason = new TaskerError(ErrorCode.WORKER_SHUTDOWN, 'the worker is shutting down');
    this.shutdown.abort(reason);
    if (wasStarted) this.logger.info({ running: this.jobs.size }, 'worker stopping');
    await this.starting?.catch(() => undefined);
    await this.consumer?.cancel();

    const jobs = [...this.jobs.entries()];
    if (jobs.length > 0) {
      const grace = this.options.shutdownGraceMs;
      const timer = new AbortController();
      const allDone = Promise.all(jobs.map(([, done]) => done)).then(() => true);
      const graceOver = sleep(grace, false, { signal: timer.signal }).catch(() => true);
      const finished = await Promise.race([allDone, graceOver]);
      timer.abort();
      if (!finished) {
        let handedBack = 0;
        for (const [job] of jobs) {
          if (!this.jobs.has(job)) continue;
          job.handedBack = true;
          for (const step of job.steps) step.run?.abort(reason);
          job.delivery.nack(true);
          handedBack += 1;
        }
        this.logger.warn(
          { handedBack, graceMs: grace },
          'shutdown grace period over: running steps aborted and given back to the queue',
        );
      }
    }
    await this.requester?.close();
    await this.consumer?.close();
    await this.broker?.close();
    this.currentState = 'stopped';
    if (wasStarted) this.logger.info('worker stopped');
  }

  /**
   * SIGTERM or SIGINT → stop(), then `process.exit(0)` (1 if stopping failed). A second
   * signal exits at once with 1. Returns a function that removes the handlers.
   */
  installSignalHandlers(): () => void {
    return installStopOnSignals(() => this.stop(), this.logger, 'worker');
  }

}

/** Builds a worker; nothing connects before {@link Worker.start}. Throws on invalid options. */
export function createWorker(options: WorkerOptions): Worker {
  return new Worker(options);
}
