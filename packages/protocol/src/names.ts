/**
 * Every exchange, queue and routing key name, in one place. Names that start with
 * `<prefix>.steps.` are the namespaces' step queues and nothing else. All names start with a prefix
 * (`TASKER_AMQP_PREFIX`, default `tasker`) so that tests and several installations can
 * share one broker, and so that a broker user can be limited to one namespace with a
 * permission regex such as `^tasker\.steps\.payments$`.
 */
export const DEFAULT_AMQP_PREFIX = 'tasker';

/** Namespace names: lower snake case. No dots, so they are one routing-key word. */
export const NAMESPACE_PATTERN = /^[a-z][a-z0-9_]{0,62}$/;
/** Template and step names: snake case identifiers. */
export const IDENTIFIER_PATTERN = /^[A-Za-z][A-Za-z0-9_]{0,127}$/;
/** Prefixes: like a namespace, dots allowed between words. */
export const PREFIX_PATTERN = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$/;

/**
 * Retry delays use binary decomposition: a delay of d ms is split into powers of two; the
 * message visits the delay queue of each set bit (queue k holds messages for 2^k ms), so
 * every delay queue holds messages of one TTL and nothing waits behind a longer delay.
 */
export const DELAY_LEVELS = 28;
/** Longest delay the delay queues can express: 2^28 − 1 ms, about 74.5 hours. */
export const MAX_DELAY_MS = 2 ** DELAY_LEVELS - 1;

export interface Names {
  readonly prefix: string;
  /** Direct exchange for step messages; routing key = namespace. */
  readonly stepsExchange: string;
  /** A namespace's step queue, the only queue its workers read. */
  stepQueue(namespace: string): string;
  /** Topic exchange for step results; routing key = the namespace the result is for. */
  readonly resultsExchange: string;
  /** The orchestrators' results queue (bound with `#`). */
  readonly resultsQueue: string;
  /** Topic exchange for task requests; routing key = the namespace of the task requested. */
  readonly taskRequestsExchange: string;
  readonly taskRequestsQueue: string;
  /** Delay level k: exchange and queue share the name. */
  delayLevel(k: number): string;
  /** Where every delayed message ends, to reach {@link retriesQueue}. */
  readonly delayDueExchange: string;
  /** The orchestrators' queue of expired retry delays. */
  readonly retriesQueue: string;
  /** Parked messages: malformed or refused, with the reason in `x-tasker-*` headers. Kept for people to inspect. */
  readonly deadLetterExchange: string;
  readonly deadLetterQueue: string;
  /** Step messages the broker dead-lettered after their delivery limit; the orchestrators fail those steps. */
  readonly poisonExchange: string;
  readonly poisonQueue: string;
  /** Fanout exchange of control broadcasts to every worker (cancellations); each worker binds a queue of its own. */
  readonly controlExchange: string;
}

export function names(prefix: string = DEFAULT_AMQP_PREFIX): Names {
  if (!PREFIX_PATTERN.test(prefix)) {
    throw new Error(`AMQP prefix '${prefix}' is not valid: use lower-case words separated by dots`);
  }
  return {
    prefix,
    stepsExchange: `${prefix}.steps`,
    stepQueue: (namespace) => `${prefix}.steps.${namespace}`,
    resultsExchange: `${prefix}.results`,
    resultsQueue: `${prefix}.results`,
    taskRequestsExchange: `${prefix}.task_requests`,
    taskRequestsQueue: `${prefix}.task_requests`,
    delayLevel: (k) => `${prefix}.delay.${String(k).padStart(2, '0')}`,
    delayDueExchange: `${prefix}.delay.due`,
    retriesQueue: `${prefix}.retries`,
    deadLetterExchange: `${prefix}.dead`,
    deadLetterQueue: `${prefix}.dead_letters`,
    poisonExchange: `${prefix}.poison`,
    poisonQueue: `${prefix}.poison`,
    controlExchange: `${prefix}.control`,
  };
}

/**
 * Routing key for a delayed message: one word per bit, most significant first, then the
 * namespace. Publish it to `delayLevel(DELAY_LEVELS - 1)`.
 */
export function delayRoutingKey(delayMs: number, namespace: string): string {
  const d = Math.max(0, Math.min(MAX_DELAY_MS, Math.round(delayMs)));
  const bits: string[] = [];
  for (let k = DELAY_LEVELS - 1; k >= 0; k--) bits.push(Math.floor(d / 2 ** k) % 2 === 1 ? '1' : '0');
  return `${bits.join('.')}.${namespace}`;
}
