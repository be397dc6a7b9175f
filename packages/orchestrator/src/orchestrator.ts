import { sql } from 'kysely';
import pino, { type Logger } from 'pino';
import type pg from 'pg';
import {
  ErrorCode,
  PROTOCOL_VERSION,
  RetryDue,
  StepMessage,
  StepResult,
  STEP_MESSAGES_SHAPE,
  STEP_RESULTS_SHAPE,
  TASK_REPLIES_SHAPE,
  TASK_REQUESTS_SHAPE,
  TaskerError,
  TaskRequest,
  encodeBatch,
  TemplateError,
  coreTopology,
  names,
  readRequestId,
  type CompiledTemplate,
  type ApiTokenConfig,
  type CreateTaskBody,
  type ListTasksQuery,
  type Names,
  type TaskReply,
  type TaskView,
  type TopologyOptions,
} from '@tasker/protocol';
import { Broker, amqpUsername, type Delivery } from '@tasker/transport';
import { resolveConfig, topologyOptions, type OrchestratorConfig, type OrchestratorConfigInput } from './config.ts';
import { createDb, type Db } from './db/database.ts';
import { ensureDatabase, migrate } from './db/migrate.ts';
import { BatchConsumer } from './amqp/batch-consumer.ts';
import { BatchQueue } from './batch-queue.ts';
import { buildHttpServer } from './http/server.ts';
import { OutboxRelay } from './outbox/outbox.ts';
import { stepMessagesForRefs } from './tasks/dispatch.ts';
import { processResults } from './results/process-results.ts';
import { TaskCache } from './results/task-cache.ts';
import { TaskWaiters } from './tasks/task-waiters.ts';
import { processPoison } from './results/process-poison.ts';
import { processRetries } from './results/process-retries.ts';
import { ContextValidator } from './tasks/context-validator.ts';
import { createTasks, type CreateOutcome } from './tasks/create-tasks.ts';
import { readTask } from './tasks/read-task.ts';
import { loadTemplateDir } from './templates/load-dir.ts';
import { TemplateRegistry } from './templates/registry.ts';
import { Watchdog, findStuckTasks, type StuckItem } from './watchdog/watchdog.ts';
import { TokenAuthenticator, loadTokensFile, parseTokensJson } from './http/auth.ts';
import { cancelTask, completeStepManually, retryStep, type Actor } from './tasks/operations.ts';
import { listTasks } from './tasks/read-task.ts';
import { resolveResultOrigin, type ResultOriginCheck, type ResultOriginOptions } from './broker-access/result-origin.ts';

/** Direct reply-to addresses: the only reply_to the orchestrator answers when broker access control is on. */
const DIRECT_REPLY_TO_PREFIX = 'amq.rabbitmq.reply-to.';

export interface StartOptions extends OrchestratorConfigInput {
  logger?: Logger;
  /** API tokens given in code (added to those from TASKER_API_TOKENS_FILE / TASKER_API_TOKENS). */
  apiTokens?: ApiTokenConfig[];
  /**
   * Who may publish results, given in code instead of TASKER_BROKER_ACCESS_FILE (not both):
   * a result for namespace X is applied only if its validated `user_id` is X's user or an
   * orchestrator's. @defaultValue none (results are not checked)
   */
  resultOrigin?: ResultOriginOptions;
}

/** How often an orchestrator asks the broker whether others consume its results queue too (see watchSharing). */
const SHARING_CHECK_MS = 2000;

/**
 * The orchestrator process: Postgres state, the broker consumers (results, expired
 * retries, task requests), the outbox relay and the HTTP API. Several may run against the
 * same database and queues: they share the queues' messages, and per-task row locks keep
 * their transitions from overlapping.
 */
