import amqp from 'amqplib';
import pg from 'pg';
import { coreTopology, namespaceTopology, names, type QueueType, type Topology } from '@tasker/protocol';

/** Deletes every queue and exchange of a topology; missing ones are fine. */
export async function deleteTopology(amqpUrl: string, topology: Topology): Promise<void> {
  const conn = await amqp.connect(amqpUrl);
  conn.on('error', () => undefined);
  try {
    let ch = await conn.createChannel();
    ch.on('error', () => undefined);
    const attempt = async (fn: (c: amqp.Channel) => Promise<unknown>) => {
      try {
        await fn(ch);
      } catch {
        // A failed delete closes the channel: open another and go on.
        ch = await conn.createChannel();
        ch.on('error', () => undefined);
      }
    };
    for (const q of topology.queues) await attempt((c) => c.deleteQueue(q.name));
    for (const e of topology.exchanges) await attempt((c) => c.deleteExchange(e.name));
    await ch.close().catch(() => undefined);
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/** Tasker's whole topology under a prefix: the core, and the queues of the given namespaces. */
export function taskerTopology(prefix: string, queueType: QueueType, namespaces: string[]): Topology {
  const n = names(prefix);
  const opts = { queueType, deliveryLimit: 10 };
  const parts = [coreTopology(n, opts), ...namespaces.map((ns) => namespaceTopology(n, ns, opts))];
  const uniq = <T extends { name: string }>(xs: T[]): T[] => xs.filter((x, i) => xs.findIndex((y) => y.name === x.name) === i);
  return {
    queues: uniq(parts.flatMap((p) => p.queues)),
    exchanges: uniq(parts.flatMap((p) => p.exchanges)),
    bindings: [],
  };
}

export async function dropSchema(databaseUrl: string, schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await c.end();
  }
}

/** A database URL with another database name. */
export function withDatabase(databaseUrl: string, database: string): string {
  const u = new URL(databaseUrl);
  u.pathname = `/${database}`;
  return u.toString();
}

export async function createDatabase(databaseUrl: string, database: string): Promise<void> {
  const c = new pg.Client({ connectionString: withDatabase(databaseUrl, 'postgres') });
  await c.connect();
  try {
    await c.query(`CREATE DATABASE "${database}"`);
  } finally {
    await c.end();
  }
}

export async function dropDatabase(databaseUrl: string, database: string): Promise<void> {
  const c = new pg.Client({ connectionString: withDatabase(databaseUrl, 'postgres') });
  await c.connect();
  try {
    await c.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
  } finally {
    await c.end();
  }
}
