import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, loadavg } from 'node:os';
import amqp from 'amqplib';
import { Redis } from 'ioredis';
import pg from 'pg';

export interface Machine {
  nproc: number;
  free_g: string;
  cpu_model: string;
  load_average: number[];
  node: string;
  postgres: string;
  rabbitmq: string;
  redis: string | null;
  libraries: Record<string, string>;
  /** The code measured: the commit, and files under packages/ changed from it (others work in this tree too). */
  source: { commit: string; changed_under_packages: number };
}

function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', timeout: 5000 }).trim();
  } catch {
    return '(unavailable)';
  }
}

function version(pkg: string): string {
  try {
    const require = createRequire(import.meta.url);
    // Resolve the package's main file, then walk up to its package.json.
    const main = require.resolve(pkg);
    const dir = main.slice(0, main.lastIndexOf(`/node_modules/${pkg}/`) + `/node_modules/${pkg}/`.length);
    return (JSON.parse(readFileSync(`${dir}package.json`, 'utf8')) as { version: string }).version;
  } catch {
    return '?';
  }
}

/** What the figures were measured on: cores, memory, CPU, versions. */
export async function describeMachine(databaseUrl: string, amqpUrl: string, redisUrl: string | null): Promise<Machine> {
  const cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '?';
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  const pgVersion = (await c.query<{ server_version: string }>('SHOW server_version')).rows[0]!.server_version;
  await c.end();
  const conn = await amqp.connect(amqpUrl);
  const props = (conn as unknown as { connection: { serverProperties: Record<string, unknown> } }).connection.serverProperties;
  await conn.close();
  let redis: string | null = null;
  if (redisUrl) {
    try {
      const r = new Redis(redisUrl, { maxRetriesPerRequest: 1, lazyConnect: true, retryStrategy: () => null });
      r.on('error', () => undefined);
      await r.connect();
      redis = /redis_version:(\S+)/.exec(await r.info('server'))?.[1] ?? '?';
      r.disconnect();
    } catch {
      redis = null;
    }
  }
  return {
    nproc: availableParallelism(),
    free_g: sh('free', ['-g']),
    cpu_model: cpu.trim(),
    load_average: loadavg().map((x) => Math.round(x * 100) / 100),
    node: process.version,
    postgres: pgVersion,
    rabbitmq: String(props.version ?? '?'),
    redis,
    source: {
      commit: sh('git', ['rev-parse', '--short', 'HEAD']),
      changed_under_packages: sh('git', ['status', '--porcelain', '--', 'packages']).split('\n').filter(Boolean).length,
    },
    libraries: Object.fromEntries(['amqplib', 'pg', 'bullmq', 'ioredis', 'graphile-worker', 'pg-boss'].map((p) => [p, version(p)])),
  };
}

/** The durability settings Tasker's figures were taken with, read from Postgres. */
export async function durabilitySettings(databaseUrl: string): Promise<{ fsync: string; synchronous_commit: string; wal_sync_method: string }> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    const get = async (name: string) => (await c.query<Record<string, string>>(`SHOW ${name}`)).rows[0]![name]!;
    return { fsync: await get('fsync'), synchronous_commit: await get('synchronous_commit'), wal_sync_method: await get('wal_sync_method') };
  } finally {
    await c.end();
  }
}

/** Cluster-wide Postgres counters (commits of this database, WAL syncs of all): other clients' work shows too. */
export async function pgCounters(databaseUrl: string): Promise<{ commits: number; wal_syncs: number; wal_records: number }> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    const a = await c.query<{ n: string }>('SELECT xact_commit AS n FROM pg_stat_database WHERE datname = current_database()');
    const w = await c.query<{ wal_sync: string; wal_records: string }>('SELECT wal_sync, wal_records FROM pg_stat_wal');
    return { commits: Number(a.rows[0]!.n), wal_syncs: Number(w.rows[0]!.wal_sync), wal_records: Number(w.rows[0]!.wal_records) };
  } finally {
    await c.end();
  }
}
