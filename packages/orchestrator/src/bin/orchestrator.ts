#!/usr/bin/env node
// Runs an orchestrator configured from TASKER_* environment variables until SIGTERM/SIGINT.
import { Orchestrator } from '../orchestrator.ts';

const orchestrator = await Orchestrator.start();
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
