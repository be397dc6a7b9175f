import { hostname } from 'node:os';
import { nanoid } from 'nanoid';
import { pino, type Logger } from 'pino';
import { z } from 'zod';
import { DEFAULT_AMQP_PREFIX, NAMESPACE_PATTERN, PREFIX_PATTERN, names, type Names } from '@tasker/protocol';
import type { StepHandler } from './context.ts';

/** `TASKER_AMQP_URL` when unset. */
export const DEFAULT_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';
/** `TASKER_LOG_LEVEL` when unset. */
export const DEFAULT_LOG_LEVEL = 'info';
export const DEFAULT_CONCURRENCY = 10;
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;
export const DEFAULT_OVERRUN_GRACE_MS = 5_000;

/** What {@link createWorker} accepts. Environment variables fill what is not given. */
export interface WorkerOptions {
  /** The namespace this worker serves: it reads that namespace's step queue and no other. */
  namespace: string;
  /** Handlers by the `handler.callable` of the namespace's template steps. */
  handlers: Record<string, StepHandler>;
  /**
   * Steps run at once; also the consumer's prefetch, which becomes smaller when messages carry
   * several steps each (see prefetch.ts). @defaultValue 10
   */
  concurrency?: number;
  /** amqp:// URL, credentials included. @defaultValue `TASKER_AMQP_URL`, else `amqp://guest:guest@127.0.0.1:5672` */
  amqpUrl?: string;
  /** Prefix of every exchange and queue name, as the orchestrator's. @defaultValue `TASKER_AMQP_PREFIX`, else `tasker` */
  prefix?: string;
  /** @defaultValue a pino logger at `TASKER_LOG_LEVEL`, else `info` */
  logger?: Logger;
  /**
   * On stop (or SIGTERM), how long running handlers may take to finish; after that they are
   * aborted and their messages go back to the queue. @defaultValue 10000
   */
  shutdownGraceMs?: number;
  /**
   * A handler that ignores its signal past the step's deadline keeps its slot at most this
   * long more; then the slot is freed (and the overrun logged), so a hung handler cannot
   * hold a slot forever. Its step was answered at the deadline already. @defaultValue 5000
   */
  overrunGraceMs?: number;
  /** Sent in every step result as `worker_id`. @defaultValue `<hostname>:<pid>:<6 random characters>` */
  workerId?: string;
}

/** The options once defaults and environment are applied. */
export interface ResolvedWorkerOptions {
  namespace: string;
  handlers: Readonly<Record<string, StepHandler>>;
  concurrency: number;
  amqpUrl: string;
  names: Names;
  logger: Logger;
  shutdownGraceMs: number;
  overrunGraceMs: number;
  workerId: string;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const OptionsSchema = z.object({
  namespace: z.string().regex(NAMESPACE_PATTERN, 'must be lower snake case (a-z, 0-9, _), starting with a letter'),
  handlers: z
    .record(
      z.string().min(1),
      z.custom<StepHandler>((v) => typeof v === 'function', { message: 'must be a function (ctx) => result' }),
    )
    .refine((h) => Object.keys(h).length > 0, 'needs at least one handler'),
  // The AMQP prefetch count is a 16-bit number.
  concurrency: z.int().min(1).max(65_535),
  amqpUrl: z.url({ protocol: /^amqps?$/, error: 'must be an amqp:// or amqps:// URL' }),
  prefix: z.string().regex(PREFIX_PATTERN, 'must be lower-case words separated by dots'),
  logLevel: z.enum(LOG_LEVELS),
  shutdownGraceMs: z.int().min(0),
  overrunGraceMs: z.int().min(0),
  workerId: z.string().min(1).max(200),
});

/**
 * Applies defaults and environment (`TASKER_AMQP_URL`, `TASKER_AMQP_PREFIX`,
 * `TASKER_LOG_LEVEL`) once, and refuses bad options with one sentence per problem.
 * An explicit option wins over the environment.
 */
export function resolveWorkerOptions(options: WorkerOptions, env: NodeJS.ProcessEnv = process.env): ResolvedWorkerOptions {
  const parsed = OptionsSchema.safeParse({
    namespace: options.namespace,
    handlers: options.handlers,
    concurrency: options.concurrency ?? DEFAULT_CONCURRENCY,
    amqpUrl: options.amqpUrl ?? env['TASKER_AMQP_URL'] ?? DEFAULT_AMQP_URL,
    prefix: options.prefix ?? env['TASKER_AMQP_PREFIX'] ?? DEFAULT_AMQP_PREFIX,
    // With a logger given, its level rules and TASKER_LOG_LEVEL is not used.
    logLevel: options.logger ? DEFAULT_LOG_LEVEL : (env['TASKER_LOG_LEVEL'] ?? DEFAULT_LOG_LEVEL),
    shutdownGraceMs: options.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS,
    overrunGraceMs: options.overrunGraceMs ?? DEFAULT_OVERRUN_GRACE_MS,
    workerId: options.workerId ?? `${hostname()}:${process.pid}:${nanoid(6)}`,
  });
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => {
      const field = i.path.length > 0 ? i.path.map(String).join('.') : 'options';
      const source = ENV_SOURCES[field] && !(field in options) ? ` (from ${ENV_SOURCES[field]})` : '';
      return `${field}${source}: ${i.message}`;
    });
    throw new Error(`invalid worker options: ${problems.join('; ')}`);
  }
  const o = parsed.data;
  const logger = (options.logger ?? pino({ level: o.logLevel, name: 'tasker-worker' })).child({
    namespace: o.namespace,
    workerId: o.workerId,
  });
  return {
    namespace: o.namespace,
    handlers: { ...options.handlers },
    concurrency: o.concurrency,
    amqpUrl: o.amqpUrl,
    names: names(o.prefix),
    logger,
    shutdownGraceMs: o.shutdownGraceMs,
    overrunGraceMs: o.overrunGraceMs,
    workerId: o.workerId,
  };
}

const ENV_SOURCES: Readonly<Record<string, string>> = {
  amqpUrl: 'TASKER_AMQP_URL',
  prefix: 'TASKER_AMQP_PREFIX',
  logLevel: 'TASKER_LOG_LEVEL',
};

/** The URL without its password, for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}
