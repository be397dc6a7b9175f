import type { ConfirmChannel, ConsumeMessage, Message } from 'amqplib';
import { nanoid } from 'nanoid';
import { pino, type Logger } from 'pino';
import {
  DEFAULT_AMQP_PREFIX,
  ErrorCode,
  Limits,
  TASK_REPLIES_SHAPE,
  TASK_REQUESTS_SHAPE,
  TaskReply,
  TaskerError,
  decodeOneOrMany,
  encodeBatch,
  names,
  readRequestId,
  type Names,
  type TaskRequest,
  type TaskSummary,
} from '@tasker/protocol';
import { Broker, type ManagedChannel } from '@tasker/transport';
import { buildTaskRequest, type CreateTaskRequest } from './create-task-request.ts';

/** RabbitMQ's direct reply-to pseudo-queue: replies come back on the requesting channel, no queue needed. */
const DIRECT_REPLY_TO = 'amq.rabbitmq.reply-to';

export interface CreateTaskOptions {
  /** How long to wait for the orchestrator's reply. @defaultValue 30000 */
  timeoutMs?: number;
  /** Gives up waiting (the request may still be processed: retry with the same idempotency key). */
  signal?: AbortSignal;
}

export interface CreateTaskResult {
  /** false when the idempotency key matched an existing task. */
  created: boolean;
  task: TaskSummary;
}

export interface AmqpTaskRequesterOptions {
  /** Names of the exchanges, see `names()`. @defaultValue 'tasker' */
  prefix?: string;
  /** @defaultValue the broker's logger */
  logger?: Logger;
  /**
   * Most requests in one message. Requests made in the same turn of the event loop for the
   * same namespace travel together in a `task_requests` message (the orchestrator answers
   * each on its own); 1 sends every request alone. A request made alone always goes alone.
   * @defaultValue 100
   */
  maxRequestsPerMessage?: number;
}

export interface AmqpTaskRequesterConnectOptions extends AmqpTaskRequesterOptions {
  /** amqp:// URL, credentials included. */
  url: string;
  /** @defaultValue a pino logger at `TASKER_LOG_LEVEL` (info) */
  logger?: Logger;
  /** Shown in the broker's management UI. @defaultValue 'tasker-client' */
  connectionName?: string;
}

interface PendingRequest {
  readonly channel: ConfirmChannel;
  /** The correlation id of the `task_requests` message it went in, if it did not go alone. */
  readonly batch?: string;
  readonly resolve: (r: CreateTaskResult) => void;
  readonly reject: (e: Error) => void;
}

/** A request built and waiting for the next send (the end of this turn of the event loop). */
interface OutgoingRequest {
  readonly requestId: string;
  readonly message: TaskRequest;
  /** Its JSON, without `request_id`. */
  readonly json: string;
  readonly pending: Omit<PendingRequest, 'channel'>;
  /** True once it settled (timed out, aborted) before it was sent: it is then left out. */
  readonly settled: () => boolean;
}

/** Room for the envelope of a `task_requests` message and the `request_id` of each request. */
const ENVELOPE_BYTES = 1024;
const REQUEST_ID_BYTES = 64;

/**
 * Creates tasks by publishing TaskRequests and waiting for the orchestrator's TaskReply.
 * The requests made in one turn of the event loop for one namespace go in one
 * `task_requests` message (up to `maxRequestsPerMessage`), each with a `request_id` its reply
 * names; a request made alone goes alone. Each caller still gets its own outcome.
 *
 * Replies use RabbitMQ direct reply-to: the `amq.rabbitmq.reply-to` consumer (no-ack) and
 * the requests must share one channel, so the requester keeps a managed channel of its own
 * and re-subscribes on it after every reconnect. A request pending when its channel closes
 * is rejected (its reply would go to a consumer that no longer exists): the caller may
 * retry, and the same idempotency key gives back the same task.
 */
