import { z } from 'zod';
import { DEFAULT_AMQP_PREFIX, Limits, PREFIX_PATTERN, type TopologyOptions } from '@tasker/protocol';

/**
 * Orchestrator configuration: every option comes from a `TASKER_*` environment variable
 * (see the README's table) or is passed in code; defaults reach the local services.
 */
export const OrchestratorConfigSchema = z.object({
  /** @defaultValue postgres://postgres:postgres@127.0.0.1:5432/tasker */
  databaseUrl: z.string().default('postgres://postgres:postgres@127.0.0.1:5432/tasker'),
  /** Postgres schema holding Tasker's tables. @defaultValue tasker */
  dbSchema: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/).default('tasker'),
  /** Connections in the pool. @defaultValue 10 */
  dbPoolSize: z.coerce.number().int().min(2).max(200).default(10),
  /** @defaultValue amqp://guest:guest@127.0.0.1:5672 */
  amqpUrl: z.string().default('amqp://guest:guest@127.0.0.1:5672'),
  /** Prefix of every exchange and queue name. @defaultValue tasker */
  amqpPrefix: z.string().regex(PREFIX_PATTERN).default(DEFAULT_AMQP_PREFIX),
  /** Type of the work queues; fixed when a queue is first declared. @defaultValue quorum */
  queueType: z.enum(['classic', 'quorum']).default('quorum'),
  /**
   * Type of the results queue alone, where it should differ from `queueType` (for example
   * quorum step queues and a classic results queue: one quorum hop less in every step; see
   * TopologyOptions.resultsQueueType). Fixed when the queue is first declared.
   * @defaultValue queueType
   */
  resultsQueueType: z.enum(['classic', 'quorum']).nullable().default(null),
  /**
   * Deliveries of one step message before the broker dead-letters it as poison. Every
   * return counts (a crash, and also a graceful hand-back at shutdown), hence some room.
   * @defaultValue 10
   */
  deliveryLimit: z.coerce.number().int().min(1).max(1000).default(10),
  /**
   * Most steps the orchestrator puts in one message (`steps`, protocol section 3) when it
   * releases several steps of a namespace at once; 1 sends every step alone (`step`). Raise
   * it only once every worker of every namespace understands `steps` messages (the
   * TypeScript, Python and Ruby workers of this repository do). @defaultValue 1
   */
  stepsPerMessage: z.coerce.number().int().min(1).max(Limits.maxStepsPerMessage).default(1),
  /** HTTP API port; 0 picks a free port. @defaultValue 8080 */
  httpPort: z.coerce.number().int().min(0).max(65535).default(8080),
  /** @defaultValue 127.0.0.1 */
  httpHost: z.string().default('127.0.0.1'),
  /** Start the HTTP API. @defaultValue true */
  httpEnabled: z.boolean().default(true),
  /** A folder of templates (*.yaml, searched recursively) registered at start. @defaultValue none */
  templatesDir: z.string().nullable().default(null),
  /** Which `environments.<name>` overrides of templates apply. @defaultValue none */
  environment: z.string().nullable().default(null),
  /** Most results (or requests) processed in one transaction; a message carrying several counts each. @defaultValue 200 */
  batchSize: z.coerce.number().int().min(1).max(5000).default(200),
  /**
   * Memory, in MiB (estimated from the JSON held), for this orchestrator's copy of the live
   * tasks it created or last wrote: the next result batch for them then runs in one round
   * trip to Postgres instead of two (the write checks the copy under the task locks). The copy
   * is off by itself while other orchestrators consume the same results. 0 turns it off.
   * @defaultValue 8
   */
  taskCacheMb: z.coerce.number().min(0).max(65536).default(8),
  /** Batches of one queue processed at once (each its own transaction). @defaultValue 4 */
  batchConcurrency: z.coerce.number().int().min(1).max(64).default(4),
  /**
   * Unacked messages the orchestrator holds per queue: two full batches. More only holds
   * memory (1000 took the orchestrator from 186 to 207 MB at 10,000 tasks in flight, issue
   * 7) without a faster drain. @defaultValue 400
   */
  prefetch: z.coerce.number().int().min(1).max(65535).default(400),
  /** How often the outbox is swept for messages a crashed process left. @defaultValue 1000 */
  outboxSweepMs: z.coerce.number().int().min(50).default(1000),
  /** Age after which an outbox row counts as left behind and is published by any process. @defaultValue 5000 */
  outboxStaleMs: z.coerce.number().int().min(100).default(5000),
  /**
   * A step dispatched this long ago (plus its own timeout) with no result, while its queue
   * holds no ready message, is dispatched again: its message was lost (a purged queue, say)
   * or its worker hangs. @defaultValue 300000 (5 minutes)
   */
  redispatchAfterMs: z.coerce.number().int().min(100).default(300_000),
  /**
   * How often the tasks that `GET /v1/tasks/:id?wait_ms=` callers wait for are read, for the
   * ends this orchestrator did not commit itself (another orchestrator's, say); those it
   * commits answer at once. @defaultValue 250
   */
  taskWaitPollMs: z.coerce.number().int().min(10).max(60_000).default(250),
  /** How often the watchdog looks for lost messages and stuck tasks. @defaultValue 10000 */
  watchdogIntervalMs: z.coerce.number().int().min(50).default(10_000),
  /** YAML or JSON file of API tokens (`tokens: [{name, token, namespaces, actions}]`). @defaultValue none */
  apiTokensFile: z.string().nullable().default(null),
  /** API tokens as JSON (an array of {name, token, namespaces, actions}). @defaultValue none */
  apiTokensJson: z.string().nullable().default(null),
  /**
   * Serve the HTTP API without authentication (every caller may do everything). Needed
   * explicitly when no token is configured; logged as a warning at start. @defaultValue false
   */
  apiInsecure: z.boolean().default(false),
  /**
   * The broker access file (infra/broker.yaml) of this installation. When set, each step
   * result's validated AMQP `user_id` must be its namespace's broker user (or an
   * orchestrator's) and task replies go only to direct reply-to addresses; anything else
   * is parked with FORBIDDEN_ORIGIN. @defaultValue none (results are not checked)
   */
  brokerAccessFile: z.string().nullable().default(null),
  /** @defaultValue info */
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});
export type OrchestratorConfig = z.infer<typeof OrchestratorConfigSchema>;
export type OrchestratorConfigInput = z.input<typeof OrchestratorConfigSchema>;

