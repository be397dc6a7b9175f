import type { Logger } from 'pino';
import { coreTopology, names, namespaceTopology, type TopologyOptions } from '@tasker/protocol';
import { resolveConfig, topologyOptions } from '../config.ts';
import { loadBrokerAccessFile, type BrokerAccessConfig } from './config-file.ts';
import { readBrokerState } from './broker-state.ts';
import { DEFAULT_MANAGEMENT_URL, MANAGEMENT_URL_VARIABLE, ManagementApi } from './management-api.ts';
import { resolvePasswords } from './passwords.ts';
import { planGrants, type UserGrant } from './permissions.ts';
import { mergeTopologies, planBrokerAccess, type PlanItemKind, type PlanOutcome, type PlanStep } from './plan.ts';
import { registeredNamespaces } from './registered-namespaces.ts';

/** Where the broker access file is looked for when nothing says otherwise. */
export const DEFAULT_BROKER_ACCESS_FILE = 'infra/broker.yaml';
export const BROKER_ACCESS_FILE_VARIABLE = 'TASKER_BROKER_ACCESS_FILE';

export interface ApplyBrokerAccessOptions {
  /** @defaultValue `TASKER_BROKER_ACCESS_FILE`, else `infra/broker.yaml` (from the working directory) */
  configFile?: string;
  /** A configuration built in code instead of a file. */
  config?: BrokerAccessConfig;
  /** Overrides the file's prefix (a test or the demo isolating a run); user names follow it through `{prefix}`. */
  prefix?: string;
  /** Overrides the file's vhost. */
  vhost?: string;
  /** @defaultValue `TASKER_RABBITMQ_MANAGEMENT_URL`, else `http://guest:guest@127.0.0.1:15672` */
  managementUrl?: string;
  /** Read the registered namespaces from PostgreSQL. @defaultValue true */
  readDatabase?: boolean;
  /** @defaultValue `TASKER_DATABASE_URL`, as the orchestrator's */
  databaseUrl?: string;
  /** @defaultValue `TASKER_DB_SCHEMA`, as the orchestrator's */
  dbSchema?: string;
  /** Passwords by user, over the environment and the secrets file. */
  passwords?: Readonly<Record<string, string>>;
  /** @defaultValue `TASKER_BROKER_SECRETS_FILE` */
  secretsFile?: string | null;
  /** Queue settings of the topology. @defaultValue `TASKER_QUEUE_TYPE`, `TASKER_RESULTS_QUEUE_TYPE` and `TASKER_DELIVERY_LIMIT`, as the orchestrator's */
  topology?: Partial<TopologyOptions>;
  /** Plan only: report what would change and change nothing. @defaultValue false */
  dryRun?: boolean;
  env?: NodeJS.ProcessEnv;
  logger?: Logger;
}

export type ReportOutcome = 'created' | 'changed' | 'unchanged';

export interface BrokerAccessReportItem {
  kind: PlanItemKind;
  name: string;
  outcome: ReportOutcome;
  detail?: string;
}

/** What apply did (or, with `dryRun`, would do). Never holds a password. */
export interface BrokerAccessReport {
  vhost: string;
  prefix: string;
  source: string;
  /** Every namespace provisioned, and where each came from. */
  namespaces: Array<{ name: string; from: Array<'database' | 'config'> }>;
  /** Why the database gave no namespaces, when it did not. */
  databaseNote: string | null;
  users: Array<{ user: string; role: UserGrant['role']; namespace?: string }>;
  items: BrokerAccessReportItem[];
  created: number;
  changed: number;
  unchanged: number;
  dryRun: boolean;
}

const PAST: Record<PlanOutcome, ReportOutcome> = { create: 'created', change: 'changed', keep: 'unchanged' };

/** Thrown when the broker holds something that contradicts the configuration; nothing was changed. */
export class BrokerAccessConflictError extends Error {
  override readonly name = 'BrokerAccessConflictError';
  constructor(readonly conflicts: string[]) {
    super(`broker access not applied, nothing was changed:\n${conflicts.map((c) => `  - ${c}`).join('\n')}`);
  }
}

