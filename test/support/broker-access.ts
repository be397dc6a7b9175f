import { randomBytes } from 'node:crypto';
import amqp, { type Channel, type ChannelModel, type ConfirmChannel } from 'amqplib';
import {
  DEFAULT_MANAGEMENT_URL,
  ManagementApi,
  applyBrokerAccess,
  parseBrokerAccess,
  namespaceUser,
  type BrokerAccessConfig,
  type BrokerAccessReport,
} from '@tasker/orchestrator';
import { AMQP_URL, uniqueSuffix } from './services.ts';

/** The management API the tests provision through (an administrator's URL). */
export const MANAGEMENT_URL = () => process.env.TASKER_RABBITMQ_MANAGEMENT_URL ?? DEFAULT_MANAGEMENT_URL;

/**
 * Broker access for one test file: its own prefix, and users named after it (so nothing
 * collides with another file or a real installation), passwords generated for the run.
 * `cleanup()` deletes the users; the caller drops the topology (test/support/stack.ts).
 */
export interface AccessFixture {
  prefix: string;
  config: BrokerAccessConfig;
  passwords: Record<string, string>;
  api: ManagementApi;
  /** The amqp:// URL of a user, with its password. */
  urlOf(user: string): string;
  userOf(namespace: string): string;
  apply(extra?: { passwords?: Record<string, string> }): Promise<BrokerAccessReport>;
  /** Every user apply manages for this fixture. */
  users: string[];
  /** Creates an extra user (not managed by apply) with the given permissions; deleted by cleanup(). */
  extraUser(name: string, permissions: { configure: string; write: string; read: string }): Promise<string>;
  cleanup(): Promise<void>;
}

export function accessFixture(
  namespaces: string[],
  options: {
    prefix?: string;
    /** Namespaces the test registers in a database of its own (they get users and passwords too). */
    database?: { url: string; schema: string; namespaces: string[] };
  } = {},
): AccessFixture {
  const prefix = options.prefix ?? `iso${uniqueSuffix()}`;
  const config = parseBrokerAccess(
    {
      vhost: '/',
      prefix,
      users: { orchestrator: '{prefix}-orchestrator', service: '{prefix}-service', namespace: '{prefix}-ns-{namespace}' },
      namespaces,
    },
    `test config for ${prefix}`,
  );
  const allNamespaces = [...namespaces, ...(options.database?.namespaces ?? [])];
  const users = [config.users.orchestrator, config.users.service, ...allNamespaces.map((ns) => namespaceUser(config, ns))];
  const passwords: Record<string, string> = Object.fromEntries(users.map((u) => [u, randomBytes(12).toString('base64url')]));
  const api = new ManagementApi(MANAGEMENT_URL());
  const extra: string[] = [];
  const urlOf = (user: string) => {
    const u = new URL(AMQP_URL());
    u.username = encodeURIComponent(user);
    u.password = encodeURIComponent(passwords[user]!);
    return u.toString();
  };
  return {
    prefix,
    config,
    passwords,
    api,
    urlOf,
    users,
    userOf: (ns) => namespaceUser(config, ns),
    apply: (more = {}) =>
      applyBrokerAccess({
        config,
        passwords: { ...passwords, ...more.passwords },
        managementUrl: MANAGEMENT_URL(),
        ...(options.database ? { databaseUrl: options.database.url, dbSchema: options.database.schema } : { readDatabase: false }),
        // Queue type and delivery limit as the orchestrator under test reads them.
        env: process.env,
      }),
    async extraUser(name, permissions) {
      const user = `${prefix}-${name}`;
      passwords[user] = randomBytes(12).toString('base64url');
      await api.putUser(user, passwords[user]!);
      await api.putPermissions('/', user, permissions);
      extra.push(user);
      return user;
    },
    async cleanup() {
      for (const u of [...users, ...extra]) await api.deleteUser(u);
    },
  };
}

/** What the broker said when it refused an operation: `403 ACCESS_REFUSED - ...`, or null when it was allowed. */
export interface Refusal {
  code: number | null;
  message: string;
}

/**
 * Runs `fn` on a fresh channel of `conn` and returns the broker's refusal, or null when the
 * operation went through (publishes are awaited on a confirm channel). The channel error
 * carries the broker's reply code; the operation's own rejection often only says the
 * channel closed.
 */
export async function attempt(conn: ChannelModel, fn: (ch: ConfirmChannel) => Promise<unknown>): Promise<Refusal | null> {
  const ch = await conn.createConfirmChannel();
  let channelError: (Error & { code?: number }) | null = null;
  ch.on('error', (err: Error & { code?: number }) => {
    channelError ??= err;
  });
  const closed = new Promise<void>((resolve) => ch.once('close', () => resolve()));
  let thrown: (Error & { code?: number }) | null = null;
  try {
    await fn(ch);
    // A refusal of an asynchronous method (publish) arrives as a channel close: give it a moment.
    await Promise.race([closed, new Promise((r) => setTimeout(r, 200))]);
  } catch (err) {
    thrown = err as Error & { code?: number };
    await Promise.race([closed, new Promise((r) => setTimeout(r, 500))]);
  }
  await ch.close().catch(() => undefined);
  const err = channelError ?? thrown;
  return err ? { code: (err as { code?: number }).code ?? null, message: err.message } : null;
}

/** Publishes and waits for the broker's confirm (rejects when refused). */
export function publishConfirmed(ch: ConfirmChannel, exchange: string, routingKey: string, body: Buffer, props: amqp.Options.Publish = {}): Promise<void> {
  return new Promise((resolve, reject) => ch.publish(exchange, routingKey, body, props, (err: unknown) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve())));
}

export async function connectAs(url: string): Promise<ChannelModel> {
  const conn = await amqp.connect(url);
  conn.on('error', () => undefined);
  return conn;
}

export type { Channel };
