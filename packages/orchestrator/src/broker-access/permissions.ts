import type { Names } from '@tasker/protocol';
import { namespaceUser, type BrokerAccessConfig, type NamespaceScope } from './config-file.ts';

/**
 * Who may do what on the broker: one RabbitMQ user per role, with configure/write/read
 * regexes (matched against queue and exchange names) and topic permissions (matched
 * against routing keys on topic exchanges). The table in infra/README.md is this file in
 * prose; the isolation tests check it against a real broker.
 *
 * RabbitMQ's rules that shape it (https://www.rabbitmq.com/access-control.html):
 * - queue.declare needs configure on the queue (plus write on its dead-letter exchange and
 *   read on the queue when it has one); a passive declare needs nothing.
 * - queue.bind needs write on the queue and read on the exchange; exchange.bind write on
 *   the destination and read on the source.
 * - basic.publish needs write on the exchange (the default exchange is `amq.default`), and
 *   on a topic exchange the topic write permission on the routing key.
 * - basic.consume, basic.get and queue.purge all need read on the queue: purge cannot be
 *   refused to whoever may consume.
 * - A server-named queue (`amq.gen-…`) needs configure to declare, write to bind, read to
 *   consume; another connection's exclusive queue is locked (RESOURCE_LOCKED) whatever
 *   the permissions.
 * - Direct reply-to (`amq.rabbitmq.reply-to`) needs no permission to consume.
 */
export interface TopicGrant {
  exchange: string;
  write: string;
  read: string;
}

export interface UserGrant {
  user: string;
  role: 'orchestrator' | 'service' | 'namespace';
  /** For a namespace user. */
  namespace?: string;
  configure: string;
  write: string;
  read: string;
  /** Topic permissions; none means any routing key on exchanges the user may write to. */
  topics: TopicGrant[];
}

/** Matches nothing a client can name (RabbitMQ's way of saying "no permission"). */
export const NOTHING = '^$';
/** A namespace, as a routing-key word (NAMESPACE_PATTERN without its length bound). */
const ANY_NAMESPACE = '[a-z][a-z0-9_]*';
/** RabbitMQ's server-named queues. */
const SERVER_NAMED = 'amq\\.gen-.*';
/** The default exchange, as permissions name it. */
const DEFAULT_EXCHANGE = 'amq\\.default';

export function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** `^(a|b|c)$`: exactly one of the alternatives (already regexes). */
export function oneOf(alternatives: string[]): string {
  if (alternatives.length === 0) return NOTHING;
  return alternatives.length === 1 ? `^${alternatives[0]}$` : `^(${alternatives.join('|')})$`;
}

function scopeRegex(scope: NamespaceScope): string {
  return scope === '*' ? `^${ANY_NAMESPACE}$` : oneOf(scope.map(escapeRegex));
}

/**
 * Every name the orchestrators declare, as regex alternatives: the core topology by name,
 * the delay levels and the step queues of any namespace (a template registered later
 * declares its queue at once, before anyone re-runs apply).
 */
function orchestratorNames(n: Names): { all: string[]; readable: string[] } {
  const e = escapeRegex;
  const p = e(n.prefix);
  const exact = [
    n.stepsExchange,
    n.resultsExchange,
    n.taskRequestsExchange,
    n.delayDueExchange,
    n.retriesQueue,
    n.deadLetterExchange,
    n.deadLetterQueue,
    n.poisonExchange,
    n.controlExchange,
  ];
  // Results, task requests and poison: exchange and queue share the name.
  const all = [...new Set(exact)].map(e);
  all.push(`${p}\\.delay\\.[0-9]{2}`, `${p}\\.steps\\.${ANY_NAMESPACE}`);
  // The dead letters are for people to read, not for the orchestrator.
  const readable = all.filter((a) => a !== e(n.deadLetterQueue));
  return { all, readable };
}

/**
 * The grants of every user: the orchestrators', the services', and one per namespace.
 * Pure: the same config and namespaces always give the same grants.
 */
export function planGrants(config: BrokerAccessConfig, n: Names, namespaces: readonly string[]): UserGrant[] {
  const e = escapeRegex;
  const orch = orchestratorNames(n);
  const grants: UserGrant[] = [
    {
      // Declares and binds everything under the prefix, consumes its queues, publishes
      // everywhere under it, and replies to task requests through the default exchange
      // (direct reply-to). No topic restriction: it publishes results for every namespace
      // (child-task outcomes), retries under any delay key, and parks anything.
      user: config.users.orchestrator,
      role: 'orchestrator',
      configure: oneOf(orch.all),
      write: oneOf([...orch.all, DEFAULT_EXCHANGE]),
      read: oneOf(orch.readable),
      topics: [],
    },
    {
      // Publishes task requests (routing key: the namespace asked for) and reads its replies
      // on direct reply-to, which needs no permission.
      user: config.users.service,
      role: 'service',
      configure: NOTHING,
      write: oneOf([e(n.taskRequestsExchange)]),
      read: NOTHING,
      topics: [{ exchange: n.taskRequestsExchange, write: scopeRegex(config.createTasksIn.service), read: NOTHING }],
    },
  ];
  for (const ns of [...new Set(namespaces)].sort()) {
    grants.push({
      // Consumes its own step queue (a passive check first, which needs nothing); publishes
      // results with its namespace as routing key, task requests (handlers may create tasks),
      // and parks malformed step messages on the dead-letter exchange under its namespace.
      // Its control queue is server-named and exclusive: configure, write and read on
      // `amq.gen-…` let it declare, bind (to the control exchange, the only exchange it may
      // read) and consume it, and nothing of anyone else's (locked).
      user: namespaceUser(config, ns),
      role: 'namespace',
      namespace: ns,
      configure: oneOf([SERVER_NAMED]),
      write: oneOf([e(n.resultsExchange), e(n.taskRequestsExchange), e(n.deadLetterExchange), SERVER_NAMED]),
      read: oneOf([e(n.stepQueue(ns)), e(n.controlExchange), SERVER_NAMED]),
      topics: [
        { exchange: n.resultsExchange, write: oneOf([e(ns)]), read: NOTHING },
        { exchange: n.taskRequestsExchange, write: scopeRegex(config.createTasksIn.workers), read: NOTHING },
        // parkedRoutingKey() of @tasker/worker: `invalid.step.<namespace>`.
        { exchange: n.deadLetterExchange, write: oneOf([`invalid\\.step\\.${e(ns)}`]), read: NOTHING },
      ],
    });
  }
  const seen = new Map<string, string>();
  for (const g of grants) {
    const what = g.role === 'namespace' ? `namespace ${g.namespace}` : g.role;
    const before = seen.get(g.user);
    if (before) throw new Error(`broker user '${g.user}' would serve both ${before} and ${what}; give each its own user (${config.source})`);
    seen.set(g.user, what);
  }
  return grants;
}