export class Orchestrator {
  readonly names: Names;
  /** The queue settings this orchestrator declares its queues with (TASKER_QUEUE_TYPE, …). */
  private readonly topology: TopologyOptions;
  readonly registry: TemplateRegistry;
  private readonly validator = new ContextValidator();
  private readonly relay: OutboxRelay;
  readonly watchdog: Watchdog;
  private readonly consumers: Array<BatchConsumer<any>> = [];
  private http: ReturnType<typeof buildHttpServer> | null = null;
  /** Task creation requests (HTTP) waiting to go in one transaction. */
  private readonly creator: BatchQueue<{ input: CreateTaskBody; resolve: (o: CreateOutcome) => void; reject: (e: unknown) => void }>;
  /** Where the HTTP API listens, once started. */
  httpUrl: string | null = null;
  /** This orchestrator's copy of the live tasks it created or last wrote (null: TASKER_TASK_CACHE_MB=0). */
  readonly taskCache: TaskCache | null;
  /** Callers of `GET /v1/tasks/:id?wait_ms=` waiting for their task to end. */
  private readonly waiters: TaskWaiters;

  private constructor(
    readonly config: OrchestratorConfig,
    readonly db: Db,
    private readonly pool: pg.Pool,
    readonly broker: Broker,
    readonly logger: Logger,
    /** The result-origin check (issue 6), or null when results are not checked. */
    readonly resultOrigin: ResultOriginCheck | null = null,
  ) {
    this.names = names(config.amqpPrefix);
    this.taskCache = config.taskCacheMb > 0 ? new TaskCache(config.taskCacheMb * 1024 * 1024) : null;
    this.waiters = new TaskWaiters(db, config.taskWaitPollMs, logger.child({ component: 'task-waiters' }));
    this.creator = new BatchQueue({
      batchSize: config.batchSize,
      concurrency: config.batchConcurrency,
      run: (batch) =>
        this.createTasks(batch.map((b) => b.input)).then(
          (outcomes) => batch.forEach((b, j) => b.resolve(outcomes[j]!)),
          (err) => batch.forEach((b) => b.reject(err)),
        ),
      onError: (err) => logger.error({ err }, 'task creation batch failed unexpectedly'),
    });
    this.topology = topologyOptions(config);
    this.registry = new TemplateRegistry(db, broker, this.names, this.topology, logger);
    this.relay = new OutboxRelay(db, broker, logger.child({ component: 'outbox' }), {
      sweepMs: config.outboxSweepMs,
      staleMs: config.outboxStaleMs,
      stepMessages: (trx, refs) => stepMessagesForRefs(trx, this.registry, this.names, refs, config.stepsPerMessage),
      // Child-task outcomes carry the orchestrator's user, which the origin check trusts.
      ...(resultOrigin ? { stampUserId: { exchange: this.names.resultsExchange, userId: amqpUsername(config.amqpUrl) } } : {}),
    });
    this.watchdog = new Watchdog(
      { db, broker, registry: this.registry, names: this.names, logger: logger.child({ component: 'watchdog' }), relay: this.relay },
      { intervalMs: config.watchdogIntervalMs, redispatchAfterMs: config.redispatchAfterMs },
    );
  }

  private auth: TokenAuthenticator | null = null;

