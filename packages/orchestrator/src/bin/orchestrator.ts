#!/usr/bin/env node
// Runs an orchestrator configured from TASKER_* environment variables until SIGTERM/SIGINT.
import pino from 'pino';
import { tuneHeap } from '../heap.ts';
import { Orchestrator } from '../orchestrator.ts';
import { describeStartupError } from './startup-error.ts';

tuneHeap();
let orchestrator: Orchestrator;
try {
  orchestrator = await Orchestrator.start();
} catch (err) {
  pino({ base: { component: 'orchestrator' } }).fatal({ err: (err as Error).message }, describeStartupError(err));
  process.exit(1);
}
let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    orchestrator.logger.info({ signal }, 'stopping: finishing batches in flight');
    orchestrator.stop().then(
      () => process.exit(0),
      (err) => {
        orchestrator.logger.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  });
}
