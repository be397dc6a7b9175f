import amqp, {
  type Channel,
  type ChannelModel,
  type ConfirmChannel,
  type ConsumeMessage,
  type Options,
  type RecoveringChannelModel,
} from 'amqplib';
import type { Logger } from 'pino';
import type { Topology } from '@tasker/protocol';
import { oncePerTurn } from './turn.ts';

/**
 * One RabbitMQ connection with amqplib's own recovery. Everything built on it (topology,
 * consumers, the publishing channel) is re-created by the recovery `setup` hook after each
 * reconnect, so callers hold handles that survive a broker restart.
 */
export interface BrokerOptions {
  /** amqp:// URL, credentials included. */
  url: string;
  /** Shown in the broker's management UI. */
  connectionName: string;
  logger: Logger;
  /** Retries before the first connection fails start-up. @defaultValue 20 (about a minute) */
  initialMaxRetries?: number;
  /** Heartbeat seconds: how fast a dead peer is noticed. @defaultValue 10 */
  heartbeat?: number;
}

type SetupFn = (model: ChannelModel) => Promise<void>;

export interface Delivery {
  readonly message: ConsumeMessage;
  readonly body: Buffer;
  /**
   * Acknowledge this message (only this one; a second call does nothing). Acks are sent
   * at the end of the event loop's turn, several in one frame where they can be; a no-op
   * (logged) if the channel it came on has closed: the broker redelivers.
   */
  ack(): void;
  /** Reject this message, now; `requeue: false` drops it (or dead-letters it where the queue has a DLX). */
  nack(requeue: boolean): void;
}

/**
 * The acks of one channel, sent together: each message is settled once, and at the end of
 * the event loop's turn the settled ones go out, the longest run of settled messages from
 * the oldest unsettled one as a single `basic.ack` with `multiple` (one frame, one socket
 * write, one message for the broker's channel process to parse, instead of one each), and
 * settled messages behind a message still in work one by one, so a slow message never
 * holds back the acks (and the prefetch window) of the ones after it. A `multiple` ack
 * names the newest message it covers, which must still be unacked at the broker: nacks
 * are sent at once and never used as that anchor.
 */
class AckWindow {
  /** Delivered messages in delivery order, until their settlement is sent. */
  private order: Array<{ msg: ConsumeMessage; settled: 'ack' | 'nack' | null }> = [];

  constructor(
    private readonly ch: Channel,
    private readonly onError: (err: Error, what: string) => void,
  ) {}

  track(msg: ConsumeMessage): { ack(): void; nack(requeue: boolean): void } {
    const entry: { msg: ConsumeMessage; settled: 'ack' | 'nack' | null } = { msg, settled: null };
    this.order.push(entry);
    return {
      ack: () => {
        if (entry.settled) return;
        entry.settled = 'ack';
        this.schedule();
      },
      nack: (requeue) => {
        if (entry.settled) return;
        entry.settled = 'nack';
        try {
          this.ch.nack(msg, false, requeue);
        } catch (err) {
          this.onError(err as Error, 'nack');
        }
        this.schedule();
      },
    };
  }

  private readonly schedule = oncePerTurn(() => this.flush());

  /** Sends what is settled now (before the channel closes). */
  flush(): void {
    let i = 0;
    let anchor: ConsumeMessage | null = null;
    for (; i < this.order.length && this.order[i]!.settled; i++) if (this.order[i]!.settled === 'ack') anchor = this.order[i]!.msg;
    const rest: typeof this.order = [];
    try {
      if (anchor) this.ch.ack(anchor, true);
      for (; i < this.order.length; i++) {
        const e = this.order[i]!;
        if (!e.settled) rest.push(e);
        else if (e.settled === 'ack') this.ch.ack(e.msg, false);
      }
    } catch (err) {
      // The channel closed: the broker redelivers whatever was not acked.
      this.onError(err as Error, 'ack');
    }
    this.order = rest;
  }
}

export interface ConsumeOptions {
  prefetch: number;
  consumerTag?: string;
  exclusive?: boolean;
  /** For direct reply-to only. */
  noAck?: boolean;
}

export interface Consumer {
  /**
   * Changes how many unacked messages the broker sends this consumer from now on (kept after
   * a reconnect). RabbitMQ applies a prefetch only to consumers created after it, so the
   * queue is subscribed to again on the same channel and the old subscription cancelled:
   * what it delivered stays and is acked as usual, but is not counted against the new value
   * (until it is acked, the consumer may hold up to the old and the new prefetch together).
   * Not for exclusive consumers, consumers with a tag of their own, or without acks.
   */
  setPrefetch(prefetch: number): Promise<void>;
  /** Stop receiving new messages; in-flight deliveries can still be acked until close(). */
  cancel(): Promise<void>;
  /** Cancel and close the channel (unacked messages go back to the queue). */
  close(): Promise<void>;
}