  static async start(options: StartOptions = {}): Promise<Orchestrator> {
    const { logger: given, apiTokens, resultOrigin: originGiven, ...input } = options;
    const config = resolveConfig(input);
    const logger = given ?? pino({ level: config.logLevel, base: { component: 'orchestrator' } });
    const ownUser = amqpUsername(config.amqpUrl);
    const resultOrigin = resolveResultOrigin({ given: originGiven ?? null, file: config.brokerAccessFile, prefix: config.amqpPrefix, ownUser });
    if (resultOrigin) {
      if (!resultOrigin.options.orchestratorUsers.includes(ownUser)) {
        logger.warn(
          { ownUser, orchestratorUsers: resultOrigin.options.orchestratorUsers },
          "the orchestrator's broker user is not the configured orchestrator user; it is trusted for results anyway (it publishes child-task outcomes)",
        );
      }
      logger.info({ namespaceUser: resultOrigin.options.namespaceUser, orchestratorUsers: [...resultOrigin.orchestratorUsers] }, 'step results are checked for their origin (user_id)');
    }
    // Resolve the API's authentication before touching anything: a bad token file fails fast.
    const tokens = [
      ...(apiTokens ?? []),
      ...(config.apiTokensFile ? loadTokensFile(config.apiTokensFile) : []),
      ...(config.apiTokensJson ? parseTokensJson(config.apiTokensJson) : []),
    ];
    if (config.httpEnabled && tokens.length === 0 && !config.apiInsecure) {
      throw new Error(
        'no API tokens configured: set TASKER_API_TOKENS_FILE or TASKER_API_TOKENS, or run without authentication with TASKER_API_INSECURE=true',
      );
    }
    await ensureDatabase(config.databaseUrl, logger);
    const { db, pool } = createDb(config.databaseUrl, config.dbSchema, config.dbPoolSize);
    await migrate(db, config.dbSchema, logger);
    const broker = await Broker.connect({ url: config.amqpUrl, connectionName: 'tasker-orchestrator', logger });
    const o = new Orchestrator(config, db, pool, broker, logger, resultOrigin);
    if (tokens.length > 0) o.auth = new TokenAuthenticator(tokens);
    else if (config.httpEnabled) logger.warn('HTTP API runs WITHOUT authentication (TASKER_API_INSECURE=true): every caller may do everything');
    try {
      await o.boot();
    } catch (err) {
      await o.stop().catch(() => undefined);
      throw err;
    }
    return o;
  }

