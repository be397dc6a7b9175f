#!/usr/bin/env node
import { randomBytes } from 'node:crypto';
/**
 * The runnable demo (`pnpm demo`): two teams, one workflow name.
 *
 * Starts an orchestrator (templates from <repo>/templates) and one worker per namespace
 * as child processes, waits for `GET /health/ready`, then runs the scenario in
 * ./demo/scenario.ts through the HTTP API and prints every task's steps and a checklist.
 * Exits 0 when every check passes, 1 otherwise; the children are stopped in every case.
 *
 * Before starting them it provisions the broker (`applyBrokerAccess`, as `pnpm broker:apply`
 * does) with passwords generated for this run: each child connects as its own RabbitMQ user
 * (the orchestrator's, and one per namespace) with only its own permissions, never as the
 * account of TASKER_AMQP_URL, and the orchestrator checks each result's origin. Users this
 * run created are deleted at the end.
 *
 * Needs the local PostgreSQL and RabbitMQ (with its management plugin, reached through
 * TASKER_RABBITMQ_MANAGEMENT_URL, default http://guest:guest@127.0.0.1:15672). Honours the
 * TASKER_* variables and passes them to the children; the ones a test sets to isolate a run:
 *   TASKER_DB_SCHEMA    Postgres schema               (default tasker)
 *   TASKER_AMQP_PREFIX  exchange and queue prefix     (default tasker)
 *   TASKER_HTTP_PORT    orchestrator HTTP port        (default 8080)
 *   TASKER_LOG_LEVEL    children's log level          (default warn here, to keep the terminal readable)
 *   TASKER_DEMO_TIMEOUT_MS  bound on the whole run    (default 90000)
 * TASKER_TEMPLATES_DIR is always <repo>/templates: the scenario needs those two templates.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  DEFAULT_MANAGEMENT_URL,
  MANAGEMENT_URL_VARIABLE,
  ManagementApi,
  ManagementApiError,
  applyBrokerAccess,
  loadBrokerAccessFile,
  namespaceUser,
} from '@tasker/orchestrator';
import { Children } from './demo/children.ts';
import { bold, checklist, dim, red, yellow, type Check } from './demo/report.ts';
import { runScenario, unreached } from './demo/scenario.ts';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const env = process.env;
const print = (s = ''): void => console.log(s);

/** A reason the demo stops early, said in one sentence (no stack trace). */
class DemoFailure extends Error {
  override readonly name = 'DemoFailure';
}

const setting = (name: string, fallback: string): string => {
  const v = env[name];
  return v === undefined || v === '' ? fallback : v;
};
const schema = setting('TASKER_DB_SCHEMA', 'tasker');
const prefix = setting('TASKER_AMQP_PREFIX', 'tasker');
const portText = setting('TASKER_HTTP_PORT', '8080');
const bindHost = setting('TASKER_HTTP_HOST', '127.0.0.1');
const childLogLevel = setting('TASKER_LOG_LEVEL', 'warn');
const timeoutMs = Number(setting('TASKER_DEMO_TIMEOUT_MS', '90000'));
const templatesDir = join(REPO, 'templates');
const runId = `${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}`;
const logPath = join(tmpdir(), `tasker-demo-${runId}.log`);
/** This run's broker access file (infra/broker.yaml with this run's prefix), for the orchestrator's origin check. */
const accessPath = join(tmpdir(), `tasker-demo-${runId}-broker.yaml`);
const amqpUrl = setting('TASKER_AMQP_URL', 'amqp://guest:guest@127.0.0.1:5672');
const managementUrl = setting(MANAGEMENT_URL_VARIABLE, DEFAULT_MANAGEMENT_URL);
const NAMESPACES = ['customer_success', 'payments'] as const;

const port = Number(portText);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error(`TASKER_HTTP_PORT must be a port number from 1 to 65535 (the demo must know where to call); got '${portText}'`);
  process.exit(1);
}
if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
  console.error(`TASKER_DEMO_TIMEOUT_MS must be a positive number of milliseconds; got '${env['TASKER_DEMO_TIMEOUT_MS']}'`);
  process.exit(1);
}
// An orchestrator listening on every interface is still reached on the loopback.
const callHost = bindHost === '0.0.0.0' || bindHost === '::' ? '127.0.0.1' : bindHost;
const baseUrl = `http://${callHost.includes(':') ? `[${callHost}]` : callHost}:${port}`;

// The API needs a token: the demo makes one for this run, scoped to the two namespaces.
const apiToken = `demo-${randomBytes(18).toString('base64url')}`;
const childEnv: NodeJS.ProcessEnv = {
  ...env,
  TASKER_API_TOKENS: JSON.stringify([
    { name: 'demo', token: apiToken, namespaces: ['customer_success', 'payments'], actions: ['read', 'create', 'operate'] },
  ]),
  TASKER_DB_SCHEMA: schema,
  TASKER_AMQP_PREFIX: prefix,
  TASKER_HTTP_PORT: String(port),
  TASKER_TEMPLATES_DIR: templatesDir,
  TASKER_LOG_LEVEL: childLogLevel,
};