/** A channel re-opened after every reconnect. `get()` waits while disconnected. */
export class ManagedChannel<C extends Channel = Channel> {
  private current: C | null = null;
  private waiters: Array<{ resolve: (ch: C) => void; reject: (err: Error) => void }> = [];
  closed = false;

  constructor(
    private readonly broker: Broker,
    readonly confirm: boolean,
    private readonly onOpen: (ch: C) => Promise<void>,
  ) {}

  private reopenDelayMs = 1000;

  /**
   * @internal Opens the channel on a (re)connected model. Throws when `onOpen` fails (a
   * consume of a missing queue, say); the broker's setup catches that per channel so one bad
   * channel never fails the connection's recovery, and retries it with backoff.
   */
  async open(model: ChannelModel): Promise<void> {
    if (this.closed) return;
    const ch = (this.confirm ? await model.createConfirmChannel() : await model.createChannel()) as C;
    ch.on('error', (err: Error) => this.broker.logger.warn({ err: err.message }, 'amqp channel error'));
    ch.on('close', () => {
      if (this.current === ch) this.current = null;
      // A channel can close alone (a 404 on a queue, a consumer cancelled by the broker);
      // re-open it while the connection lives. After a reconnect, setup re-opens it.
      this.scheduleReopen(model);
    });
    try {
      await this.onOpen(ch);
    } catch (err) {
      await ch.close().catch(() => undefined);
      throw err;
    }
    this.reopenDelayMs = 1000;
    this.current = ch;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.resolve(ch);
  }

  /** @internal */
  scheduleReopen(model: ChannelModel): void {
    if (this.closed || this.current || this.broker.model !== model || this.reopenTimer) return;
    const delay = this.reopenDelayMs;
    this.reopenDelayMs = Math.min(this.reopenDelayMs * 2, 30_000);
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = null;
      if (this.closed || this.current || this.broker.model !== model) return;
      this.open(model).catch((err: Error) => {
        this.broker.logger.warn({ err: err.message, retryInMs: this.reopenDelayMs }, 'amqp channel re-open failed');
        this.scheduleReopen(model);
      });
    }, delay);
    this.reopenTimer.unref();
  }
  private reopenTimer: NodeJS.Timeout | null = null;

  get(): Promise<C> {
    if (this.closed) return Promise.reject(new Error('channel closed'));
    if (this.current) return Promise.resolve(this.current);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** The open channel, or null while disconnected. */
  peek(): C | null {
    return this.current;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.reopenTimer) clearTimeout(this.reopenTimer);
    for (const w of this.waiters.splice(0)) w.reject(new Error('channel closed'));
    const ch = this.current;
    this.current = null;
    this.broker.forget(this);
    if (ch) await ch.close().catch(() => undefined);
  }
}

export class Broker {
  readonly logger: Logger;
  /** @internal the live connection, or null while reconnecting. */
  model: ChannelModel | null = null;
  private readonly channels = new Set<ManagedChannel<any>>();
  /** Each consumer's current ack window: closing the broker sends what they hold first. */
  private readonly ackWindows = new Set<AckWindow>();
  private readonly topologies: Topology[] = [];
  private publisher!: ManagedChannel<ConfirmChannel>;
  private closing = false;

  private constructor(
    private readonly conn: RecoveringChannelModel,
    logger: Logger,
  ) {
    this.logger = logger;
  }

