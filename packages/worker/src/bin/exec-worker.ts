#!/usr/bin/env node
/**
 * Runs a worker whose handlers live in another program, any language, through the exec
 * bridge (docs/protocol.md, "Exec bridge"):
 *
 *   tsx packages/worker/src/bin/exec-worker.ts --namespace payments -- ./target/release/payments-worker --flag
 *
 * Options (each also read from the environment):
 *   --namespace N          TASKER_NAMESPACE       the namespace served (required)
 *   --concurrency N        TASKER_CONCURRENCY     steps in flight at once (default 10)
 *   --shutdown-grace-ms N  TASKER_SHUTDOWN_GRACE_MS  on SIGTERM, how long running steps may finish (default 10000)
 *   --start-timeout-ms N   TASKER_EXEC_START_TIMEOUT_MS  how long the child may take to say hello (default 30000)
 * Broker settings come from TASKER_AMQP_URL, TASKER_AMQP_PREFIX, TASKER_LOG_LEVEL.
 * SIGTERM/SIGINT: stop taking steps, let running ones finish, close the child's stdin, exit 0.
 */
import { parseArgs } from 'node:util';
import { createExecWorker } from '../exec-bridge.ts';

const USAGE = 'usage: exec-worker --namespace <namespace> [--concurrency N] [--shutdown-grace-ms N] [--start-timeout-ms N] -- <command> [args...]';

function fail(message: string): never {
  console.error(`exec-worker: ${message}\n${USAGE}`);
  process.exit(2);
}

let parsed: ReturnType<typeof parse>;
function parse() {
  return parseArgs({
    allowPositionals: true,
    strict: true,
    options: {
      namespace: { type: 'string' },
      concurrency: { type: 'string' },
      'shutdown-grace-ms': { type: 'string' },
      'start-timeout-ms': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}
try {
  parsed = parse();
} catch (err) {
  fail((err as Error).message);
}
const { values, positionals } = parsed;
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

function intOption(flag: string, value: string | undefined, env: string): number | undefined {
  const text = value ?? process.env[env];
  if (text === undefined || text === '') return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) fail(`--${flag} (${env}) must be a whole number; got '${text}'`);
  return n;
}

const namespace = values.namespace ?? process.env['TASKER_NAMESPACE'];
if (!namespace) fail('--namespace (or TASKER_NAMESPACE) is required');
const [command, ...args] = positionals;
if (!command) fail('the command to run comes after --');

const concurrency = intOption('concurrency', values.concurrency, 'TASKER_CONCURRENCY');
const shutdownGraceMs = intOption('shutdown-grace-ms', values['shutdown-grace-ms'], 'TASKER_SHUTDOWN_GRACE_MS');
const startTimeoutMs = intOption('start-timeout-ms', values['start-timeout-ms'], 'TASKER_EXEC_START_TIMEOUT_MS');

let worker: ReturnType<typeof createExecWorker>;
try {
  worker = createExecWorker({
    namespace,
    command,
    args,
    ...(concurrency !== undefined ? { concurrency } : {}),
    ...(shutdownGraceMs !== undefined ? { shutdownGraceMs } : {}),
    ...(startTimeoutMs !== undefined ? { startTimeoutMs } : {}),
  });
} catch (err) {
  fail((err as Error).message);
}
worker.installSignalHandlers();
try {
  await worker.start();
} catch (err) {
  console.error(`exec-worker: ${(err as Error).message}`);
  await worker.stop().catch(() => undefined);
  process.exit(1);
}
