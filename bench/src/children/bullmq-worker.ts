// BullMQ worker for the diamond (BENCH_MODE = flow | successors), concurrency 50. Reports
// the count of completed `d` jobs (the worker's `completed` event, emitted once the job is
// moved to completed in Redis).
import { FlowProducer, Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { coalesce, fatal, onStop, progress, ready } from './ipc.ts';

const url = new URL(process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379');
const connection = { host: url.hostname, port: Number(url.port || 6379), maxRetriesPerRequest: null };
const prefix = process.env.BENCH_PREFIX!;
const mode = process.env.BENCH_MODE === 'flow' ? 'flow' : 'successors';
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 50);
const QUEUE = 'diamond';

type Data = { task: number };
const queue = new Queue<Data>(QUEUE, { connection, prefix });
const flow = new FlowProducer({ connection, prefix });
const redis = new Redis({ ...connection });
const joins = `${prefix}:joins`;

let done = 0;
const report = coalesce(() => progress({ done }));

const worker = new Worker<Data>(
  QUEUE,
  async (job: Job<Data>) => {
    switch (job.name) {
      case 'a':
        if (mode === 'flow') {
          // The fan-in is BullMQ's: d is the parent of b and c and runs once both completed.
          await flow.add({
            name: 'd',
            queueName: QUEUE,
            data: job.data,
            children: [
              { name: 'b', queueName: QUEUE, data: job.data },
              { name: 'c', queueName: QUEUE, data: job.data },
            ],
          });
        } else {
          await queue.addBulk([
            { name: 'b', data: job.data },
            { name: 'c', data: job.data },
          ]);
        }
        return null;
      case 'b':
      case 'c':
        if (mode === 'successors') {
          // The second of b and c to finish enqueues d.
          const n = await redis.hincrby(joins, String(job.data.task), 1);
          if (n === 2) await queue.add('d', job.data);
        }
        return null;
      default:
        return null;
    }
  },
  { connection, prefix, concurrency },
);
worker.on('completed', (job) => {
  if (job.name === 'd') {
    done++;
    report();
  }
});
worker.on('error', (err) => process.stderr.write(`worker error: ${err.message}\n`));
onStop(async () => {
  await worker.close();
  await flow.close();
  await queue.close();
  redis.disconnect();
});
try {
  await worker.waitUntilReady();
  await queue.waitUntilReady();
} catch (err) {
  fatal(err);
}
ready();
