import type { Topology } from '@tasker/protocol';
import type { BrokerState } from './broker-state.ts';
import { passwordMatches } from './password-hash.ts';
import type { TopicGrant, UserGrant } from './permissions.ts';

/**
 * The plan: the desired broker state compared with the current one, item by item, before
 * anything is changed. Pure. Conflicts (a queue that exists with other arguments, say) stop
 * the whole apply: nothing is changed, and each conflict is named.
 */
export type PlanItemKind = 'vhost' | 'exchange' | 'queue' | 'binding' | 'user' | 'permissions' | 'topic permissions';
export type PlanOutcome = 'create' | 'change' | 'keep';

/** What applying one item does (carries passwords: never logged or reported). */
export type PlanStep =
  | { op: 'vhost' }
  | { op: 'exchange'; name: string; type: string }
  | { op: 'queue'; name: string; arguments: Record<string, unknown> }
  | { op: 'binding'; kind: 'queue' | 'exchange'; source: string; destination: string; pattern: string }
  | { op: 'user'; name: string; password: string }
  | { op: 'permissions'; user: string; configure: string; write: string; read: string }
  | { op: 'topic permissions'; user: string; clearFirst: boolean; put: TopicGrant[] };

export interface PlanItem {
  kind: PlanItemKind;
  name: string;
  outcome: PlanOutcome;
  /** Why it changes, or what it grants, in a few words. */
  detail?: string;
  step: PlanStep | null;
}

export interface BrokerAccessPlan {
  vhost: string;
  items: PlanItem[];
  conflicts: string[];
}

export interface DesiredBrokerState {
  vhost: string;
  topology: Topology;
  grants: UserGrant[];
  passwords: ReadonlyMap<string, string>;
  /** The management API's own user: never managed here (its tags would be removed). */
  adminUser: string;
}

/** Key-order-insensitive JSON, for comparing arguments. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v as object)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

function tagsOf(tags: string | string[] | undefined): string[] {
  if (!tags) return [];
  return (Array.isArray(tags) ? tags : tags.split(',')).map((t) => t.trim()).filter(Boolean);
}

/** Merges topologies, each exchange, queue and binding once. */
export function mergeTopologies(list: Topology[]): Topology {
  const out: Topology = { exchanges: [], queues: [], bindings: [] };
  const seen = new Set<string>();
  for (const t of list) {
    for (const e of t.exchanges) if (!seen.has(`e:${e.name}`)) (seen.add(`e:${e.name}`), out.exchanges.push(e));
    for (const q of t.queues) if (!seen.has(`q:${q.name}`)) (seen.add(`q:${q.name}`), out.queues.push(q));
    for (const b of t.bindings) {
      const k = `b:${b.kind}:${b.source}:${b.destination}:${b.pattern}`;
      if (!seen.has(k)) (seen.add(k), out.bindings.push(b));
    }
  }
  return out;
}