const ENV: Record<keyof OrchestratorConfig, string> = {
  databaseUrl: 'TASKER_DATABASE_URL',
  dbSchema: 'TASKER_DB_SCHEMA',
  dbPoolSize: 'TASKER_DB_POOL_SIZE',
  amqpUrl: 'TASKER_AMQP_URL',
  amqpPrefix: 'TASKER_AMQP_PREFIX',
  queueType: 'TASKER_QUEUE_TYPE',
  resultsQueueType: 'TASKER_RESULTS_QUEUE_TYPE',
  deliveryLimit: 'TASKER_DELIVERY_LIMIT',
  stepsPerMessage: 'TASKER_STEPS_PER_MESSAGE',
  httpPort: 'TASKER_HTTP_PORT',
  httpHost: 'TASKER_HTTP_HOST',
  httpEnabled: 'TASKER_HTTP_ENABLED',
  templatesDir: 'TASKER_TEMPLATES_DIR',
  environment: 'TASKER_ENV',
  batchSize: 'TASKER_BATCH_SIZE',
  prefetch: 'TASKER_PREFETCH',
  batchConcurrency: 'TASKER_BATCH_CONCURRENCY',
  taskCacheMb: 'TASKER_TASK_CACHE_MB',
  outboxSweepMs: 'TASKER_OUTBOX_SWEEP_MS',
  outboxStaleMs: 'TASKER_OUTBOX_STALE_MS',
  apiTokensFile: 'TASKER_API_TOKENS_FILE',
  apiTokensJson: 'TASKER_API_TOKENS',
  apiInsecure: 'TASKER_API_INSECURE',
  redispatchAfterMs: 'TASKER_REDISPATCH_AFTER_MS',
  watchdogIntervalMs: 'TASKER_WATCHDOG_INTERVAL_MS',
  taskWaitPollMs: 'TASKER_TASK_WAIT_POLL_MS',
  brokerAccessFile: 'TASKER_BROKER_ACCESS_FILE',
  logLevel: 'TASKER_LOG_LEVEL',
};

/** The environment variable of each option, for docs and error messages. */
export const CONFIG_ENV_VARS = ENV;

/** Resolves options once: explicit input over environment over defaults. */
export function resolveConfig(
  input: OrchestratorConfigInput = {},
  env: NodeJS.ProcessEnv = process.env,
): OrchestratorConfig {
  const fromEnv: Record<string, unknown> = {};
  for (const [key, variable] of Object.entries(ENV)) {
    const v = env[variable];
    if (v !== undefined && v !== '') {
      fromEnv[key] = key === 'httpEnabled' ? v !== 'false' && v !== '0' : key === 'apiInsecure' ? v === 'true' || v === '1' : v;
    }
  }
  const parsed = OrchestratorConfigSchema.safeParse({ ...fromEnv, ...input });
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => {
      const key = String(i.path[0]);
      return `${key} (${ENV[key as keyof OrchestratorConfig] ?? '?'}): ${i.message}`;
    });
    throw new Error(`invalid orchestrator configuration: ${problems.join('; ')}`);
  }
  return parsed.data;
}

/** The queue settings of the broker topology this configuration declares. */
export function topologyOptions(config: Pick<OrchestratorConfig, 'queueType' | 'resultsQueueType' | 'deliveryLimit'>): TopologyOptions {
  return {
    queueType: config.queueType,
    deliveryLimit: config.deliveryLimit,
    ...(config.resultsQueueType ? { resultsQueueType: config.resultsQueueType } : {}),
  };
}