async function run(api: ManagementApi, vhost: string, step: PlanStep): Promise<void> {
  switch (step.op) {
    case 'vhost':
      return api.createVhost(vhost);
    case 'exchange':
      return api.declareExchange(vhost, step.name, step.type);
    case 'queue':
      return api.declareQueue(vhost, step.name, step.arguments);
    case 'binding':
      return api.bind(vhost, step.kind, step.source, step.destination, step.pattern);
    case 'user':
      return api.putUser(step.name, step.password);
    case 'permissions':
      return api.putPermissions(vhost, step.user, { configure: step.configure, write: step.write, read: step.read });
    case 'topic permissions':
      if (step.clearFirst) await api.clearTopicPermissions(vhost, step.user);
      for (const t of step.put) await api.putTopicPermission(vhost, step.user, t);
      return;
  }
}

/**
 * `pnpm broker:apply` (and `tasker broker apply`): declares the topology of the prefix (the
 * core and one step queue per namespace) and creates or updates one RabbitMQ user per role
 * (orchestrator, service, each namespace) with the permissions of permissions.ts, through
 * the management HTTP API. Namespaces: those registered in the database plus those the file
 * names. Idempotent: what already matches is left alone, so a second run reports
 * `0 created, 0 changed`. Refuses, changing nothing, when a password is missing (naming its
 * variable) or the broker holds a conflicting queue or exchange.
 */
export async function applyBrokerAccess(options: ApplyBrokerAccessOptions = {}): Promise<BrokerAccessReport> {
  const env = options.env ?? process.env;
  const overrides = { ...(options.prefix ? { prefix: options.prefix } : {}), ...(options.vhost ? { vhost: options.vhost } : {}) };
  let config: BrokerAccessConfig;
  if (options.config) {
    config = { ...options.config, ...overrides };
    if (options.prefix && options.prefix !== options.config.prefix) {
      throw new Error('a prefix override needs the file form (user names follow {prefix}); build the config with that prefix instead');
    }
  } else {
    const file = options.configFile ?? (env[BROKER_ACCESS_FILE_VARIABLE] || DEFAULT_BROKER_ACCESS_FILE);
    config = loadBrokerAccessFile(file, overrides);
    // An operator whose environment names another prefix is about to provision the wrong installation.
    const envPrefix = env['TASKER_AMQP_PREFIX'];
    if (!options.prefix && envPrefix && envPrefix !== config.prefix) {
      throw new Error(
        `TASKER_AMQP_PREFIX is '${envPrefix}' but ${file} says prefix '${config.prefix}': ` +
          'the users would be granted names the processes do not use. Make them agree (or pass the prefix explicitly)',
      );
    }
  }
  const n = names(config.prefix);
  const orchestratorConfig = resolveConfig(
    {
      ...(options.databaseUrl ? { databaseUrl: options.databaseUrl } : {}),
      ...(options.dbSchema ? { dbSchema: options.dbSchema } : {}),
    },
    env,
  );
  const given = options.topology ?? {};
  const configured = topologyOptions(orchestratorConfig);
  const queueSettings: TopologyOptions = {
    queueType: given.queueType ?? configured.queueType,
    deliveryLimit: given.deliveryLimit ?? configured.deliveryLimit,
  };
  // Given a queue type alone, the results queue follows it, as TASKER_QUEUE_TYPE alone does.
  const resultsQueueType = given.resultsQueueType ?? (given.queueType ? undefined : configured.resultsQueueType);
  if (resultsQueueType) queueSettings.resultsQueueType = resultsQueueType;

  const fromDb =
    options.readDatabase === false
      ? { namespaces: [] as string[], note: 'database not read (readDatabase: false)' }
      : await registeredNamespaces(orchestratorConfig.databaseUrl, orchestratorConfig.dbSchema);
  const all = [...new Set([...fromDb.namespaces, ...config.namespaces])].sort();
  const grants = planGrants(config, n, all);
  // Every password is needed before anything is touched: a missing one changes nothing.
  const passwords = resolvePasswords(
    grants.map((g) => g.user),
    { ...(options.passwords ? { given: options.passwords } : {}), env, ...(options.secretsFile !== undefined ? { secretsFile: options.secretsFile } : {}) },
  );

  const api = new ManagementApi(options.managementUrl ?? (env[MANAGEMENT_URL_VARIABLE] || DEFAULT_MANAGEMENT_URL));
  const topology = mergeTopologies([coreTopology(n, queueSettings), ...all.map((ns) => namespaceTopology(n, ns, queueSettings))]);
  const current = await readBrokerState(api, config.vhost, grants.map((g) => g.user));
  const plan = planBrokerAccess({ vhost: config.vhost, topology, grants, passwords, adminUser: api.adminUser }, current);
  if (plan.conflicts.length > 0) throw new BrokerAccessConflictError(plan.conflicts);

  const log = options.logger?.child({ component: 'broker-access' });
  if (!options.dryRun) {
    for (const item of plan.items) {
      if (!item.step) continue;
      try {
        await run(api, config.vhost, item.step);
      } catch (err) {
        throw new Error(`broker access stopped at ${item.kind} '${item.name}' (${item.outcome}): ${(err as Error).message}. What came before it was applied; run again once fixed`);
      }
      log?.info({ kind: item.kind, name: item.name, outcome: PAST[item.outcome] }, 'broker access applied');
    }
  }

  const items = plan.items.map((i) => ({ kind: i.kind, name: i.name, outcome: PAST[i.outcome], ...(i.detail ? { detail: i.detail } : {}) }));
  const fromConfig = new Set(config.namespaces);
  const fromDatabase = new Set(fromDb.namespaces);
  return {
    vhost: config.vhost,
    prefix: config.prefix,
    source: config.source,
    namespaces: all.map((name) => ({
      name,
      from: [...(fromDatabase.has(name) ? (['database'] as const) : []), ...(fromConfig.has(name) ? (['config'] as const) : [])],
    })),
    databaseNote: fromDb.note,
    users: grants.map((g) => ({ user: g.user, role: g.role, ...(g.namespace ? { namespace: g.namespace } : {}) })),
    items,
    created: items.filter((i) => i.outcome === 'created').length,
    changed: items.filter((i) => i.outcome === 'changed').length,
    unchanged: items.filter((i) => i.outcome === 'unchanged').length,
    dryRun: options.dryRun ?? false,
  };
}