const run = new AbortController();
const startedAt = Date.now();
const remainingMs = (): number => startedAt + timeoutMs - Date.now();
let waitingFor = 'the start';
const deadline = setTimeout(() => {
  run.abort(
    new DemoFailure(
      `the demo did not finish within ${timeoutMs / 1000} s (still waiting for ${waitingFor}); ` +
        `the children's logs are in ${logPath}`,
    ),
  );
}, timeoutMs);

const children = new Children(logPath, REPO, ['orchestrator', 'worker customer_success', 'worker payments'], (name, code, signal, tail) => {
  const last = tail.length > 0 ? `\n  its last lines:\n${tail.map((l) => `    ${l}`).join('\n')}` : '';
  run.abort(new DemoFailure(`${name} exited unexpectedly (code ${code}, signal ${signal})${last}`));
});

let interrupted = false;
process.on('SIGINT', () => {
  if (interrupted) {
    // Second Ctrl-C: no more waiting.
    children.killAll();
    process.exit(130);
  }
  interrupted = true;
  run.abort(new DemoFailure('interrupted (Ctrl-C); stopping the children (Ctrl-C again to kill them)'));
});
process.on('SIGTERM', () => run.abort(new DemoFailure('terminated (SIGTERM); stopping the children')));

/** Resolves when the signal aborts: the rejection carries its reason. */
function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

/** Refuses to start when something already listens on the port: readiness would ask the wrong server. */
async function checkPortFree(): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'EADDRINUSE'
          ? new DemoFailure(
              `port ${port} on ${bindHost} is already in use (another orchestrator?); ` +
                'stop it or set TASKER_HTTP_PORT to a free port',
            )
          : err,
      ),
    );
    server.listen({ port, host: bindHost, exclusive: true }, () => server.close(() => resolve()));
  });
}

async function waitUntilReady(): Promise<void> {
  waitingFor = `the orchestrator's ${baseUrl}/health/ready`;
  let last = 'no answer yet';
  while (!run.signal.aborted) {
    try {
      const res = await fetch(`${baseUrl}/health/ready`, { signal: AbortSignal.any([run.signal, AbortSignal.timeout(2000)]) });
      if (res.status === 200) return;
      last = `HTTP ${res.status} ${await res.text()}`;
    } catch (err) {
      if (run.signal.aborted) break;
      last = (err as Error).message;
    }
    await sleep(250, undefined, { signal: run.signal }).catch(() => undefined);
  }
  throw run.signal.reason instanceof Error ? run.signal.reason : new DemoFailure(`orchestrator not ready: ${last}`);
}

/** amqp:// URL of the broker as `user`. */
function urlAs(user: string, password: string): string {
  const u = new URL(amqpUrl);
  u.username = encodeURIComponent(user);
  u.password = encodeURIComponent(password);
  return u.toString();
}

/** Users this run created (deleted at the end; users that existed before are left, with this run's password). */
const createdUsers: string[] = [];

/**
 * Provisions the broker for this run, as `pnpm broker:apply` would: the topology and one
 * user per role with only its permissions, passwords generated now. Returns each child's
 * AMQP URL.
 */
async function provisionBroker(): Promise<{ orchestrator: string; workers: Record<(typeof NAMESPACES)[number], string> }> {
  waitingFor = 'the broker access apply';
  const file = loadBrokerAccessFile(join(REPO, 'infra/broker.yaml'), { prefix });
  const vhostPath = new URL(amqpUrl).pathname.slice(1);
  const vhost = vhostPath === '' ? '/' : decodeURIComponent(vhostPath);
  // The orchestrator reads the same mapping back (TASKER_BROKER_ACCESS_FILE), with this run's prefix.
  const scope = (v: '*' | string[]) => (v === '*' ? ['*'] : v);
  // JSON is YAML: the file loads like infra/broker.yaml.
  writeFileSync(
    accessPath,
    JSON.stringify({
      vhost,
      prefix,
      users: { orchestrator: file.users.orchestrator, service: file.users.service, namespace: file.users.namespacePattern },
      namespaces: [...NAMESPACES],
      create_tasks_in: { service: scope(file.createTasksIn.service), workers: scope(file.createTasksIn.workers) },
    }, null, 2),
  );
  const users = [file.users.orchestrator, file.users.service, ...NAMESPACES.map((ns) => namespaceUser(file, ns))];
  const passwords = Object.fromEntries(users.map((u) => [u, randomBytes(18).toString('base64url')]));
  const report = await applyBrokerAccess({
    configFile: accessPath,
    passwords,
    managementUrl,
    dbSchema: schema,
    env: { ...env, TASKER_AMQP_PREFIX: prefix },
  });
  createdUsers.push(...report.items.filter((i) => i.kind === 'user' && i.outcome === 'created').map((i) => i.name));
  print(
    `broker users for this run: ${users.join(', ')} ` +
      dim(`(passwords generated now; ${report.created} broker items created, ${report.changed} changed, ${report.unchanged} already in place)`),
  );
  const workers = Object.fromEntries(NAMESPACES.map((ns) => [ns, urlAs(namespaceUser(file, ns), passwords[namespaceUser(file, ns)]!)])) as Record<
    (typeof NAMESPACES)[number],
    string
  >;
  return { orchestrator: urlAs(file.users.orchestrator, passwords[file.users.orchestrator]!), workers };
}

