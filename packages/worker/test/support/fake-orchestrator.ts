import { nanoid } from 'nanoid';
import {
  STEP_RESULTS_SHAPE,
  StepResult,
  TaskRequest,
  decodeMessage,
  decodeOneOrMany,
  namespaceTopology,
  type StepMessage,
  type TaskReply,
} from '@tasker/protocol';
import { Worker, type WorkerOptions } from '../../src/index.ts';
import { AMQP_URL, Inbox, TestRabbit, testLogger, uniquePrefix, type ConsumeMessage } from '../../../transport/test/support/rabbit.ts';

export interface ReceivedResult {
  /** Null when the body did not decode as a StepResult; see `problem`. */
  result: StepResult | null;
  problem: string | null;
  /** The message that carried it (a `step_results` message carries several). */
  msg: ConsumeMessage;
  /** The result's own JSON (the whole body unless the message carried several). */
  body: string;
  receivedAt: number;
}

export interface ReceivedRequest {
  request: TaskRequest;
  msg: ConsumeMessage;
}

/**
 * Plays the orchestrator for worker tests on a prefix of its own: declares the topology,
 * dispatches step messages, collects step results and dead letters, and answers task
 * requests with a new task (id `child_<idempotency key>`).
 */
export class FakeOrchestrator {
  readonly results = new Inbox<ReceivedResult>();
  readonly deadLetters = new Inbox<ConsumeMessage>();
  readonly taskRequests = new Inbox<ReceivedRequest>();
  private readonly workers: Worker[] = [];
  private namespaces = 0;

  private constructor(readonly rabbit: TestRabbit) {}

  get prefix(): string {
    return this.rabbit.names.prefix;
  }

  static async open(): Promise<FakeOrchestrator> {
    const rabbit = await TestRabbit.open(uniquePrefix());
    const o = new FakeOrchestrator(rabbit);
    const n = rabbit.names;
    await rabbit.consume(n.resultsQueue, (msg) => {
      // Decoded as the orchestrator does: one result, or several in a `step_results` message.
      const receivedAt = Date.now();
      const decoded = decodeOneOrMany(StepResult, STEP_RESULTS_SHAPE, msg.content, 'step result');
      if (!decoded.ok) {
        o.results.push({ result: null, problem: decoded.error.message, msg, body: msg.content.toString(), receivedAt });
        return;
      }
      for (const part of decoded.value) {
        o.results.push({
          result: part.decoded.ok ? part.decoded.value : null,
          problem: part.decoded.ok ? null : part.decoded.error.message,
          msg,
          body: part.body,
          receivedAt,
        });
      }
    });
    await rabbit.consume(n.deadLetterQueue, (msg) => o.deadLetters.push(msg));
    await rabbit.consume(n.taskRequestsQueue, async (msg) => {
      const decoded = decodeMessage(TaskRequest, msg.content, 'task request');
      if (!decoded.ok) throw decoded.error;
      const req = decoded.value;
      o.taskRequests.push({ request: req, msg });
      const reply: TaskReply = {
        protocol_version: 1,
        message_type: 'task_reply',
        ok: true,
        created: true,
        task: {
          id: `child_${req.idempotency_key ?? 'none'}`,
          namespace: req.namespace,
          name: req.name,
          version: '1.0.0',
          state: 'in_progress',
          correlation_id: req.correlation_id ?? 'generated',
          idempotency_key: req.idempotency_key ?? null,
          parent_task_id: req.parent?.task_id ?? null,
          parent_step_id: req.parent?.step_id ?? null,
          created_at: new Date().toISOString(),
        },
      };
      await rabbit.broker.publish('', msg.properties.replyTo as string, Buffer.from(JSON.stringify(reply)), {
        correlationId: msg.properties.correlationId as string,
        persistent: false,
      });
    });
    return o;
  }

  /** A fresh namespace with its step queue declared, as when its first template is registered. */
  async namespace(declare = true): Promise<string> {
    this.namespaces += 1;
    const ns = `ns${this.namespaces}_${nanoid(6).toLowerCase().replace(/[^a-z0-9]/g, 'x')}`;
    if (declare) await this.declareNamespace(ns);
    return ns;
  }

  async declareNamespace(ns: string): Promise<void> {
    await this.rabbit.declare(namespaceTopology(this.rabbit.names, ns));
  }

  /** A valid step message; `overrides` replace fields. */
  step(namespace: string, callable: string, overrides: Partial<StepMessage> = {}): StepMessage {
    const stepId = overrides.step_id ?? `step_${nanoid(10)}`;
    const attempt = overrides.attempt ?? 1;
    return {
      protocol_version: 1,
      message_type: 'step',
      task_id: `task_${nanoid(10)}`,
      namespace,
      task_name: 'process_refund',
      task_version: '1.0.0',
      correlation_id: `corr_${nanoid(8)}`,
      step_id: stepId,
      step_name: 'validate_payment_eligibility',
      attempt,
      max_attempts: 3,
      timeout_ms: null,
      handler: { callable, method: null, initialization: {} },
      input: {},
      dependency_results: {},
      idempotency_key: `${stepId}:${attempt}`,
      dispatched_at: new Date().toISOString(),
      ...overrides,
    };
  }

  /** Publishes to the steps exchange, routed to the namespace's queue, as the orchestrator does. */
  async dispatch(message: StepMessage): Promise<void> {
    await this.dispatchRaw(message.namespace, JSON.stringify(message), { messageId: `${message.step_id}:${message.attempt}` });
  }

  async dispatchRaw(namespace: string, body: string | Buffer, properties: { messageId?: string } = {}): Promise<void> {
    await this.rabbit.broker.publish(this.rabbit.names.stepsExchange, namespace, Buffer.isBuffer(body) ? body : Buffer.from(body), {
      type: 'step',
      ...properties,
    });
  }

  /** The result for a step (and attempt); fails the test if it did not decode as a StepResult. */
  async resultFor(stepId: string, timeoutMs = 10_000): Promise<StepResult & { msg: ConsumeMessage; receivedAt: number }> {
    const r = await this.results.waitFor(
      (x) => x.result?.step_id === stepId || (x.result === null && x.body.includes(stepId)),
      timeoutMs,
      `result for ${stepId}`,
    );
    if (!r.result) throw new Error(`result for ${stepId} does not match the StepResult schema: ${r.problem}`);
    return { ...r.result, msg: r.msg, receivedAt: r.receivedAt };
  }

  /** A worker on this prefix, stopped by {@link stopWorkers}. */
  worker(options: Omit<WorkerOptions, 'prefix' | 'amqpUrl'> & Partial<Pick<WorkerOptions, 'prefix' | 'amqpUrl'>>): Worker {
    const w = new Worker({ amqpUrl: AMQP_URL, prefix: this.prefix, logger: testLogger, ...options }, {});
    this.workers.push(w);
    return w;
  }

  async stopWorkers(): Promise<void> {
    const ws = this.workers.splice(0);
    await Promise.all(ws.map((w) => w.stop()));
  }

  /** Messages ready in a namespace's step queue (unacked ones are not counted). */
  async depth(namespace: string): Promise<number | null> {
    return this.rabbit.broker.queueDepth(this.rabbit.names.stepQueue(namespace));
  }

  async close(): Promise<void> {
    await this.stopWorkers();
    await this.rabbit.cleanup();
  }
}

/** A promise with its resolve, for handlers that wait on the test. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}
