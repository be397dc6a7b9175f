import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { NAMESPACE_PATTERN, PREFIX_PATTERN } from '@tasker/protocol';

/**
 * `infra/broker.yaml`: which vhost and prefix an installation uses, how its broker users
 * are named, and namespaces to provision besides those registered in the database.
 * Passwords are never in it (see passwords.ts). User names may use `{prefix}`, and the
 * namespace users' name must use `{namespace}`:
 *
 * ```yaml
 * vhost: /
 * prefix: tasker
 * users:
 *   orchestrator: "{prefix}-orchestrator"
 *   service: "{prefix}-service"
 *   namespace: "{prefix}-ns-{namespace}"
 * namespaces: [customer_success, payments]
 * create_tasks_in: { service: ["*"], workers: ["*"] }
 * ```
 */
const UserName = z
  .string()
  .regex(/^[A-Za-z0-9{][A-Za-z0-9_.@{}-]{0,199}$/, 'letters, digits and _ . @ - only (placeholders {prefix} and {namespace} allowed)');

/** `*` (any namespace) or a list of namespaces. */
const NamespaceScope = z.array(z.union([z.literal('*'), z.string().regex(NAMESPACE_PATTERN, 'must be a namespace name or "*"')])).min(1);

export const BrokerAccessFileSchema = z
  .object({
    /** @defaultValue / */
    vhost: z.string().min(1).default('/'),
    prefix: z.string().regex(PREFIX_PATTERN, 'must be lower-case words separated by dots, as TASKER_AMQP_PREFIX'),
    users: z
      .object({
        orchestrator: UserName,
        service: UserName,
        namespace: UserName.refine((s) => s.includes('{namespace}'), 'must contain {namespace}: one user per namespace'),
      })
      .strict(),
    /** Namespaces to provision even before a template of theirs is registered. @defaultValue [] */
    namespaces: z.array(z.string().regex(NAMESPACE_PATTERN, 'must be lower snake case')).default([]),
    /**
     * In which namespaces services and workers may request tasks (the topic permission on
     * the task-requests exchange). @defaultValue any namespace for both
     */
    create_tasks_in: z
      .object({ service: NamespaceScope.default(['*']), workers: NamespaceScope.default(['*']) })
      .strict()
      .default({ service: ['*'], workers: ['*'] }),
  })
  .strict();
export type BrokerAccessFile = z.input<typeof BrokerAccessFileSchema>;

/** In which namespaces a user may request tasks. */
export type NamespaceScope = '*' | string[];

/** The file once read, with `{prefix}` replaced in the user names. */
export interface BrokerAccessConfig {
  vhost: string;
  prefix: string;
  users: {
    orchestrator: string;
    service: string;
    /** The namespace users' name, with `{namespace}` still in it: see {@link namespaceUser}. */
    namespacePattern: string;
  };
  /** Namespaces named in the file (the database adds the registered ones). */
  namespaces: string[];
  createTasksIn: { service: NamespaceScope; workers: NamespaceScope };
  /** Where it came from, for messages. */
  source: string;
}

/** Explicit values that win over the file's (a test or the demo isolating a run). */
export interface BrokerAccessOverrides {
  prefix?: string;
  vhost?: string;
}

/** The broker user of a namespace's workers. */
export function namespaceUser(config: Pick<BrokerAccessConfig, 'users'>, namespace: string): string {
  return config.users.namespacePattern.replaceAll('{namespace}', namespace);
}

const scope = (list: string[]): NamespaceScope => (list.includes('*') ? '*' : [...new Set(list)].sort());

/** Validates a parsed file (YAML or an object built in code). Throws one sentence naming every bad field. */
export function parseBrokerAccess(data: unknown, source: string, overrides: BrokerAccessOverrides = {}): BrokerAccessConfig {
  const parsed = BrokerAccessFileSchema.safeParse(data);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : '(file)'}: ${i.message}`);
    throw new Error(`broker access file ${source} is invalid: ${problems.join('; ')}`);
  }
  const f = parsed.data;
  const prefix = overrides.prefix ?? f.prefix;
  if (!PREFIX_PATTERN.test(prefix)) throw new Error(`prefix '${prefix}' is not valid: use lower-case words separated by dots`);
  const expand = (name: string) => name.replaceAll('{prefix}', prefix);
  const users = {
    orchestrator: expand(f.users.orchestrator),
    service: expand(f.users.service),
    namespacePattern: expand(f.users.namespace),
  };
  for (const [role, name] of Object.entries(users)) {
    if (/[{}]/.test(name.replaceAll('{namespace}', ''))) {
      throw new Error(`broker access file ${source}: users.${role === 'namespacePattern' ? 'namespace' : role} has an unknown placeholder in '${name}' (only {prefix} and {namespace})`);
    }
  }
  if (users.orchestrator === users.service) {
    throw new Error(`broker access file ${source}: users.orchestrator and users.service are both '${users.orchestrator}'; each role needs its own user`);
  }
  return {
    vhost: overrides.vhost ?? f.vhost,
    prefix,
    users,
    namespaces: [...new Set(f.namespaces)].sort(),
    createTasksIn: { service: scope(f.create_tasks_in.service), workers: scope(f.create_tasks_in.workers) },
    source,
  };
}

/** Reads and validates a broker access file. */
export function loadBrokerAccessFile(path: string, overrides: BrokerAccessOverrides = {}): BrokerAccessConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`cannot read the broker access file ${path}: ${(err as Error).message}`);
  }
  let data: unknown;
  try {
    data = parseYaml(text);
  } catch (err) {
    throw new Error(`broker access file ${path} is not valid YAML: ${(err as Error).message}`);
  }
  return parseBrokerAccess(data, path, overrides);
}
