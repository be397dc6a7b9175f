// pg-boss for the diamond: one queue, one work() fetching up to 50 jobs (concurrency 50),
// polling every 0.5 s (its minimum); handlers enqueue successors, the join of b and c
// counted in a small table. With BENCH_PGBOSS_NOTIFY=1 a handler that enqueued a job also
// calls notifyWorker(), so the worker fetches again at once instead of after the poll
// interval (pg-boss's own API for this). Reports the count of `d` handlers run (pg-boss
// completes jobs in the background after the handler).
import pg from 'pg';
import PgBoss from 'pg-boss';
import { coalesce, fatal, onStop, progress, ready } from './ipc.ts';

const connectionString = process.env.BENCH_DATABASE_URL!;
const schema = process.env.BENCH_PGBOSS_SCHEMA!;
const joins = process.env.BENCH_JOINS_TABLE!;
const notify = process.env.BENCH_PGBOSS_NOTIFY === '1';
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 50);
const QUEUE = 'diamond';

type Data = { task: number; step: 'a' | 'b' | 'c' | 'd' };
const boss = new PgBoss({ connectionString, schema, max: 10, supervise: false, schedule: false, migrate: false });
boss.on('error', (err: Error) => process.stderr.write(`pg-boss error: ${err.message}\n`));
const db = new pg.Pool({ connectionString, max: 10 });

let done = 0;
let workerId: string | null = null;
const report = coalesce(() => progress({ done }));
const wake = () => {
  if (notify && workerId) boss.notifyWorker(workerId);
};

async function handle(job: PgBoss.Job<Data>): Promise<void> {
  const { task, step } = job.data;
  switch (step) {
    case 'a':
      await boss.insert([
        { name: QUEUE, data: { task, step: 'b' } },
        { name: QUEUE, data: { task, step: 'c' } },
      ]);
      wake();
      return;
    case 'b':
    case 'c': {
      const r = await db.query<{ n: number }>(
        `INSERT INTO ${joins} (task, n) VALUES ($1, 1) ON CONFLICT (task) DO UPDATE SET n = ${joins}.n + 1 RETURNING n`,
        [task],
      );
      if (r.rows[0]!.n === 2) {
        await boss.send(QUEUE, { task, step: 'd' });
        wake();
      }
      return;
    }
    case 'd':
      done++;
      report();
      return;
  }
}

onStop(async () => {
  await boss.stop({ graceful: false, wait: true, close: true }).catch(() => undefined);
  await db.end().catch(() => undefined);
});
try {
  await boss.start();
  workerId = await boss.work<Data>(QUEUE, { batchSize: concurrency, pollingIntervalSeconds: 0.5 }, async (jobs) => {
    await Promise.all(jobs.map(handle));
  });
} catch (err) {
  fatal(err);
}
ready();