  static async connect(options: BrokerOptions): Promise<Broker> {
    const logger = options.logger;
    let broker: Broker | null = null;
    const pendingSetup: SetupFn = async (model) => {
      if (broker) await broker.setup(model);
    };
    const url = new URL(options.url);
    if (!url.searchParams.has('heartbeat')) url.searchParams.set('heartbeat', String(options.heartbeat ?? 10));
    const conn = await amqp.connect(url.toString(), {
      clientProperties: { connection_name: options.connectionName },
      // Small frames (a result, an ack) must go out now: Nagle's algorithm would hold them
      // for the peer's delayed ACK, up to ~40 ms a hop.
      noDelay: true,
      recovery: {
        initialDelay: 200,
        maxDelay: 5000,
        maxRetries: Infinity,
        initialMaxRetries: options.initialMaxRetries ?? 20,
        waitForConnect: false,
        setup: pendingSetup,
      },
    });
    broker = new Broker(conn, logger);
    conn.on('disconnect', (err: Error) => {
      broker!.model = null;
      if (!broker!.closing) logger.warn({ err: err?.message }, 'amqp connection lost; recovering');
    });
    conn.on('connect', () => logger.info({ connection: options.connectionName }, 'amqp connected'));
    conn.on('reconnect-scheduled', (info: { attempt: number; delay: number; error: Error }) =>
      logger.warn({ attempt: info.attempt, delayMs: info.delay, err: info.error?.message }, 'amqp reconnect scheduled'),
    );
    conn.on('error', (err: Error) => logger.warn({ err: err.message }, 'amqp connection error'));
    conn.on('blocked', (reason: string) => logger.warn({ reason }, 'amqp connection blocked by the broker'));
    broker.publisher = new ManagedChannel<ConfirmChannel>(broker, true, async () => undefined);
    broker.channels.add(broker.publisher);
    await conn.waitForConnect();
    return broker;
  }

  private async setup(model: ChannelModel): Promise<void> {
    this.model = model;
    corkFrames(model);
    if (this.topologies.length > 0) await this.applyOnChannel(model, this.topologies);
    for (const c of this.channels) {
      await c.open(model).catch((err: Error) => {
        this.logger.warn({ err: err.message }, 'amqp channel could not be opened after connect; retrying');
        c.scheduleReopen(model);
      });
    }
  }

  /** Declares a topology now and again after every reconnect. Idempotent. */
  async declare(topology: Topology): Promise<void> {
    const model = this.model;
    // Declared by setup on connect; one the broker refused is not declared again on every reconnect.
    if (model) await this.applyOnChannel(model, [topology]);
    this.topologies.push(topology);
  }

  /** Declares topologies on a throwaway channel, again on a new one while a queue is still being created elsewhere (retryWhileQueueStarts). */
  private async applyOnChannel(model: ChannelModel, topologies: Topology[]): Promise<void> {
    await retryWhileQueueStarts(
      async () => {
        const ch = await model.createChannel();
        try {
          for (const t of topologies) await applyTopology(ch, t);
        } finally {
          await ch.close().catch(() => undefined);
        }
      },
      (err, attempt, delayMs) => this.logger.warn({ err: (err as Error).message, attempt, delayMs }, 'a queue is being created by another connection; declaring the topology again'),
    );
  }

  /** A channel of one's own (e.g. for direct reply-to), re-opened after reconnects. */
  async channel<C extends Channel = Channel>(confirm: boolean, onOpen: (ch: C) => Promise<void>): Promise<ManagedChannel<C>> {
    const mc = new ManagedChannel<C>(this, confirm, onOpen);
    this.channels.add(mc);
    if (this.model) {
      try {
        await mc.open(this.model);
      } catch (err) {
        // The first open failing is the caller's error (e.g. consuming a missing queue).
        await mc.close();
        throw err;
      }
    }
    return mc;
  }

  /** @internal */
  forget(mc: ManagedChannel<any>): void {
    this.channels.delete(mc);
  }