export function planBrokerAccess(desired: DesiredBrokerState, current: BrokerState): BrokerAccessPlan {
  const items: PlanItem[] = [];
  const conflicts: string[] = [];
  const { vhost, topology } = desired;

  items.push(current.vhostExists ? { kind: 'vhost', name: vhost, outcome: 'keep', step: null } : { kind: 'vhost', name: vhost, outcome: 'create', step: { op: 'vhost' } });

  const exchanges = new Map(current.exchanges.map((e) => [e.name, e]));
  for (const e of topology.exchanges) {
    const have = exchanges.get(e.name);
    if (!have) {
      items.push({ kind: 'exchange', name: e.name, outcome: 'create', detail: e.type, step: { op: 'exchange', name: e.name, type: e.type } });
    } else if (have.type !== e.type || !have.durable || have.auto_delete || have.internal || canonical(have.arguments ?? {}) !== '{}') {
      conflicts.push(
        `exchange '${e.name}' exists as ${have.durable ? 'durable' : 'transient'} ${have.type}${have.auto_delete ? ' auto-delete' : ''}${have.internal ? ' internal' : ''} ` +
          `with arguments ${canonical(have.arguments ?? {})}; Tasker needs a durable ${e.type} without arguments`,
      );
    } else {
      items.push({ kind: 'exchange', name: e.name, outcome: 'keep', detail: e.type, step: null });
    }
  }

  const queues = new Map(current.queues.map((q) => [q.name, q]));
  for (const q of topology.queues) {
    const have = queues.get(q.name);
    if (!have) {
      items.push({ kind: 'queue', name: q.name, outcome: 'create', detail: String(q.arguments['x-queue-type'] ?? 'classic'), step: { op: 'queue', name: q.name, arguments: q.arguments } });
    } else if (!have.durable || have.auto_delete || canonical(have.arguments ?? {}) !== canonical(q.arguments)) {
      conflicts.push(
        `queue '${q.name}' exists with arguments ${canonical(have.arguments ?? {})}${have.durable ? '' : ' (not durable)'}; this configuration declares ${canonical(q.arguments)}. ` +
          `Delete it once drained (rabbitmqctl delete_queue), or use the TASKER_QUEUE_TYPE / TASKER_RESULTS_QUEUE_TYPE / TASKER_DELIVERY_LIMIT it was declared with`,
      );
    } else {
      items.push({ kind: 'queue', name: q.name, outcome: 'keep', detail: String(q.arguments['x-queue-type'] ?? 'classic'), step: null });
    }
  }

  const bindings = new Set(current.bindings.map((b) => `${b.destination_type}:${b.source}:${b.destination}:${b.routing_key}`));
  for (const b of topology.bindings) {
    const name = `${b.source} → ${b.destination} (${b.pattern})`;
    const exists = bindings.has(`${b.kind}:${b.source}:${b.destination}:${b.pattern}`);
    items.push(
      exists
        ? { kind: 'binding', name, outcome: 'keep', step: null }
        : { kind: 'binding', name, outcome: 'create', step: { op: 'binding', kind: b.kind, source: b.source, destination: b.destination, pattern: b.pattern } },
    );
  }

  for (const g of desired.grants) {
    const what = g.role === 'namespace' ? `namespace ${g.namespace}` : g.role;
    if (g.user === desired.adminUser) {
      conflicts.push(`broker user '${g.user}' (${what}) is the administrator the management API is called as; applying would take its rights away. Name the ${what} user differently`);
      continue;
    }
    const password = desired.passwords.get(g.user);
    if (password === undefined) throw new Error(`internal: no password resolved for '${g.user}'`);
    const user = current.users.get(g.user);
    if (!user) {
      items.push({ kind: 'user', name: g.user, outcome: 'create', detail: what, step: { op: 'user', name: g.user, password } });
    } else {
      const why: string[] = [];
      if (!passwordMatches(user.password_hash, user.hashing_algorithm, password)) why.push('password');
      const tags = tagsOf(user.tags);
      if (tags.length > 0) why.push(`tags ${tags.join(',')} removed`);
      items.push(
        why.length > 0
          ? { kind: 'user', name: g.user, outcome: 'change', detail: `${what}: ${why.join(', ')}`, step: { op: 'user', name: g.user, password } }
          : { kind: 'user', name: g.user, outcome: 'keep', detail: what, step: null },
      );
    }

    const perm = current.permissions.get(g.user);
    const want = { configure: g.configure, write: g.write, read: g.read };
    const permStep: PlanStep = { op: 'permissions', user: g.user, ...want };
    const permText = `configure ${g.configure} write ${g.write} read ${g.read}`;
    if (!perm) items.push({ kind: 'permissions', name: g.user, outcome: 'create', detail: permText, step: permStep });
    else if (perm.configure !== g.configure || perm.write !== g.write || perm.read !== g.read) {
      const diff = (['configure', 'write', 'read'] as const).filter((k) => perm[k] !== want[k]).map((k) => `${k} ${perm[k]} → ${want[k]}`);
      items.push({ kind: 'permissions', name: g.user, outcome: 'change', detail: diff.join('; '), step: permStep });
    } else items.push({ kind: 'permissions', name: g.user, outcome: 'keep', step: null });

    const have = current.topicPermissions.get(g.user) ?? [];
    const haveBy = new Map(have.map((t) => [t.exchange, t]));
    const wantBy = new Map(g.topics.map((t) => [t.exchange, t]));
    const extra = have.filter((t) => !wantBy.has(t.exchange));
    const differing = g.topics.filter((t) => {
      const h = haveBy.get(t.exchange);
      return !h || h.write !== t.write || h.read !== t.read;
    });
    const topicText = g.topics.length > 0 ? g.topics.map((t) => `${t.exchange} write ${t.write}`).join('; ') : 'none (any routing key)';
    if (extra.length === 0 && differing.length === 0) {
      items.push({ kind: 'topic permissions', name: g.user, outcome: 'keep', step: null });
    } else {
      // The API removes a user's topic permissions all at once: with one to drop, all are put back.
      const clearFirst = extra.length > 0;
      items.push({
        kind: 'topic permissions',
        name: g.user,
        outcome: have.length === 0 ? 'create' : 'change',
        detail: have.length === 0 ? topicText : [...extra.map((t) => `${t.exchange} removed`), ...differing.map((t) => `${t.exchange} write ${t.write}`)].join('; '),
        step: { op: 'topic permissions', user: g.user, clearFirst, put: clearFirst ? g.topics : differing },
      });
    }
  }
  return { vhost, items, conflicts };
}