export class AmqpTaskRequester {
  private readonly names: Names;
  private readonly logger: Logger;
  /** Requests published and waiting for their reply, by request id (the correlation id of a request sent alone). */
  private readonly pending = new Map<string, PendingRequest>();
  /** The requests of each `task_requests` message in flight, by the message's correlation id. */
  private readonly batches = new Map<string, string[]>();
  /** Requests made in this turn of the event loop, by namespace, sent at its end. */
  private outgoing = new Map<string, OutgoingRequest[]>();
  private sendScheduled = false;
  private readonly maxRequestsPerMessage: number;
  /** Every createTask call not settled yet (published or still waiting for the channel), to fail on close(). */
  private readonly unsettled = new Set<(err: Error) => void>();
  private channel: Promise<ManagedChannel<ConfirmChannel>> | null = null;
  private closed = false;
  /** Set by {@link connect}: close() then closes the Broker too. */
  private ownsBroker = false;

  /** On a Broker the caller owns (and closes): a worker's, a service's. Nothing is opened before the first request. */
  constructor(
    private readonly broker: Broker,
    options: AmqpTaskRequesterOptions = {},
  ) {
    this.names = names(options.prefix ?? DEFAULT_AMQP_PREFIX);
    this.logger = (options.logger ?? broker.logger).child({ component: 'task-requester' });
    const max = options.maxRequestsPerMessage ?? 100;
    if (!Number.isInteger(max) || max < 1 || max > Limits.maxRequestsPerMessage) {
      throw new TaskerError(ErrorCode.INVALID_MESSAGE, `maxRequestsPerMessage must be an integer from 1 to ${Limits.maxRequestsPerMessage}; got ${max}`);
    }
    this.maxRequestsPerMessage = max;
  }

  /** Connects a Broker of its own; {@link close} closes it. */
  static async connect(options: AmqpTaskRequesterConnectOptions): Promise<AmqpTaskRequester> {
    const logger = options.logger ?? pino({ level: process.env['TASKER_LOG_LEVEL'] ?? 'info' });
    const n = names(options.prefix ?? DEFAULT_AMQP_PREFIX); // fail on a bad prefix before connecting
    const broker = await Broker.connect({
      url: options.url,
      connectionName: options.connectionName ?? 'tasker-client',
      logger,
    });
    const requester = new AmqpTaskRequester(broker, {
      prefix: n.prefix,
      logger,
      ...(options.maxRequestsPerMessage !== undefined ? { maxRequestsPerMessage: options.maxRequestsPerMessage } : {}),
    });
    requester.ownsBroker = true;
    return requester;
  }

