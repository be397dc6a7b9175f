import { DELAY_LEVELS, type Names } from './names.ts';

/**
 * The broker topology as data. The orchestrator declares all of it; other components only
 * check what they use. Declaring the same topology twice is a no-op, so every process may
 * re-declare after a reconnect.
 */
export type QueueType = 'classic' | 'quorum';

export interface ExchangeSpec {
  name: string;
  type: 'direct' | 'topic' | 'fanout';
}

export interface QueueSpec {
  name: string;
  arguments: Record<string, unknown>;
}

export interface BindingSpec {
  /** `queue` binds a queue, `exchange` binds an exchange to an exchange. */
  kind: 'queue' | 'exchange';
  destination: string;
  source: string;
  pattern: string;
}

export interface Topology {
  exchanges: ExchangeSpec[];
  queues: QueueSpec[];
  bindings: BindingSpec[];
}

export interface TopologyOptions {
  /** Type of the work queues (steps, results, task requests, retries). @defaultValue 'quorum' */
  queueType: QueueType;
  /**
   * Type of the results queue alone, where it should differ from `queueType`. The results
   * queue is the orchestrator's own inbox: every step passes it once, between a worker and
   * the orchestrator, so its type is in every step's latency. A durable classic queue keeps
   * persistent messages on disk too (the broker confirms them once written), but lives on one
   * node of a cluster, where a quorum queue is replicated. @defaultValue `queueType`
   */
  resultsQueueType?: QueueType;
  /**
   * Deliveries of one step message before the broker dead-letters it (quorum queues only):
   * a message that kills its worker every time ends as a step error, not an endless loop.
   * @defaultValue 10
   */
  deliveryLimit: number;
}

export const DEFAULT_TOPOLOGY_OPTIONS: TopologyOptions = { queueType: 'quorum', deliveryLimit: 10 };

function workQueueArgs(opts: TopologyOptions, deadLetter?: string, type: QueueType = opts.queueType): Record<string, unknown> {
  const args: Record<string, unknown> = { 'x-queue-type': type };
  if (deadLetter) args['x-dead-letter-exchange'] = deadLetter;
  if (type === 'quorum' && deadLetter) args['x-delivery-limit'] = opts.deliveryLimit;
  return args;
}

/** Exchanges and queues that exist once per installation. */
export function coreTopology(n: Names, opts: TopologyOptions = DEFAULT_TOPOLOGY_OPTIONS): Topology {
  const exchanges: ExchangeSpec[] = [
    { name: n.stepsExchange, type: 'direct' },
    { name: n.resultsExchange, type: 'topic' },
    { name: n.taskRequestsExchange, type: 'topic' },
    { name: n.delayDueExchange, type: 'topic' },
    { name: n.deadLetterExchange, type: 'topic' },
    { name: n.poisonExchange, type: 'topic' },
    { name: n.controlExchange, type: 'fanout' },
  ];
  const queues: QueueSpec[] = [
    { name: n.resultsQueue, arguments: workQueueArgs(opts, undefined, opts.resultsQueueType ?? opts.queueType) },
    { name: n.taskRequestsQueue, arguments: workQueueArgs(opts) },
    { name: n.retriesQueue, arguments: workQueueArgs(opts) },
    { name: n.deadLetterQueue, arguments: workQueueArgs(opts) },
    { name: n.poisonQueue, arguments: workQueueArgs(opts) },
  ];
  const bindings: BindingSpec[] = [
    { kind: 'queue', destination: n.resultsQueue, source: n.resultsExchange, pattern: '#' },
    { kind: 'queue', destination: n.taskRequestsQueue, source: n.taskRequestsExchange, pattern: '#' },
    { kind: 'queue', destination: n.retriesQueue, source: n.delayDueExchange, pattern: '#' },
    { kind: 'queue', destination: n.deadLetterQueue, source: n.deadLetterExchange, pattern: '#' },
    { kind: 'queue', destination: n.poisonQueue, source: n.poisonExchange, pattern: '#' },
  ];
  // Delay levels, highest first. Level k looks at bit k (word DELAY_LEVELS-1-k of the key):
  // set → wait in queue k (TTL 2^k ms), then dead-letter to level k-1; clear → go straight on.
  for (let k = DELAY_LEVELS - 1; k >= 0; k--) {
    const level = n.delayLevel(k);
    const next = k === 0 ? n.delayDueExchange : n.delayLevel(k - 1);
    const before = '*.'.repeat(DELAY_LEVELS - 1 - k);
    exchanges.push({ name: level, type: 'topic' });
    queues.push({
      name: level,
      arguments: { 'x-queue-type': 'classic', 'x-message-ttl': 2 ** k, 'x-dead-letter-exchange': next },
    });
    bindings.push({ kind: 'queue', destination: level, source: level, pattern: `${before}1.#` });
    bindings.push({ kind: 'exchange', destination: next, source: level, pattern: `${before}0.#` });
  }
  return { exchanges, queues, bindings };
}

/** The step queue of one namespace, declared when its first template is registered. */
export function namespaceTopology(
  n: Names,
  namespace: string,
  opts: TopologyOptions = DEFAULT_TOPOLOGY_OPTIONS,
): Topology {
  const queue = n.stepQueue(namespace);
  return {
    exchanges: [{ name: n.stepsExchange, type: 'direct' }],
    queues: [{ name: queue, arguments: workQueueArgs(opts, n.poisonExchange) }],
    bindings: [{ kind: 'queue', destination: queue, source: n.stepsExchange, pattern: namespace }],
  };
}
