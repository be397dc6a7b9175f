import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { spawnChild } from '../proc.ts';
import { bulkProduce, measure, type PeerContext, type PeerResult } from './common.ts';
import { enableFsyncAlways, restore } from './redis-durability.ts';

export const BULLMQ_MAPPINGS = {
  flow: 'a is a job; its handler adds the flow d{b, c} (FlowProducer): d is the parent of b and c, so BullMQ runs d once both completed',
  successors: "a's handler adds b and c; b and c each HINCRBY a per-task Redis hash field and the one that reads 2 adds d",
} as const;

/**
 * BullMQ on the local Redis, `mode` flow or successors; `durable` switches Redis to
 * appendonly + appendfsync always for the run and restores it afterwards.
 */
export async function runBullmq(ctx: PeerContext, name: string, mode: 'flow' | 'successors', durable: boolean): Promise<PeerResult> {
  const prefix = `benchbull_${ctx.runId}_${name}`;
  const url = new URL(ctx.redisUrl);
  const connection = { host: url.hostname, port: Number(url.port || 6379), maxRetriesPerRequest: null };
  let queue: Queue | null = null;
  const worker = { child: null as ReturnType<typeof spawnChild> | null };
  try {
    if (durable) await enableFsyncAlways(ctx.redisUrl);
    queue = new Queue('diamond', { connection, prefix });
    await queue.waitUntilReady();
    worker.child = spawnChild(`bullmq-${name}`, 'bullmq-worker.ts', {
      env: { BENCH_REDIS_URL: ctx.redisUrl, BENCH_PREFIX: prefix, BENCH_MODE: mode, BENCH_CONCURRENCY: String(ctx.concurrency) },
      logFile: join(ctx.outDir, 'logs', `bullmq-${name}.log`),
    });
    await worker.child.ready;
    const q = queue;
    return await measure(name, durable, BULLMQ_MAPPINGS[mode], ctx, worker.child, (from, count) =>
      bulkProduce(from, count, (ids) => q.addBulk(ids.map((task) => ({ name: 'a', data: { task } })))),
    );
  } finally {
    await worker.child?.stop().catch(() => undefined);
    await queue?.obliterate({ force: true }).catch(() => undefined);
    await queue?.close().catch(() => undefined);
    await deleteKeys(ctx.redisUrl, `${prefix}:*`).catch(() => undefined);
    if (durable) {
      const note = await restore();
      if (note) process.stderr.write(`  ${note}\n`);
    }
  }
}

/** Deletes every key matching a pattern (SCAN + UNLINK). */
async function deleteKeys(redisUrl: string, pattern: string): Promise<void> {
  const r = new Redis(redisUrl, { maxRetriesPerRequest: 2 });
  r.on('error', () => undefined);
  try {
    let cursor = '0';
    for (let i = 0; i < 100_000; i++) {
      const [next, keys] = await r.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      if (keys.length > 0) await r.unlink(...keys);
      cursor = next;
      if (cursor === '0') break;
    }
  } finally {
    r.disconnect();
  }
}
