#!/usr/bin/env node
// The Customer Success team's worker: serves the customer_success namespace only (its step
// queue, nothing else), configured from TASKER_AMQP_URL, TASKER_AMQP_PREFIX and
// TASKER_LOG_LEVEL. Runs until SIGTERM/SIGINT, then lets running steps finish.
import { createWorker } from '@tasker/worker';
import { customerSuccessHandlers } from '../customer-success/handlers.ts';

const worker = createWorker({ namespace: 'customer_success', handlers: customerSuccessHandlers, concurrency: 10 });
worker.installSignalHandlers();
await worker.start();
