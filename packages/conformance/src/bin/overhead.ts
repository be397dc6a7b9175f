#!/usr/bin/env node
/**
 * Per-step overhead of one worker, without the orchestrator or the database (see
 * ../overhead.ts for what is measured; `pnpm bench --only languages` runs it for every
 * language in one go).
 *
 *   tsx packages/conformance/src/bin/overhead.ts [--steps 300] [--warmup-ms 0] [--in-flight 200] [--in-flight-steps 1000] \
 *     [--queue-type quorum|classic] -- <conformance worker command...>
 *
 * Prints the sequential latency (one step in flight: median, p95, p99) and the rate with
 * `--in-flight` steps outstanding. A measurement, not a test.
 */
import { parseArgs } from 'node:util';
import type { QueueType } from '@tasker/protocol';
import { measureWorkerOverhead } from '../overhead.ts';

const USAGE = 'usage: overhead [--steps N] [--warmup-ms MS] [--in-flight N] [--in-flight-steps N] [--queue-type quorum|classic] -- <conformance worker command...>';
let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      steps: { type: 'string' },
      'warmup-ms': { type: 'string' },
      'in-flight': { type: 'string' },
      'in-flight-steps': { type: 'string' },
      'queue-type': { type: 'string' },
    },
  });
} catch (err) {
  console.error(`${(err as Error).message}\n${USAGE}`);
  process.exit(2);
}
const { values, positionals } = parsed;
const queueType = values['queue-type'] ?? 'quorum';
if (positionals.length === 0 || (queueType !== 'quorum' && queueType !== 'classic')) {
  console.error(USAGE);
  process.exit(2);
}
const int = (v: string | undefined): number | undefined => (v === undefined ? undefined : Number(v));

const r = await measureWorkerOverhead({
  command: positionals,
  queueType: queueType as QueueType,
  steps: int(values.steps),
  warmupMs: int(values['warmup-ms']),
  inFlight: int(values['in-flight']),
  inFlightSteps: int(values['in-flight-steps']),
});
console.log(
  `${positionals.join(' ')}\n  sequential: median ${r.p50_ms.toFixed(2)} ms, p95 ${r.p95_ms.toFixed(2)} ms, p99 ${r.p99_ms.toFixed(2)} ms over ${r.steps} steps; ` +
    `${r.in_flight} in flight: ${r.in_flight_steps_per_sec.toFixed(0)} steps/s (${r.in_flight_steps} steps); ${r.queue_type} queues; worker ready in ${r.start_ms.toFixed(0)} ms`,
);
