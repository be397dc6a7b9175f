import type { ConfirmChannel, ConsumeMessage, Message } from 'amqplib';
import { nanoid } from 'nanoid';
import { pino, type Logger } from 'pino';
import {
  DEFAULT_AMQP_PREFIX,
  ErrorCode,
  TaskReply,
  TaskerError,
  decodeMessage,
  names,
  type Names,
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
  readonly resolve: (r: CreateTaskResult) => void;
  readonly reject: (e: Error) => void;
}

/**
 * Creates tasks by publishing TaskRequests and waiting for the orchestrator's TaskReply.
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
  /** Requests published and waiting for their reply, by correlation id. */
  private readonly pending = new Map<string, PendingRequest>();
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
    const requester = new AmqpTaskRequester(broker, { prefix: n.prefix, logger });
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
    const correlationId = nanoid();
    const body = Buffer.from(JSON.stringify(message));
    const signal = options.signal;
    if (signal?.aborted) throw abortError(signal);

    return new Promise<CreateTaskResult>((resolve, reject) => {
      let settled = false;
      const finish = (): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.pending.delete(correlationId);
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

      this.replyChannel()
        .then((mc) => mc.get())
        .then((ch) => {
          if (settled) return;
          if (this.closed) return fail(closedError());
          this.pending.set(correlationId, {
            channel: ch,
            resolve: (r) => {
              if (finish()) resolve(r);
            },
            reject: fail,
          });
          ch.publish(
            this.names.taskRequestsExchange,
            message.namespace,
            body,
            {
              replyTo: DIRECT_REPLY_TO,
              correlationId,
              contentType: 'application/json',
              type: 'task_request',
              persistent: true,
              // Unroutable means no task-requests queue: fail now instead of at the timeout.
              mandatory: true,
            },
            (err: unknown) => {
              if (err) fail(new TaskerError(ErrorCode.INTERNAL, `task request not accepted by the broker: ${errText(err)}`));
            },
          );
          this.logger.debug({ correlationId, namespace: message.namespace, name: message.name }, 'task request sent');
        })
        .catch((err: unknown) => fail(new TaskerError(ErrorCode.INTERNAL, `cannot send the task request: ${errText(err)}`)));
    });
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
      const id = msg.properties.correlationId as string | undefined;
      const p = id ? this.pending.get(id) : undefined;
      p?.reject(
        new TaskerError(
          ErrorCode.INTERNAL,
          `task request was unroutable: no queue is bound to exchange '${this.names.taskRequestsExchange}' ` +
            `(is the orchestrator's topology declared for prefix '${this.names.prefix}'?)`,
        ),
      );
    });
    await ch.consume(DIRECT_REPLY_TO, (msg) => this.onReply(msg), { noAck: true });
  }

  private onReply(msg: ConsumeMessage | null): void {
    if (!msg) return;
    const id = msg.properties.correlationId as string | undefined;
    const p = id ? this.pending.get(id) : undefined;
    if (!p) {
      this.logger.warn({ correlationId: id }, 'task reply for no pending request (timed out or closed); ignored');
      return;
    }
    const decoded = decodeMessage(TaskReply, msg.content, 'task reply');
    if (!decoded.ok) {
      this.logger.error({ correlationId: id, err: decoded.error.message }, 'invalid task reply');
      p.reject(decoded.error);
      return;
    }
    const reply = decoded.value;
    if (reply.ok) p.resolve({ created: reply.created, task: reply.task });
    else p.reject(new TaskerError(reply.error.code as ErrorCode, reply.error.message, reply.error.issues ?? []));
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