  private async boot(): Promise<void> {
    const { config, names: n } = this;
    await this.broker.declare(coreTopology(n, this.topology));
    await this.registry.declareKnownNamespaces();
    if (config.templatesDir) await this.registerTemplates(await loadTemplateDir(config.templatesDir, config.environment));

    const deps = { db: this.db, registry: this.registry, names: n, logger: this.logger, stepsPerMessage: config.stepsPerMessage, taskCache: this.taskCache };
    const park = (kind: string) => (d: Delivery, e: { code: string; message: string }, body?: string) => this.park(d, kind, e, body);
    const common = { prefetch: config.prefetch, batchSize: config.batchSize, concurrency: config.batchConcurrency, logger: this.logger };

    this.consumers.push(
      new BatchConsumer(this.broker, {
        ...common,
        queue: n.resultsQueue,
        what: 'step result',
        schema: StepResult,
        // Workers may answer several steps in one `step_results` message.
        batch: STEP_RESULTS_SHAPE,
        // A NUL in an error text is replaced when stored, rather than losing the result.
        allowNul: true,
        park: park('result'),
        check: (r, d) =>
          d.message.fields.routingKey !== r.namespace
            ? new TaskerError(
                ErrorCode.INVALID_MESSAGE,
                `step result for namespace '${r.namespace}' was published with routing key '${d.message.fields.routingKey}'`,
              )
            : // RabbitMQ validated user_id against the publisher's connection: it says who sent it.
              (this.resultOrigin?.check(r, d.message.properties.userId as string | undefined) ?? null),
        process: async (items) => {
          const out = await processResults(deps, items.map((i) => i.value));
          this.waiters.finished(out.finished);
          for (const i of out.ignored) {
            this.logger.info(
              { taskId: i.result.task_id, stepId: i.result.step_id, attempt: i.result.attempt, code: i.code },
              `step result changed nothing: ${i.reason}`,
            );
          }
          await this.relay.publish(out.outbox);
        },
      }),
      // Step messages the broker gave up on after the delivery limit (workers kept dying on
      // them): the step fails for good with POISON_MESSAGE instead of looping forever.
      new BatchConsumer(this.broker, {
        ...common,
        queue: n.poisonQueue,
        what: 'poison step message',
        schema: StepMessage,
        batch: STEP_MESSAGES_SHAPE,
        park: park('poison'),
        process: async (items) => {
          const out = await processPoison(
            deps,
            items.map((i) => ({ message: i.value, delivery: i.delivery, oneOfSeveral: i.part !== undefined })),
            config.deliveryLimit,
          );
          this.waiters.finished(out.finished);
          for (const r of out.failed) {
            this.logger.error({ taskId: r.task_id, stepId: r.step_id, attempt: r.attempt, namespace: r.namespace }, 'step message dead-lettered after its delivery limit');
          }
          for (const m of out.alone) {
            this.logger.warn(
              { taskId: m.task_id, stepId: m.step_id, attempt: m.attempt, namespace: m.namespace },
              'steps message dead-lettered after its delivery limit: its unanswered step goes again alone',
            );
          }
          await this.relay.publish(out.outbox);
        },
      }),
      new BatchConsumer(this.broker, {
        ...common,
        queue: n.retriesQueue,
        what: 'retry-due message',
        schema: RetryDue,
        park: park('retry'),
        process: async (items) => {
          const out = await processRetries(deps, items.map((i) => i.value));
          for (const i of out.ignored) {
            this.logger.info({ taskId: i.due.task_id, stepId: i.due.step_id, code: i.code }, `retry not started: ${i.reason}`);
          }
          await this.relay.publish(out.outbox);
        },
      }),
      new BatchConsumer(this.broker, {
        ...common,
        queue: n.taskRequestsQueue,
        what: 'task request',
        schema: TaskRequest,
        batch: TASK_REQUESTS_SHAPE,
        park: park('task_request'),
        check: (r, d, inBatch) =>
          !d.message.properties.replyTo
            ? new TaskerError(ErrorCode.MISSING_REPLY_TO, 'task request has no reply_to property; nobody could be told the outcome')
            : !this.mayReplyTo(d.message.properties.replyTo as string)
              ? // The reply goes through the default exchange: to a named queue, it would let any
                // requester drop messages into any queue under the orchestrator's name.
                new TaskerError(
                  ErrorCode.FORBIDDEN_ORIGIN,
                  `task request reply_to '${String(d.message.properties.replyTo).slice(0, 200)}' is not a direct reply-to address (amq.rabbitmq.reply-to); with broker access control on, replies go nowhere else`,
                )
              : d.message.fields.routingKey !== r.namespace
              ? // The routing key is what a broker user's topic permission checks: it must be the namespace asked for.
                new TaskerError(
                  ErrorCode.INVALID_MESSAGE,
                  `task request for namespace '${r.namespace}' was published with routing key '${d.message.fields.routingKey}'`,
                )
              : inBatch && r.request_id === undefined
              ? // Its reply could not say which request it answers.
                new TaskerError(ErrorCode.INVALID_MESSAGE, 'a task request in a task_requests message needs its request_id')
              : null,
        process: async (items) => {
          const { outcomes, outbox } = await createTasks(
            { ...deps, validator: this.validator },
            items.map(({ value: { protocol_version: _v, message_type: _t, request_id: _r, ...body } }) => body),
          );
          await this.relay.publish(outbox);
          await this.sendTaskReplies(items.map((item, i) => ({ delivery: item.delivery, request: item.value, inBatch: item.part !== undefined, outcome: outcomes[i]! })));
        },
      }),
    );
    for (const c of this.consumers) await c.start();
    this.watchSharing();
    this.relay.start();
    await this.relay.sweep();
    this.watchdog.start();

    if (config.httpEnabled) {
      this.http = buildHttpServer(this, this.logger, this.auth);
      const address = await this.http.listen({ port: config.httpPort, host: config.httpHost });
      this.httpUrl = address.replace('[::1]', '127.0.0.1');
      this.logger.info({ url: this.httpUrl }, 'HTTP API listening');
    }
  }

