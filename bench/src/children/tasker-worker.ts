// A Tasker worker for the bench: one namespace, no-op handlers, concurrency from
// BENCH_CONCURRENCY (50). Each handler returns the time it ran (sub-millisecond, wall
// clock), so the gap between two steps can be measured without the 1 ms resolution of
// the step rows' timestamps. With BENCH_NOTIFY_STEP set, running that step is told to the
// bench over IPC (the overhead loop then polls for the task's completion).
import '../experiments.ts';
import pino from 'pino';
import { createWorker } from '@tasker/worker';
import { fatal, nowMs, onStop, progress, ready } from './ipc.ts';
import { installAmqpTrace, serveStats } from './trace.ts';
import { ev } from './timeline.ts';

if (process.env.BENCH_TRACE === '1') installAmqpTrace();
serveStats();

const notifyStep = process.env.BENCH_NOTIFY_STEP ?? null;
const worker = createWorker({
  namespace: process.env.BENCH_NAMESPACE ?? 'bench',
  concurrency: Number(process.env.BENCH_CONCURRENCY ?? 50),
  logger: pino({ level: process.env.TASKER_LOG_LEVEL ?? 'warn', base: { component: 'worker', pid: process.pid } }),
  handlers: {
    bench_noop: async (ctx) => {
      ev('handler', ctx.stepName);
      const t = nowMs();
      if (notifyStep !== null && ctx.stepName === notifyStep) progress({ taskId: ctx.taskId, step: ctx.stepName });
      return { t };
    },
  },
});
onStop(() => worker.stop());
try {
  await worker.start();
} catch (err) {
  fatal(err);
}
ready();
