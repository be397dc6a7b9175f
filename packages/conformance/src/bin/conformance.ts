#!/usr/bin/env node
/**
 * The worker conformance kit (`pnpm conformance`):
 *
 *   pnpm conformance --namespace conf_py -- /usr/bin/python3 sdks/python/examples/conformance_worker.py
 *
 * Starts an orchestrator in this process on a fresh Postgres schema and AMQP prefix,
 * registers the kit's templates in the namespace, starts the worker command with
 * TASKER_AMQP_URL, TASKER_AMQP_PREFIX and TASKER_NAMESPACE, drives the fixed cases, checks
 * every raw step result against packages/protocol/schemas/step-result.json and the
 * expected outcome, prints a pass/fail table and exits 0 only if every case passed.
 *
 * Options:
 *   --namespace N   the namespace the worker serves (default: TASKER_NAMESPACE, else `conformance`)
 *   --log FILE      also write the worker's output and the orchestrator's warnings to FILE
 * Services: TASKER_DATABASE_URL, TASKER_AMQP_URL (defaults: the local ones).
 */
import { parseArgs } from 'node:util';
import { formatReport } from '../report.ts';
import { runConformance } from '../run.ts';

const USAGE = 'usage: conformance [--namespace N] [--log FILE] -- <worker command...>';
let values: { namespace?: string | undefined; log?: string | undefined; help?: boolean | undefined };
let positionals: string[];
try {
  ({ values, positionals } = parseArgs({
    allowPositionals: true,
    options: { namespace: { type: 'string' }, log: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  }));
} catch (err) {
  console.error(`conformance: ${(err as Error).message}\n${USAGE}`);
  process.exit(2);
}
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
if (positionals.length === 0) {
  console.error(`conformance: the worker command comes after --\n${USAGE}`);
  process.exit(2);
}
const namespace = values.namespace ?? process.env['TASKER_NAMESPACE'] ?? 'conformance';

try {
  const report = await runConformance({
    namespace,
    command: positionals,
    logPath: values.log ?? null,
    progress: (line) => console.error(line),
  });
  console.log(formatReport(report, positionals.join(' ')));
  process.exit(report.pass ? 0 : 1);
} catch (err) {
  console.error(`conformance: ${(err as Error).message}`);
  process.exit(1);
}