/** Deletes the users this run created, and this run's access file. */
async function unprovisionBroker(): Promise<void> {
  rmSync(accessPath, { force: true });
  if (createdUsers.length === 0) return;
  const api = new ManagementApi(managementUrl);
  for (const user of createdUsers) await api.deleteUser(user).catch((err: Error) => print(red(`could not delete broker user ${user}: ${err.message}`)));
}

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

/** Starts the children and runs the scenario, adding to `checks` as outcomes are seen. */
async function main(checks: Check[]): Promise<void> {
  print(bold('Tasker demo: two teams, one workflow name (process_refund)'));
  print(
    dim(
      [
        `  postgres   ${redact(setting('TASKER_DATABASE_URL', 'postgres://postgres:postgres@127.0.0.1:5432/tasker'))}  schema ${schema}`,
        `  rabbitmq   ${redact(amqpUrl)}  prefix ${prefix}  (management API ${redact(managementUrl)})`,
        `  http       ${baseUrl}`,
        `  templates  ${templatesDir}`,
        `  child logs ${logPath} (level ${childLogLevel}; shown below prefixed with the child's name)`,
      ].join('\n'),
    ),
  );
  print();

  await checkPortFree();
  const provisioned = await Promise.race([
    provisionBroker().catch((err: Error) => {
      // Without the management API (a fresh RabbitMQ has it off) the workflows still run,
      // every process as the one user of TASKER_AMQP_URL: only the isolation is not shown.
      if (err instanceof ManagementApiError && err.status === null) {
        print(yellow(`broker isolation not shown: ${err.message}.`));
        print(yellow(`every process connects as ${redact(amqpUrl)} and the result-origin check is off for this run`));
        return null;
      }
      throw new DemoFailure(`cannot provision the broker's users for this run: ${err.message}`);
    }),
    aborted(run.signal),
  ]);
  const urls = provisioned ?? { orchestrator: amqpUrl, workers: { customer_success: amqpUrl, payments: amqpUrl } };
  children.start({
    name: 'orchestrator',
    script: join(REPO, 'packages/orchestrator/src/bin/orchestrator.ts'),
    env: { ...childEnv, TASKER_AMQP_URL: urls.orchestrator, ...(provisioned ? { TASKER_BROKER_ACCESS_FILE: accessPath } : {}) },
  });
  await waitUntilReady();
  print(`orchestrator ready at ${baseUrl} (${((Date.now() - startedAt) / 1000).toFixed(1)} s)`);
  children.start({
    name: 'worker customer_success',
    script: join(REPO, 'examples/refunds/src/workers/customer-success.ts'),
    env: { ...childEnv, TASKER_AMQP_URL: urls.workers.customer_success },
  });
  children.start({
    name: 'worker payments',
    script: join(REPO, 'examples/refunds/src/workers/payments.ts'),
    env: { ...childEnv, TASKER_AMQP_URL: urls.workers.payments },
  });
  print(`workers started: customer_success, payments (${provisioned ? "each as its namespace's broker user" : 'sharing one broker user'})`);
  print(dim("the requests of (a) to (e) are sent at once; the workers' WARN lines for (d) and (e) are expected"));

  // The race makes a child's death or the deadline end the run even while a request hangs.
  await Promise.race([
    runScenario({ baseUrl, token: apiToken, signal: run.signal, remainingMs, waitingFor: (w) => (waitingFor = w) }, checks),
    aborted(run.signal),
  ]);
}

function describe(err: unknown): string {
  if (err instanceof DemoFailure) return err.message;
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}

const checks: Check[] = [];
try {
  await main(checks);
} catch (thrown) {
  // Whatever was awaited when the run was cut short rejects with something else; the
  // abort's reason says why.
  const err: unknown = run.signal.aborted ? run.signal.reason : thrown;
  print();
  print(red(`demo failed: ${describe(err)}`));
  if (!(err instanceof DemoFailure) && err instanceof Error && err.stack) print(dim(err.stack));
  const missing = unreached(checks);
  // Its first line: the whole of it is printed just above.
  const ranToEnd: Check = { id: 'run', label: 'the demo ran to the end', pass: false, detail: describe(err).split('\n')[0]! };
  if (checks.length === 0) ranToEnd.detail += `; none of the ${missing.length} expected outcomes was reached`;
  else checks.push(...missing);
  checks.push(ranToEnd);
} finally {
  clearTimeout(deadline);
}
print();
print(bold('Checklist'));
print(checklist(checks));
print(dim(`  (${((Date.now() - startedAt) / 1000).toFixed(1)} s; children's logs in ${logPath})`));
print(dim('stopping the children...'));
await children.stopAll();
await unprovisionBroker();
const code = checks.length > 0 && checks.every((c) => c.pass) ? 0 : 1;
process.exit(interrupted ? 130 : code);