  /**
   * Answers task requests: a request that came alone with a `task_reply`, the requests of one
   * `task_requests` message with one `task_replies` message, each reply naming its
   * `request_id`; to the message's `reply_to`, with its `correlation_id`. Replies are not
   * persistent (direct reply-to); one that cannot be sent is logged, and the requester's
   * timeout tells it to ask again with the same idempotency key.
   */
  private async sendTaskReplies(answers: Array<{ delivery: Delivery; request: TaskRequest; inBatch: boolean; outcome: CreateOutcome }>): Promise<void> {
    const byMessage = new Map<Delivery, string[]>();
    const sends: Array<Promise<unknown>> = [];
    for (const a of answers) {
      const o = a.outcome;
      const id = a.request.request_id !== undefined ? { request_id: a.request.request_id } : {};
      const reply: TaskReply = o.ok
        ? { protocol_version: PROTOCOL_VERSION, message_type: 'task_reply', ok: true, created: o.created, task: o.task, ...id }
        : { protocol_version: PROTOCOL_VERSION, message_type: 'task_reply', ok: false, error: o.error.toJSON(), ...id };
      if (!a.inBatch) {
        sends.push(this.publishReply(a.delivery, JSON.stringify(reply), 'task_reply'));
        continue;
      }
      let replies = byMessage.get(a.delivery);
      if (!replies) byMessage.set(a.delivery, (replies = []));
      replies.push(JSON.stringify(reply));
    }
    for (const [d, replies] of byMessage) sends.push(this.publishReply(d, encodeBatch(TASK_REPLIES_SHAPE, replies), 'task_replies'));
    await Promise.all(sends);
  }

  private publishReply(d: Delivery, body: string, type: 'task_reply' | 'task_replies'): Promise<unknown> {
    return this.broker
      .publish('', d.message.properties.replyTo as string, Buffer.from(body), { correlationId: d.message.properties.correlationId, persistent: false, type })
      .catch((err: Error) => this.logger.warn({ err: err.message }, 'task reply could not be sent'));
  }

  /**
   * Parks a message on the dead letters with the reason; `body` parks one item of a message
   * carrying several. A task request whose sender waits for a reply is also told why, instead
   * of waiting for its timeout; one request of a `task_requests` message is answered with its
   * `request_id`, and not at all when it has none that can be read.
   */
  private async park(d: Delivery, kind: string, e: { code: string; message: string }, body?: string): Promise<void> {
    const replyTo = d.message.properties.replyTo as string | undefined;
    if (kind === 'task_request' && replyTo && this.mayReplyTo(replyTo)) {
      const id = body === undefined ? undefined : readRequestId(body);
      // One request of several without a readable request_id: no reply could say which it answers.
      if (body === undefined || id !== undefined) {
        const reply: TaskReply = {
          protocol_version: PROTOCOL_VERSION,
          message_type: 'task_reply',
          ok: false,
          error: { code: e.code, message: e.message },
          ...(id !== undefined ? { request_id: id } : {}),
        };
        await this.publishReply(d, JSON.stringify(reply), 'task_reply');
      }
    }
    await this.broker.publish(this.names.deadLetterExchange, `invalid.${kind}`, body === undefined ? d.body : Buffer.from(body), {
      headers: {
        ...(body === undefined ? {} : { 'x-tasker-part-of': d.message.properties.messageId ?? d.message.properties.type ?? 'a message carrying several' }),
        'x-tasker-code': e.code,
        'x-tasker-reason': e.message.slice(0, 1000),
        'x-tasker-source-queue': d.message.fields.routingKey,
        'x-tasker-source-exchange': d.message.fields.exchange,
      },
      contentType: d.message.properties.contentType ?? 'application/octet-stream',
    });
  }

  /** Whether a task reply may go to this reply_to: any, unless broker access control is on. */
  private mayReplyTo(replyTo: string): boolean {
    return !this.resultOrigin || replyTo.startsWith(DIRECT_REPLY_TO_PREFIX);
  }

  /**
   * Registers compiled templates (declaring their namespaces' queues). Every input_schema is
   * checked first, so a bad one registers nothing.
   */
  async registerTemplates(templates: CompiledTemplate[]): Promise<void> {
    const problems = templates.flatMap((t) => {
      try {
        this.checkInputSchema(t);
        return [];
      } catch (err) {
        return [{ origin: `${t.namespace}.${t.name}@${t.version}`, step: null, message: (err as Error).message, code: ErrorCode.TEMPLATE_INVALID }];
      }
    });
    if (problems.length > 0) throw new TemplateError(problems);
    for (const t of templates) await this.registerTemplate(t);
  }

