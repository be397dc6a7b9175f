import { join } from 'node:path';
import pg from 'pg';
import { Logger, makeWorkerUtils, type WorkerUtils } from 'graphile-worker';
import { spawnChild } from '../proc.ts';
import { bulkProduce, measure, type PeerContext, type PeerResult } from './common.ts';

export const GRAPHILE_MAPPING =
  "a's handler adds b and c (addJobs); b and c each upsert a per-task row (n + 1) in a joins table and the one that reads 2 adds d";

/** graphile-worker on the peers' database, in a schema of its own; `batched` turns on its local queue and batched completion. */
export async function runGraphile(ctx: PeerContext, name: string, batched: boolean): Promise<PeerResult> {
  const schema = `gw_${ctx.runId}_${name}`;
  const joins = `public.joins_${ctx.runId}_${name}`;
  const admin = new pg.Client({ connectionString: ctx.peersDatabaseUrl });
  await admin.connect();
  let utils: WorkerUtils | null = null;
  let child: ReturnType<typeof spawnChild> | null = null;
  try {
    await admin.query(`CREATE TABLE ${joins} (task int PRIMARY KEY, n int NOT NULL)`);
    utils = await makeWorkerUtils({ connectionString: ctx.peersDatabaseUrl, schema, logger: new Logger(() => () => undefined) });
    await utils.migrate();
    child = spawnChild(`graphile-${name}`, 'graphile-worker.ts', {
      env: {
        BENCH_DATABASE_URL: ctx.peersDatabaseUrl,
        BENCH_GW_SCHEMA: schema,
        BENCH_JOINS_TABLE: joins,
        BENCH_GW_BATCHED: batched ? '1' : '0',
        BENCH_CONCURRENCY: String(ctx.concurrency),
      },
      logFile: join(ctx.outDir, 'logs', `graphile-${name}.log`),
    });
    await child.ready;
    const u = utils;
    const mapping = batched ? `${GRAPHILE_MAPPING}; localQueue ${ctx.concurrency + 1}, completeJobBatchDelay 0` : GRAPHILE_MAPPING;
    return await measure(name, true, mapping, ctx, child, (from, count) =>
      bulkProduce(from, count, (ids) => u.addJobs(ids.map((task) => ({ identifier: 'a', payload: { task } })))),
    );
  } finally {
    await child?.stop().catch(() => undefined);
    if (utils) await Promise.resolve(utils.release()).catch(() => undefined);
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await admin.query(`DROP TABLE IF EXISTS ${joins}`).catch(() => undefined);
    await admin.end().catch(() => undefined);
  }
}