  /**
   * Consumes a queue with manual acks on a channel of its own, resubscribing after
   * reconnects. The handler's promise is not awaited by amqplib: the handler must ack.
   */
  async consume(
    queue: string,
    options: ConsumeOptions,
    onMessage: (d: Delivery) => void | Promise<void>,
  ): Promise<Consumer> {
    let tag: string | null = null;
    let window: AckWindow | null = null;
    let prefetch = options.prefetch;
    let cancelled = false;
    /** Subscribes again on the channel now open (replaced when it is re-opened). */
    let subscribe: (() => Promise<string>) | null = null;
    const logger = this.logger;
    const mc = await this.channel<Channel>(false, async (ch) => {
      if (!options.noAck) await ch.prefetch(prefetch);
      // Delivery tags belong to this channel: a re-opened channel starts a window of its own.
      const acks = options.noAck
        ? null
        : new AckWindow(ch, (err, what) => logger.debug({ err: err.message, queue }, `${what} on a closed channel; the broker will redeliver`));
      if (window) this.ackWindows.delete(window);
      window = acks;
      if (acks) this.ackWindows.add(acks);
      const sub = async (on: Channel): Promise<string> => {
        const reply = await on.consume(
          queue,
          (msg) => {
            if (!msg) {
              // The broker cancelled the consumer (queue deleted, say): close the channel so
              // it is re-opened, with backoff, and the consume retried.
              logger.warn({ queue }, 'consumer cancelled by the broker; resubscribing');
              on.close().catch(() => undefined);
              return;
            }
            const settle = acks?.track(msg);
            const delivery: Delivery = {
              message: msg,
              body: msg.content,
              ack: () => settle?.ack(),
              nack: (requeue) => settle?.nack(requeue),
            };
            Promise.resolve()
              .then(() => onMessage(delivery))
              .catch((err: Error) => logger.error({ err, queue }, 'message handler failed'));
          },
          {
            noAck: options.noAck ?? false,
            exclusive: options.exclusive ?? false,
            ...(options.consumerTag ? { consumerTag: options.consumerTag } : {}),
          },
        );
        return reply.consumerTag;
      };
      subscribe = () => sub(ch);
      tag = await sub(ch);
    });
    return {
      setPrefetch: async (n) => {
        if (!Number.isInteger(n) || n < 1 || n > 65535) throw new RangeError(`prefetch must be an integer from 1 to 65535, got ${n}`);
        if (options.noAck || options.exclusive || options.consumerTag) {
          throw new Error(`setPrefetch needs a consumer with acks, not exclusive, named by the broker (queue ${queue})`);
        }
        if (n === prefetch) return;
        prefetch = n;
        // While disconnected there is no channel: the re-opened one starts with the new value.
        const ch = mc.peek();
        if (!ch || !subscribe || cancelled) return;
        // RabbitMQ applies a consumer's prefetch to consumers created after it: subscribe again
        // with the new one, then cancel the old subscription. What it delivered stays unacked
        // on this channel and is acked as usual; only new deliveries count against the new value.
        await ch.prefetch(n);
        const old = tag;
        const fresh = await subscribe();
        tag = fresh;
        if (old) await ch.cancel(old);
        if (cancelled) await ch.cancel(fresh); // cancel() came while subscribing
      },
      cancel: async () => {
        cancelled = true;
        const ch = mc.peek();
        if (ch && tag) await ch.cancel(tag).catch(() => undefined);
      },
      close: async () => {
        cancelled = true;
        const ch = mc.peek();
        if (ch && tag) await ch.cancel(tag).catch(() => undefined);
        window?.flush();
        if (window) this.ackWindows.delete(window);
        await mc.close();
      },
    };
  }

  /**
   * Publishes one persistent message and resolves when the broker confirms it (rejects if
   * the broker nacks it or the channel closes first: the caller still owns the message).
   */
  async publish(
    exchange: string,
    routingKey: string,
    body: Buffer,
    properties: Options.Publish = {},
  ): Promise<void> {
    const ch = await this.publisher.get();
    await new Promise<void>((resolve, reject) => {
      ch.publish(
        exchange,
        routingKey,
        body,
        { persistent: true, contentType: 'application/json', ...properties },
        (err: unknown) => (err ? reject(err instanceof Error ? err : new Error(`broker nacked the message to ${exchange}`)) : resolve()),
      );
    });
  }

  /**
   * A queue's ready messages and consumers, or null when it does not exist (a passive
   * declare on a throwaway channel, since a 404 closes the channel). Throws while
   * disconnected.
   */
  async queueStats(queue: string): Promise<{ messageCount: number; consumerCount: number } | null> {
    const model = this.model;
    if (!model) throw new Error('not connected to RabbitMQ');
    const ch = await model.createChannel();
    ch.on('error', () => undefined);
    try {
      const r = await ch.checkQueue(queue);
      await ch.close().catch(() => undefined);
      return { messageCount: r.messageCount, consumerCount: r.consumerCount };
    } catch {
      return null;
    }
  }

  /** Whether a queue exists. */
  async queueExists(queue: string): Promise<boolean> {
    return (await this.queueStats(queue)) !== null;
  }

  /** Message count of a queue, or null when it does not exist. */
  async queueDepth(queue: string): Promise<number | null> {
    return (await this.queueStats(queue))?.messageCount ?? null;
  }

  get connected(): boolean {
    return this.model !== null;
  }

  /** Closes every channel (pending waits for a channel reject) and the connection. */
  async close(): Promise<void> {
    this.closing = true;
    // Acks settled in this turn of the event loop go out before their channels close.
    for (const w of this.ackWindows) w.flush();
    this.ackWindows.clear();
    for (const c of [...this.channels]) await c.close();
    await this.conn.close().catch(() => undefined);
  }
}

