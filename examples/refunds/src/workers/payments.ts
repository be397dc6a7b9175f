#!/usr/bin/env node
// The Payments team's worker: serves the payments namespace only (its step queue, nothing
// else), configured from TASKER_AMQP_URL, TASKER_AMQP_PREFIX and TASKER_LOG_LEVEL. Runs
// until SIGTERM/SIGINT, then lets running steps finish.
import { createWorker } from '@tasker/worker';
import { paymentsHandlers } from '../payments/handlers.ts';

const worker = createWorker({ namespace: 'payments', handlers: paymentsHandlers, concurrency: 10 });
worker.installSignalHandlers();
await worker.start();
