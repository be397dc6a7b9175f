// graphile-worker for the diamond, concurrency 50: handlers enqueue successors; the join of
// b and c is counted in a small table. Reports the count of `d` jobs done (`job:success`,
// emitted when the handler returned; graphile-worker then completes the job in the
// background).
import { Logger, run, type Runner, type Task } from 'graphile-worker';
import { coalesce, fatal, onStop, progress, ready } from './ipc.ts';

const connectionString = process.env.BENCH_DATABASE_URL!;
const schema = process.env.BENCH_GW_SCHEMA!;
const joins = process.env.BENCH_JOINS_TABLE!;
const batched = process.env.BENCH_GW_BATCHED === '1';
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 50);
const poolSize = Number(process.env.BENCH_POOL_SIZE ?? 20);

type Payload = { task: number };
const a: Task = async (payload, helpers) => {
  await helpers.addJobs([
    { identifier: 'b', payload },
    { identifier: 'c', payload },
  ]);
};
const join: Task = async (payload, helpers) => {
  const { task } = payload as Payload;
  const n = await helpers.withPgClient(async (c) => {
    const r = await c.query<{ n: number }>(
      `INSERT INTO ${joins} (task, n) VALUES ($1, 1) ON CONFLICT (task) DO UPDATE SET n = ${joins}.n + 1 RETURNING n`,
      [task],
    );
    return r.rows[0]!.n;
  });
  if (n === 2) await helpers.addJob('d', payload as Payload);
};
const d: Task = async () => undefined;

let done = 0;
const report = coalesce(() => progress({ done }));
let runner: Runner | null = null;
onStop(async () => {
  await runner?.stop();
});
try {
  runner = await run({
    connectionString,
    schema,
    concurrency,
    maxPoolSize: poolSize,
    noHandleSignals: true,
    logger: new Logger(() => () => undefined),
    taskList: { a, b: join, c: join, d },
    ...(batched ? { preset: { worker: { localQueue: { size: concurrency + 1 }, completeJobBatchDelay: 0 } } } : {}),
  });
} catch (err) {
  fatal(err);
}
runner.events.on('job:success', ({ job }) => {
  if (job.task_identifier === 'd') {
    done++;
    report();
  }
});
ready();
