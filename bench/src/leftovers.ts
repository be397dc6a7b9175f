import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { Redis } from 'ioredis';
import { deleteTopology, dropDatabase, taskerTopology } from './cleanup.ts';
import { BENCH_NAMESPACES } from './tasker-stack.ts';

/**
 * A note per running bench in the temp folder, so that what a killed run left (schemas,
 * databases, queues, Redis keys, all named `bench_<run>_…`/`benchbull_<run>_…`) is removed
 * by the next run — only for runs whose process is gone, so concurrent runs are left alone.
 */
const DIR = join(tmpdir(), 'tasker-bench-runs');

interface RunNote {
  runId: string;
  pid: number;
  databaseUrl: string;
  amqpUrl: string;
  redisUrl: string;
}

export function registerRun(note: RunNote): () => void {
  mkdirSync(DIR, { recursive: true });
  const file = join(DIR, `${note.runId}.json`);
  writeFileSync(file, JSON.stringify(note));
  return () => rmSync(file, { force: true });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Removes what dead runs left; returns one line per run cleaned. */
export async function cleanLeftovers(): Promise<string[]> {
  let files: string[];
  try {
    files = readdirSync(DIR).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
  const done: string[] = [];
  for (const f of files) {
    const note = JSON.parse(readFileSync(join(DIR, f), 'utf8')) as RunNote;
    if (alive(note.pid)) continue;
    await removeRun(note);
    rmSync(join(DIR, f), { force: true });
    done.push(`removed what the interrupted bench run ${note.runId} left`);
  }
  return done;
}

/** Everything a run may have created, by its names. Missing things are fine. */
export async function removeRun(note: Omit<RunNote, 'pid'>): Promise<void> {
  const id = note.runId;
  const c = new pg.Client({ connectionString: note.databaseUrl });
  await c.connect();
  try {
    const { rows } = await c.query<{ nspname: string }>(`SELECT nspname FROM pg_namespace WHERE nspname LIKE $1`, [`bench\\_${id}\\_%`]);
    for (const r of rows) await c.query(`DROP SCHEMA IF EXISTS "${r.nspname}" CASCADE`);
    const dbs = await c.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname LIKE $1`, [`bench\\_${id}\\_%`]);
    for (const r of dbs.rows) await dropDatabase(note.databaseUrl, r.datname);
  } finally {
    await c.end();
  }
  // Deleting goes by name: the queue type does not matter.
  for (const label of ['main', 'mem', 'two']) {
    await deleteTopology(note.amqpUrl, taskerTopology(`bench_${id}_${label}`, 'quorum', BENCH_NAMESPACES));
  }
  const raw = ['quorum', 'classic'].flatMap((t) => [1, 2].map((h) => ({ name: `bench_${id}_raw.${t}.hop${h}`, arguments: {} })));
  await deleteTopology(note.amqpUrl, { queues: raw, exchanges: [], bindings: [] });
  const r = new Redis(note.redisUrl, { maxRetriesPerRequest: 1, lazyConnect: true, retryStrategy: () => null });
  r.on('error', () => undefined);
  try {
    await r.connect();
    let cursor = '0';
    for (let i = 0; i < 100_000; i++) {
      const [next, keys] = await r.scan(cursor, 'MATCH', `benchbull_${id}_*`, 'COUNT', 1000);
      if (keys.length > 0) await r.unlink(...keys);
      cursor = next;
      if (cursor === '0') break;
    }
  } catch {
    // Redis not running: nothing of ours there.
  } finally {
    r.disconnect();
  }
}