  /**
   * Asks the orchestrator for a task. Resolves with `created: false` when the idempotency
   * key matched an existing task. Rejects with a {@link TaskerError}: the orchestrator's
   * refusal (code and issues as sent), `INVALID_MESSAGE` for a request that fails
   * validation here (nothing is sent), or `INTERNAL` when no reply came in time or the
   * channel closed first.
   */
  async createTask(req: CreateTaskRequest, options: CreateTaskOptions = {}): Promise<CreateTaskResult> {
    if (this.closed) throw new TaskerError(ErrorCode.INTERNAL, 'task requester is closed');
    const message = buildTaskRequest(req);
    const timeoutMs = options.timeoutMs ?? 30_000;
    const requestId = nanoid();
    const json = JSON.stringify(message);
    const signal = options.signal;
    if (signal?.aborted) throw abortError(signal);

    return new Promise<CreateTaskResult>((resolve, reject) => {
      let settled = false;
      const finish = (): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const sent = this.pending.get(requestId);
        this.pending.delete(requestId);
        if (sent?.batch !== undefined) this.forgetBatchWhenSettled(sent.batch);
        this.unsettled.delete(fail);
        return true;
      };
      const fail = (err: Error): void => {
        if (finish()) reject(err);
      };
      this.unsettled.add(fail);
      // The timer covers the whole call, including a wait for a reconnect.
      const timer = setTimeout(
        () =>
          fail(
            new TaskerError(
              ErrorCode.INTERNAL,
              `no reply to the task request for ${message.namespace}.${message.name} within ${timeoutMs} ms; ` +
                'retrying with the same idempotency key is safe',
            ),
          ),
        timeoutMs,
      );
      const onAbort = (): void => fail(abortError(signal!));
      signal?.addEventListener('abort', onAbort, { once: true });

      let group = this.outgoing.get(message.namespace);
      if (!group) this.outgoing.set(message.namespace, (group = []));
      group.push({
        requestId,
        message,
        json,
        pending: {
          resolve: (r) => {
            if (finish()) resolve(r);
          },
          reject: fail,
        },
        settled: () => settled,
      });
      if (!this.sendScheduled) {
        this.sendScheduled = true;
        setImmediate(() => this.sendOutgoing());
      }
    });
  }

  /**
   * Sends the requests made in this turn of the event loop: per namespace (the routing key),
   * up to `maxRequestsPerMessage` and the message size limit in one message; a request alone
   * as a `task_request` whose correlation id is its request id.
   */
  private sendOutgoing(): void {
    this.sendScheduled = false;
    const groups = this.outgoing;
    this.outgoing = new Map();
    for (const requests of groups.values()) {
      const live = requests.filter((r) => !r.settled());
      let chunk: OutgoingRequest[] = [];
      let bytes = ENVELOPE_BYTES;
      for (const r of live) {
        const size = Buffer.byteLength(r.json) + REQUEST_ID_BYTES;
        if (chunk.length > 0 && (chunk.length >= this.maxRequestsPerMessage || bytes + size > Limits.maxMessageBytes)) {
          this.send(chunk);
          chunk = [];
          bytes = ENVELOPE_BYTES;
        }
        chunk.push(r);
        bytes += size;
      }
      if (chunk.length > 0) this.send(chunk);
    }
  }

  /** Publishes one message carrying `requests` (all for one namespace) once the reply channel is open. */
  private send(requests: OutgoingRequest[]): void {
    const failAll = (err: Error): void => {
      for (const r of requests) r.pending.reject(err);
    };
    const { namespace } = requests[0]!.message;
    this.replyChannel()
      .then((mc) => mc.get())
      .then((ch) => {
        const live = requests.filter((r) => !r.settled());
        if (live.length === 0) return;
        if (this.closed) return failAll(closedError());
        const alone = live.length === 1;
        const correlationId = alone ? live[0]!.requestId : nanoid();
        for (const r of live) this.pending.set(r.requestId, { channel: ch, ...r.pending, ...(alone ? {} : { batch: correlationId }) });
        const body = alone
          ? live[0]!.json
          : encodeBatch(
              TASK_REQUESTS_SHAPE,
              live.map((r) => `${r.json.slice(0, -1)},"request_id":${JSON.stringify(r.requestId)}}`),
            );
        if (!alone) this.batches.set(correlationId, live.map((r) => r.requestId));
        ch.publish(
          this.names.taskRequestsExchange,
          namespace,
          Buffer.from(body),
          {
            replyTo: DIRECT_REPLY_TO,
            correlationId,
            contentType: 'application/json',
            type: alone ? 'task_request' : 'task_requests',
            persistent: true,
            // Unroutable means no task-requests queue: fail now instead of at the timeout.
            mandatory: true,
          },
          (err: unknown) => {
            if (err) failAll(new TaskerError(ErrorCode.INTERNAL, `task request not accepted by the broker: ${errText(err)}`));
          },
        );
        this.logger.debug({ correlationId, namespace, requests: live.length }, 'task requests sent');
      })
      .catch((err: unknown) => failAll(new TaskerError(ErrorCode.INTERNAL, `cannot send the task request: ${errText(err)}`)));
  }

  /** Drops the record of a `task_requests` message once none of its requests waits any more. */
  private forgetBatchWhenSettled(correlationId: string): void {
    const ids = this.batches.get(correlationId);
    if (ids && !ids.some((id) => this.pending.has(id))) this.batches.delete(correlationId);
  }

  /** The requests a reply or a returned message without a request id is about: the message's. */
  private requestsOf(correlationId: string | undefined): PendingRequest[] {
    if (correlationId === undefined) return [];
    const ids = this.batches.get(correlationId) ?? [correlationId];
    return ids.map((id) => this.pending.get(id)).filter((p): p is PendingRequest => p !== undefined);
  }

  /** Rejects pending requests, closes the reply channel (and the Broker, when {@link connect} made it). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = closedError();
    for (const fail of [...this.unsettled]) fail(err);
    const channel = this.channel;
    this.channel = null;
    if (channel) await channel.then((mc) => mc.close()).catch(() => undefined);
    if (this.ownsBroker) await this.broker.close();
  }

  private replyChannel(): Promise<ManagedChannel<ConfirmChannel>> {
    if (!this.channel) {
      this.channel = this.broker.channel<ConfirmChannel>(true, (ch) => this.onChannelOpen(ch));
      // A failed open is retried on the next request.
      this.channel.catch(() => {
        this.channel = null;
      });
    }
    return this.channel;
  }

  /** Runs on every (re)open of the reply channel, before any request is published on it. */
  private async onChannelOpen(ch: ConfirmChannel): Promise<void> {
    ch.on('close', () => {
      const err = new TaskerError(
        ErrorCode.INTERNAL,
        'the AMQP channel closed before the task reply came; retrying with the same idempotency key is safe',
      );
      for (const p of [...this.pending.values()]) if (p.channel === ch) p.reject(err);
    });
    ch.on('return', (msg: Message) => {
      const err = new TaskerError(
        ErrorCode.INTERNAL,
        `task request was unroutable: no queue is bound to exchange '${this.names.taskRequestsExchange}' ` +
          `(is the orchestrator's topology declared for prefix '${this.names.prefix}'?)`,
      );
      for (const p of this.requestsOf(msg.properties.correlationId as string | undefined)) p.reject(err);
    });
    await ch.consume(DIRECT_REPLY_TO, (msg) => this.onReply(msg), { noAck: true });
  }

  /**
   * A `task_reply`, or a `task_replies` message: each reply settles the request its
   * `request_id` names, or, without one, the request(s) of the message its correlation id names.
   */
  private onReply(msg: ConsumeMessage | null): void {
    if (!msg) return;
    const correlationId = msg.properties.correlationId as string | undefined;
    const decoded = decodeOneOrMany(TaskReply, TASK_REPLIES_SHAPE, msg.content, 'task reply');
    if (!decoded.ok) {
      this.logger.error({ correlationId, err: decoded.error.message }, 'invalid task reply');
      for (const p of this.requestsOf(correlationId)) p.reject(decoded.error);
      return;
    }
    for (const part of decoded.value) {
      const requestId = part.decoded.ok ? part.decoded.value.request_id : part.place !== null ? readRequestId(part.body) : undefined;
      const targets = requestId !== undefined ? [this.pending.get(requestId)].filter((p) => p !== undefined) : this.requestsOf(correlationId);
      if (targets.length === 0) {
        this.logger.warn({ correlationId, requestId }, 'task reply for no pending request (timed out or closed); ignored');
        continue;
      }
      for (const p of targets) {
        if (!part.decoded.ok) {
          this.logger.error({ correlationId, err: part.decoded.error.message }, 'invalid task reply');
          p.reject(part.decoded.error);
        } else if (part.decoded.value.ok) p.resolve({ created: part.decoded.value.created, task: part.decoded.value.task });
        else {
          const e = part.decoded.value.error;
          p.reject(new TaskerError(e.code as ErrorCode, e.message, e.issues ?? []));
        }
      }
    }
  }
}

function closedError(): TaskerError {
  return new TaskerError(ErrorCode.INTERNAL, 'task requester closed before the reply came');
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  return new TaskerError(ErrorCode.INTERNAL, 'task request aborted before the reply came');
}