/** The report as lines for a terminal: what changed in full, what was left as counts. */
export function formatBrokerAccessReport(r: BrokerAccessReport): string {
  const lines: string[] = [];
  const verb = r.dryRun ? 'would be ' : '';
  lines.push(`broker access for prefix '${r.prefix}' in vhost '${r.vhost}' (${r.source})${r.dryRun ? ' — dry run, nothing changed' : ''}`);
  lines.push(`  namespaces: ${r.namespaces.map((ns) => `${ns.name} (${ns.from.join('+')})`).join(', ') || 'none'}${r.databaseNote ? `; ${r.databaseNote}` : ''}`);
  lines.push(`  users: ${r.users.map((u) => `${u.user} (${u.role === 'namespace' ? u.namespace : u.role})`).join(', ')}`);
  for (const i of r.items) {
    if (i.outcome === 'unchanged') continue;
    lines.push(`  ${verb}${i.outcome.padEnd(9)} ${i.kind} ${i.name}${i.detail ? `: ${i.detail}` : ''}`);
  }
  const kinds = [...new Set(r.items.map((i) => i.kind))];
  const left = kinds
    .map((k) => [k, r.items.filter((i) => i.kind === k && i.outcome === 'unchanged').length] as const)
    .filter(([, c]) => c > 0)
    .map(([k, c]) => `${c} ${k}${c > 1 && !k.endsWith('s') ? 's' : ''}`);
  if (left.length > 0) lines.push(`  left as they were: ${left.join(', ')}`);
  lines.push(
    r.created === 0 && r.changed === 0
      ? `nothing to change: ${r.unchanged} items already as configured`
      : `${r.created} ${verb}created, ${r.changed} ${verb}changed, ${r.unchanged} unchanged`,
  );
  return lines.join('\n');
}