/**
 * Whether a declare failed because the queue exists but its process is not running yet.
 * RabbitMQ answers 404 "home node … of durable queue … is down or inaccessible" to a
 * `queue.declare` that arrives while another connection is creating the same queue (seen
 * with two orchestrators starting at once on a loaded machine; the queue was up a moment
 * later). On a cluster the same answer means the queue's node is down, and a retry a
 * moment later is what a client can do then too.
 */
export function isQueueStarting(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  return e?.code === 404 && typeof e.message === 'string' && e.message.includes('is down or inaccessible');
}

/** Tries of retryWhileQueueStarts, and the pause before the n-th retry (n × this). */
const TOPOLOGY_ATTEMPTS = 6;
const TOPOLOGY_RETRY_MS = 100;

/**
 * Runs `declare` (idempotent: declaring a topology again changes nothing), again after a pause
 * while it fails with isQueueStarting, at most `attempts` times in all (about 1.5 s of pauses by
 * default); any other error, or the last one, is thrown as it is.
 */
export async function retryWhileQueueStarts(
  declare: () => Promise<void>,
  onRetry: (err: unknown, attempt: number, delayMs: number) => void,
  attempts = TOPOLOGY_ATTEMPTS,
  delayMs = TOPOLOGY_RETRY_MS,
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await declare();
    } catch (err) {
      if (attempt >= attempts || !isQueueStarting(err)) throw err;
      onRetry(err, attempt, delayMs * attempt);
      await new Promise((r) => setTimeout(r, delayMs * attempt));
    }
  }
}

/** Thrown when an exchange or queue exists with other settings than the ones declared. */
export class TopologyMismatchError extends Error {
  override readonly name = 'TopologyMismatchError';
}

export async function applyTopology(ch: Channel, t: Topology): Promise<void> {
  // A channel error closes the channel; the caller's channel is throwaway.
  ch.on('error', () => undefined);
  const mismatch = (kind: string, name: string, err: unknown): never => {
    const detail = (err as Error).message.replace(/^.*PRECONDITION[-_]FAILED - /, '');
    throw new TopologyMismatchError(
      `${kind} '${name}' already exists with other settings (${detail}). It was declared by another ` +
        `version or configuration (e.g. TASKER_QUEUE_TYPE, or TASKER_RESULTS_QUEUE_TYPE for the results queue). Delete it (rabbitmqctl delete_queue / ` +
        `delete_exchange) once it is drained, or use another TASKER_AMQP_PREFIX.`,
    );
  };
  const is406 = (err: unknown) => (err as { code?: number }).code === 406;
  for (const e of t.exchanges) {
    await ch.assertExchange(e.name, e.type, { durable: true, autoDelete: false }).catch((err) => (is406(err) ? mismatch('exchange', e.name, err) : Promise.reject(err)));
  }
  for (const q of t.queues) {
    await ch.assertQueue(q.name, { durable: true, arguments: q.arguments }).catch((err) => (is406(err) ? mismatch('queue', q.name, err) : Promise.reject(err)));
  }
  for (const b of t.bindings) {
    if (b.kind === 'queue') await ch.bindQueue(b.destination, b.source, b.pattern);
    else await ch.bindExchange(b.destination, b.source, b.pattern);
  }
}

/**
 * amqplib writes each frame it has queued to the socket with a write of its own (its muxer
 * moves the channels' frames to the socket one `write` at a time): with TCP_NODELAY, one
 * segment and one read on the broker's side per frame. Corking the socket for the duration
 * of one pass of the muxer sends what the pass moves in one write instead. Bench, classic
 * queues, 8,000 diamond tasks, four pairs of runs: RabbitMQ's CPU per step 0.141–0.146 ms
 * with this, 0.156–0.169 without; the whole stack 0.538–0.554 vs 0.573–0.594 ms. It reaches
 * into amqplib's connection (`muxer._readIncoming`, `stream`) and does nothing where those
 * are not what it expects.
 */
function corkFrames(model: ChannelModel): void {
  const conn = (model as unknown as { connection?: { muxer?: { _readIncoming?: () => void }; stream?: { cork?: () => void; uncork?: () => void } } }).connection;
  const mux = conn?.muxer;
  const sock = conn?.stream;
  if (!mux || typeof mux._readIncoming !== 'function' || !sock?.cork || !sock.uncork) return;
  const read = mux._readIncoming.bind(mux);
  mux._readIncoming = () => {
    sock.cork!();
    try {
      read();
    } finally {
      sock.uncork!();
    }
  };
}
