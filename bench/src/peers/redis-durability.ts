import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { sleep } from '../util.ts';

/**
 * Redis's persistence settings, switched to "fsync every write" for BullMQ's durable run and
 * put back afterwards whatever happens: in a `finally`, on SIGINT/SIGTERM (main.ts), and —
 * should the bench be killed outright — from a note left in the temp folder, read at the
 * next start.
 */
const NOTE = join(tmpdir(), 'tasker-bench-redis-settings.json');

interface Settings {
  url: string;
  appendonly: string;
  appendfsync: string;
}

async function withRedis<T>(url: string, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis(url, { maxRetriesPerRequest: 2, lazyConnect: true });
  r.on('error', () => undefined);
  await r.connect();
  try {
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

async function get(r: Redis, key: string): Promise<string> {
  const v = (await r.config('GET', key)) as string[];
  return v[1] ?? '';
}

async function put(r: Redis, s: Settings): Promise<void> {
  await r.config('SET', 'appendfsync', s.appendfsync);
  await r.config('SET', 'appendonly', s.appendonly);
}

let active: Settings | null = null;

/** Restores settings a killed run left changed. Returns what it did, or null. */
export async function restoreLeftover(): Promise<string | null> {
  if (!existsSync(NOTE)) return null;
  const s = JSON.parse(readFileSync(NOTE, 'utf8')) as Settings;
  await withRedis(s.url, (r) => put(r, s));
  rmSync(NOTE, { force: true });
  return `restored Redis appendonly=${s.appendonly} appendfsync=${s.appendfsync} left changed by an interrupted run`;
}

/** The current settings, for the report. */
export function current(url: string): Promise<{ appendonly: string; appendfsync: string }> {
  return withRedis(url, async (r) => ({ appendonly: await get(r, 'appendonly'), appendfsync: await get(r, 'appendfsync') }));
}

/** appendonly yes + appendfsync always, once the AOF rewrite this starts has finished. */
export async function enableFsyncAlways(url: string): Promise<void> {
  await withRedis(url, async (r) => {
    const before: Settings = { url, appendonly: await get(r, 'appendonly'), appendfsync: await get(r, 'appendfsync') };
    if (!active) {
      writeFileSync(NOTE, JSON.stringify(before));
      active = before;
    }
    await r.config('SET', 'appendfsync', 'always');
    await r.config('SET', 'appendonly', 'yes');
    const deadline = Date.now() + 60_000;
    for (;;) {
      const info = await r.info('persistence');
      const busy = /aof_rewrite_in_progress:1|aof_rewrite_scheduled:1/.test(info);
      if (!busy && /aof_enabled:1/.test(info)) break;
      if (Date.now() > deadline) throw new Error('Redis AOF rewrite did not finish within 60 s');
      await sleep(50);
    }
  });
}

/** Puts back the settings found before {@link enableFsyncAlways}; a no-op when nothing was changed. */
export async function restore(): Promise<string | null> {
  const s = active;
  if (!s) return null;
  await withRedis(s.url, (r) => put(r, s));
  active = null;
  rmSync(NOTE, { force: true });
  return `Redis restored: appendonly=${s.appendonly} appendfsync=${s.appendfsync}`;
}