  /** Registers one template; `created` is false when that exact version was registered already. */
  async registerTemplate(t: CompiledTemplate): Promise<{ id: string; created: boolean }> {
    this.checkInputSchema(t);
    return this.registry.register(t);
  }

  /** Refuses a template whose input_schema is not a valid JSON Schema. */
  checkInputSchema(t: CompiledTemplate): void {
    if (t.inputSchema) this.validator.compile(`check:${t.namespace}.${t.name}@${t.version}:${JSON.stringify(t.inputSchema)}`, t.inputSchema);
  }

  listTasks(q: ListTasksQuery, namespaces: string[] | '*' = '*') {
    return listTasks(this.db, q, namespaces);
  }

  private get opDeps() {
    return { db: this.db, registry: this.registry, names: this.names };
  }

  /** Cancels a task in progress (and the tasks it created); running handlers are told to stop. */
  async cancelTask(id: string, actor: Actor): Promise<void> {
    const { outbox } = await cancelTask(this.opDeps, id, actor);
    // The task and the children it cancelled: their waiters answer.
    this.waiters.recheck();
    // Not needed for correctness (a batch checks its copy), but it saves that batch a round trip.
    this.taskCache?.drop([id]);
    await this.relay.publish(outbox);
    this.logger.info({ taskId: id, actor: actor.name, reason: actor.reason }, 'task cancelled');
  }

  /** Retries a failed step with a fresh budget of attempts; the task resumes. */
  async retryStep(stepId: string, actor: Actor): Promise<{ taskId: string }> {
    const { outbox, taskId } = await retryStep(this.opDeps, stepId, actor);
    this.taskCache?.drop([taskId]);
    await this.relay.publish(outbox);
    this.logger.info({ taskId, stepId, actor: actor.name, reason: actor.reason }, 'step retried by an operator');
    return { taskId };
  }

  /** Resolves a failed step, or completes an unfinished one with a result; its dependents proceed. */
  async completeStep(stepId: string, actor: Actor, mode: { kind: 'resolve' } | { kind: 'complete'; result: unknown }): Promise<{ taskId: string }> {
    const { outbox, taskId } = await completeStepManually(this.opDeps, stepId, actor, mode);
    this.waiters.recheck();
    this.taskCache?.drop([taskId]);
    await this.relay.publish(outbox);
    this.logger.info({ taskId, stepId, actor: actor.name, reason: actor.reason, kind: mode.kind }, 'step completed by an operator');
    return { taskId };
  }

  /** Creates tasks now, in one transaction, and publishes their first steps; each created task comes with its view. */
  async createTasks(inputs: CreateTaskBody[]): Promise<CreateOutcome[]> {
    const { outcomes, outbox } = await createTasks(
      {
        db: this.db,
        registry: this.registry,
        validator: this.validator,
        names: this.names,
        logger: this.logger,
        stepsPerMessage: this.config.stepsPerMessage,
        taskCache: this.taskCache,
      },
      inputs,
      { views: true },
    );
    await this.relay.publish(outbox);
    return outcomes;
  }

  /**
   * Creates one task, batched with the other requests waiting: at most
   * `batchConcurrency` creation transactions run at once, and requests that arrive
   * meanwhile wait to go together in the next one (HTTP requests under load become few
   * transactions, each with many tasks, instead of many with one or two).
   */
  submitTask(input: CreateTaskBody): Promise<CreateOutcome> {
    return new Promise((resolve, reject) => this.creator.push({ input, resolve, reject }));
  }

