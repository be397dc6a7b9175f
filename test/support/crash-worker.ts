// A worker process for crash tests: its `slow` handler says "started <step_id>" on stdout
// and then sleeps, so the test can SIGKILL the process in the middle of the step.
import pino from 'pino';
import { createWorker } from '@tasker/worker';

const worker = createWorker({
  namespace: process.env.TASKER_NAMESPACE!,
  concurrency: 1,
  logger: pino({ level: 'silent' }),
  handlers: {
    slow: async (ctx) => {
      process.stdout.write(`started ${ctx.stepId}\n`);
      await new Promise((r) => setTimeout(r, 60_000));
      return { by: 'crash-worker' };
    },
  },
});
await worker.start();
process.stdout.write('ready\n');
