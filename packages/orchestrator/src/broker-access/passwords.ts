import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';

/**
 * Broker users' passwords. They never live in the repository: each comes from, in this
 * order, the caller (code), the environment variable `TASKER_BROKER_PASSWORD_<USER>` (the
 * user name in upper snake case: `tasker-ns-payments` → `TASKER_BROKER_PASSWORD_TASKER_NS_PAYMENTS`),
 * or the YAML file named by `TASKER_BROKER_SECRETS_FILE` (`user: password` lines).
 */
export const PASSWORD_VARIABLE_PREFIX = 'TASKER_BROKER_PASSWORD_';
export const SECRETS_FILE_VARIABLE = 'TASKER_BROKER_SECRETS_FILE';

/** The environment variable holding a user's password. */
export function passwordVariable(user: string): string {
  return PASSWORD_VARIABLE_PREFIX + user.replace(/[^A-Za-z0-9]+/g, '_').replace(/^_+|_+$/g, '').toUpperCase();
}

export interface PasswordSources {
  /** Given in code (the demo generates them for its run). */
  given?: Readonly<Record<string, string>>;
  env?: NodeJS.ProcessEnv;
  /** @defaultValue `TASKER_BROKER_SECRETS_FILE` */
  secretsFile?: string | null;
}

/** Thrown when a user has no password anywhere; the message names the variable to set. */
export class MissingPasswordError extends Error {
  override readonly name = 'MissingPasswordError';
  constructor(readonly missing: Array<{ user: string; variable: string }>, secretsFile: string | null) {
    super(
      `no password for broker user${missing.length > 1 ? 's' : ''} ${missing.map((m) => `'${m.user}'`).join(', ')}: set ` +
        missing.map((m) => m.variable).join(', ') +
        (secretsFile ? ` (or add ${missing.length > 1 ? 'them' : 'it'} to ${secretsFile})` : ` (or name a YAML file of "user: password" lines in ${SECRETS_FILE_VARIABLE})`),
    );
  }
}

function readSecretsFile(path: string): Record<string, string> {
  let data: unknown;
  try {
    data = parseYaml(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read the broker secrets file ${path} (${SECRETS_FILE_VARIABLE}): ${(err as Error).message}`);
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new Error(`broker secrets file ${path} must be a YAML mapping of "user: password"`);
  }
  const out: Record<string, string> = {};
  for (const [user, pw] of Object.entries(data as Record<string, unknown>)) {
    if (typeof pw !== 'string' && typeof pw !== 'number') throw new Error(`broker secrets file ${path}: the password of '${user}' must be a string`);
    out[user] = String(pw);
  }
  return out;
}

/** One password per user, or a {@link MissingPasswordError} naming every missing one. */
export function resolvePasswords(users: readonly string[], sources: PasswordSources = {}): Map<string, string> {
  const env = sources.env ?? process.env;
  const variables = new Map<string, string>();
  for (const user of users) {
    const v = passwordVariable(user);
    const other = variables.get(v);
    if (other !== undefined && other !== user) {
      throw new Error(`broker users '${other}' and '${user}' would both read their password from ${v}; rename one of them`);
    }
    variables.set(v, user);
  }
  const fileName = sources.secretsFile !== undefined ? sources.secretsFile : (env[SECRETS_FILE_VARIABLE] || null);
  const fromFile = fileName ? readSecretsFile(fileName) : {};
  const out = new Map<string, string>();
  const missing: Array<{ user: string; variable: string }> = [];
  for (const user of users) {
    const variable = passwordVariable(user);
    const pw = sources.given?.[user] ?? (env[variable] || undefined) ?? fromFile[user];
    if (pw === undefined || pw === '') missing.push({ user, variable });
    else out.set(user, pw);
  }
  if (missing.length > 0) throw new MissingPasswordError(missing, fileName);
  return out;
}
