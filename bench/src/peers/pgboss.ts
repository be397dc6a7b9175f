import { join } from 'node:path';
import pg from 'pg';
import PgBoss from 'pg-boss';
import { spawnChild } from '../proc.ts';
import { bulkProduce, measure, type PeerContext, type PeerResult } from './common.ts';

export const PGBOSS_MAPPING =
  "one queue; a's handler inserts b and c; b and c each upsert a per-task row (n + 1) in a joins table and the one that reads 2 sends d; work() batchSize 50, polling 0.5 s";

/** pg-boss on the peers' database, in a schema of its own; `notify` wakes its worker after each enqueue. */
export async function runPgBoss(ctx: PeerContext, name: string, notify: boolean): Promise<PeerResult> {
  const schema = `pgboss_${ctx.runId}_${name}`;
  const joins = `public.joins_${ctx.runId}_${name}`;
  const admin = new pg.Client({ connectionString: ctx.peersDatabaseUrl });
  await admin.connect();
  const boss = new PgBoss({ connectionString: ctx.peersDatabaseUrl, schema, max: 4, supervise: false, schedule: false, migrate: true });
  boss.on('error', () => undefined);
  let started = false;
  let child: ReturnType<typeof spawnChild> | null = null;
  try {
    await admin.query(`CREATE TABLE ${joins} (task int PRIMARY KEY, n int NOT NULL)`);
    await boss.start();
    started = true;
    await boss.createQueue('diamond');
    child = spawnChild(`pgboss-${name}`, 'pgboss-worker.ts', {
      env: {
        BENCH_DATABASE_URL: ctx.peersDatabaseUrl,
        BENCH_PGBOSS_SCHEMA: schema,
        BENCH_JOINS_TABLE: joins,
        BENCH_PGBOSS_NOTIFY: notify ? '1' : '0',
        BENCH_CONCURRENCY: String(ctx.concurrency),
      },
      logFile: join(ctx.outDir, 'logs', `pgboss-${name}.log`),
    });
    await child.ready;
    const mapping = notify ? `${PGBOSS_MAPPING}; handlers call notifyWorker() after enqueuing` : PGBOSS_MAPPING;
    return await measure(name, true, mapping, ctx, child, (from, count) =>
      bulkProduce(from, count, (ids) => boss.insert(ids.map((task) => ({ name: 'diamond', data: { task, step: 'a' } })))),
    );
  } finally {
    await child?.stop().catch(() => undefined);
    if (started) await boss.stop({ graceful: false, wait: true, close: true }).catch(() => undefined);
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await admin.query(`DROP TABLE IF EXISTS ${joins}`).catch(() => undefined);
    await admin.end().catch(() => undefined);
  }
}
