import { execFileSync, spawn } from 'node:child_process';
import { closeSync, fdatasyncSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import amqp from 'amqplib';
import { Redis } from 'ioredis';
import pg from 'pg';
import { percentile, round } from './util.ts';

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
  /** Three small measurements that tell machines apart where the figures above do not. */
  probes: MachineProbes;
  /** How an idle CPU waits for work (see `cpuIdle`). */
  cpu_idle: CpuIdle;
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

export interface MachineProbes {
  /**
   * One byte to another process over a pipe and back, p50 in µs (Node on both ends). Every
   * step crosses processes a dozen times (broker, database, worker), so a machine where waking
   * a process is slow is slow at everything the bench measures except the CPU loop below.
   */
  wakeup_round_trip_us_p50: number;
  /** A fixed loop of arithmetic in one thread, ms: the CPU alone. */
  cpu_loop_ms: number;
  /** An 8 kB write and fdatasync in the bench's temp directory, p50 in µs: the disk a commit waits for. */
  fdatasync_us_p50: number;
}

/** Round trips through a child process that echoes what it reads. */
async function wakeupRoundTrip(rounds = 2000): Promise<number> {
  const child = spawn(process.execPath, ['-e', 'process.stdin.on("data", (b) => process.stdout.write(b))'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  try {
    const times: number[] = [];
    const byte = Buffer.from('x');
    for (let i = 0; i < rounds + 100; i++) {
      const t0 = performance.now();
      await new Promise<void>((resolve) => {
        child.stdout.once('data', () => resolve());
        child.stdin.write(byte);
      });
      if (i >= 100) times.push((performance.now() - t0) * 1000);
    }
    return round(percentile(times, 50), 1);
  } finally {
    child.kill();
  }
}

function cpuLoop(): number {
  const t0 = performance.now();
  let x = 0;
  for (let i = 0; i < 100_000_000; i++) x = (x + i * 7) % 1_000_003;
  if (x < 0) throw new Error('unreachable');
  return round(performance.now() - t0, 0);
}

function fdatasyncTime(rounds = 200): number {
  const dir = mkdtempSync(join(tmpdir(), 'tasker-bench-fsync-'));
  const fd = openSync(join(dir, 'probe'), 'w');
  try {
    const block = Buffer.alloc(8192, 1);
    const times: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const t0 = performance.now();
      writeSync(fd, block, 0, block.length, 0);
      fdatasyncSync(fd);
      times.push((performance.now() - t0) * 1000);
    }
    return round(percentile(times, 50), 0);
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface CpuIdle {
  /** The kernel's cpuidle driver (`haltpoll` in a KVM guest that can poll), or null where there is none. */
  driver: string | null;
  /**
   * How long an idle CPU of a KVM guest polls for work before it halts, in ns (the `haltpoll`
   * module's `guest_halt_poll_ns`), or null where the driver is not `haltpoll`. At 0 an idle
   * CPU halts at once and waking it goes through the hypervisor: a machine with it at 0
   * crosses processes slower (the wake-up probe) than the same machine polling.
   */
  halt_poll_ns: number | null;
}

function readTrimmed(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

/** The cpuidle driver and, under `haltpoll`, its polling time. */
export function cpuIdle(): CpuIdle {
  const driver = readTrimmed('/sys/devices/system/cpu/cpuidle/current_driver');
  const poll = driver === 'haltpoll' ? readTrimmed('/sys/module/haltpoll/parameters/guest_halt_poll_ns') : null;
  return { driver, halt_poll_ns: poll === null || !/^\d+$/.test(poll) ? null : Number(poll) };
}

/** One line for the report's header: `cpuidle driver haltpoll, polling 0 ns before halting (…)`. */
export function describeIdle(idle: CpuIdle): string {
  if (idle.driver === null) return 'no cpuidle driver';
  if (idle.halt_poll_ns === null) return `cpuidle driver ${idle.driver}`;
  const what = idle.halt_poll_ns === 0 ? ' (an idle CPU halts at once; waking it goes through the hypervisor)' : '';
  return `cpuidle driver ${idle.driver}, polling ${idle.halt_poll_ns} ns before halting${what}`;
}

export async function probeMachine(): Promise<MachineProbes> {
  return { wakeup_round_trip_us_p50: await wakeupRoundTrip(), cpu_loop_ms: cpuLoop(), fdatasync_us_p50: fdatasyncTime() };
}

/** What the figures were measured on: cores, memory, CPU, versions, and the probes above. */
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
    probes: await probeMachine(),
    cpu_idle: cpuIdle(),
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

/** Where the server's WAL stood, and its next transaction id, at one moment (pgWalMark). */
export interface WalMark {
  lsn: string;
  next_xid: number;
}

/** The server's WAL position (flushed) and next transaction id now. */
export async function pgWalMark(databaseUrl: string): Promise<WalMark> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    const { rows } = await c.query<{ lsn: string; next_xid: string }>(
      'SELECT pg_current_wal_flush_lsn()::text AS lsn, pg_snapshot_xmax(pg_current_snapshot())::text AS next_xid',
    );
    return { lsn: rows[0]!.lsn, next_xid: Number(rows[0]!.next_xid) };
  } finally {
    await c.end();
  }
}

/**
 * What the whole server wrote between two marks, other clients' work included, read from the
 * WAL itself rather than from Postgres's statistics counters (pg_stat_database, pg_stat_wal),
 * which each process reports at most once a second and an idle one up to ten seconds late, so
 * that a run of a few seconds read them short (a quick run read zero). Bytes are the distance
 * between the two positions and write transactions the transaction ids handed out (a
 * transaction that writes nothing takes none). Commit records and whole pages (full-page
 * images) are counted from the records themselves with pg_walinspect, where it can be created
 * (it ships with PostgreSQL 15; creating it takes a superuser); `records` is null where it
 * cannot.
 */
export async function pgWalBetween(
  databaseUrl: string,
  before: WalMark,
  after: WalMark,
): Promise<{ bytes: number; write_xacts: number; records: { commits: number; fpi: number } | null }> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    const bytes = Number((await c.query<{ n: string }>('SELECT pg_wal_lsn_diff($2::pg_lsn, $1::pg_lsn) AS n', [before.lsn, after.lsn])).rows[0]!.n);
    let records: { commits: number; fpi: number } | null = null;
    try {
      await c.query('CREATE EXTENSION IF NOT EXISTS pg_walinspect');
      // Every block reference with an image says FPW (PostgreSQL 15's block_ref text).
      const { rows } = await c.query<{ commits: string; fpi: string }>(
        `SELECT count(*) FILTER (WHERE resource_manager = 'Transaction' AND record_type LIKE 'COMMIT%') AS commits,
                COALESCE(sum((length(block_ref) - length(replace(block_ref, 'FPW', ''))) / 3), 0) AS fpi
         FROM pg_get_wal_records_info($1::pg_lsn, $2::pg_lsn)`,
        [before.lsn, after.lsn],
      );
      records = { commits: Number(rows[0]!.commits), fpi: Number(rows[0]!.fpi) };
    } catch {
      // Not a superuser, or the extension is not installed: the records stay unread.
    }
    return { bytes, write_xacts: after.next_xid - before.next_xid, records };
  } finally {
    await c.end();
  }
}