  /**
   * Resolves once the task is no longer in progress (at once if it is not, or if there is no
   * such task), after `ms`, or when `signal` aborts; never rejects but for a failed read.
   */
  async awaitTaskEnd(id: string, ms: number, signal?: AbortSignal): Promise<void> {
    // Registered before the read: an end committed between the two still answers the wait.
    const ended = this.waiters.wait(id, ms, signal);
    const row = await this.db.selectFrom('tasks').select('state').where('id', '=', id).executeTakeFirst();
    // Ended already (or no such task): this wait, and any other for it, answers now.
    if (!row || row.state !== 'in_progress') this.waiters.finished([id]);
    await ended;
  }

  getTask(id: string, detail: { transitions?: boolean; family?: boolean } = {}): Promise<TaskView | null> {
    return readTask(this.db, this.registry, id, detail);
  }

  /** Steps and tasks that wait without progress, with why (watchdog's last pass and live tasks with nothing in flight). */
  async stuck(): Promise<StuckItem[]> {
    return [...this.watchdog.lastReported, ...(await findStuckTasks(this.db, this.config.redispatchAfterMs))];
  }

  /** Real checks of both dependencies, for /health/ready. */
  async readiness(): Promise<{ postgres: string; rabbitmq: string }> {
    let postgres = 'ok';
    try {
      await sql`SELECT 1`.execute(this.db);
    } catch (err) {
      postgres = `unavailable: ${(err as Error).message}`;
    }
    let rabbitmq = 'ok';
    try {
      if (!(await this.broker.queueExists(this.names.resultsQueue))) rabbitmq = 'results queue missing';
    } catch (err) {
      rabbitmq = `unavailable: ${(err as Error).message}`;
    }
    return { postgres, rabbitmq };
  }

  private sharingTimer: NodeJS.Timeout | null = null;
  private stopping = false;

  /** Tasks that `GET /v1/tasks/:id?wait_ms=` callers wait for now. */
  get tasksWaitedFor(): number {
    return this.waiters.size;
  }

  /** stop() has begun. */
  get isStopping(): boolean {
    return this.stopping;
  }

  /**
   * Turns the task cache off while other orchestrators consume the same results queue (the
   * broker's consumer count, asked every SHARING_CHECK_MS and after any stale batch), and on
   * again once this one is alone: with shared results, a task's next result goes to any
   * orchestrator, and copies made stale by the others cost more round trips than they save
   * (bench, two orchestrators, classic queues: 3,401 and 3,880 steps/s with the cache, 4,239
   * and 4,026 without).
   */
  private watchSharing(): void {
    const cache = this.taskCache;
    if (!cache) return;
    let checking = false;
    const check = async () => {
      if (checking) return;
      checking = true;
      if (this.sharingTimer) clearTimeout(this.sharingTimer);
      const stats = await this.broker.queueStats(this.names.resultsQueue).catch(() => null);
      checking = false;
      if (stats && !this.stopping) {
        const shared = stats.consumerCount > 1;
        if (shared !== cache.shared) {
          cache.setShared(shared);
          this.logger.info(
            { consumers: stats.consumerCount },
            shared ? 'task cache off: other orchestrators consume the same results' : 'task cache on: this orchestrator consumes the results alone',
          );
        }
      }
      if (!this.stopping) {
        this.sharingTimer = setTimeout(() => void check(), SHARING_CHECK_MS);
        this.sharingTimer.unref();
      }
    };
    // A stale copy is the first sign of another orchestrator: ask now, not at the next tick.
    cache.onStale = () => void check();
    void check();
  }

  /** Stops consuming, finishes batches in flight, closes everything it opened. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.sharingTimer) clearTimeout(this.sharingTimer);
    // Callers waiting for a task get its state now, before the HTTP server closes.
    this.waiters.close();
    await this.http?.close();
    this.watchdog.stop();
    for (const c of this.consumers) await c.stop();
    await this.relay.stop();
    await this.broker.close();
    await this.db.destroy();
    void this.pool;
    if (this.taskCache) this.logger.info({ taskCache: { ...this.taskCache.stats, held: this.taskCache.size } }, 'stopped');
  }
}
