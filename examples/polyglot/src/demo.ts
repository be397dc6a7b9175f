#!/usr/bin/env node
/**
 * The polyglot demo (`pnpm demo:polyglot`): the mission's two teams in the languages they
 * chose, against the TypeScript orchestrator. By default customer_success runs in Ruby and
 * payments in Rust (through the worker runtime's exec bridge), as in the mission; any team
 * can run in any of typescript, python, ruby, rust:
 *
 *   pnpm demo:polyglot                                   # customer_success: ruby, payments: rust
 *   pnpm demo:polyglot --customer-success python --payments python
 *
 * It starts an orchestrator in this process (templates from <repo>/templates), one worker
 * process per team, runs the refunds scenario of examples/refunds (the same five requests
 * and checks as `pnpm demo`) through the HTTP API, prints every task and a checklist, and
 * exits 0 only when every expected outcome happened. The workers are stopped in every case.
 *
 * Settings, as `pnpm demo`: TASKER_DB_SCHEMA and TASKER_AMQP_PREFIX (default tasker),
 * TASKER_HTTP_PORT (default: any free port), TASKER_LOG_LEVEL (workers; default warn),
 * TASKER_DEMO_TIMEOUT_MS (default 120000), TASKER_DATABASE_URL, TASKER_AMQP_URL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { destination, pino } from 'pino';
import { Orchestrator } from '@tasker/orchestrator';
import { bold, checklist, cyan, dim, red, type Check } from '../../refunds/src/demo/report.ts';
import { runScenario, unreached } from '../../refunds/src/demo/scenario.ts';
import { LANGUAGES, TEAMS, buildRust, workerCommand, type Language, type Team } from './languages.ts';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const print = (s = ''): void => console.log(s);
const STOP_GRACE_MS = 10_000;

class DemoFailure extends Error {
  override readonly name = 'DemoFailure';
}

function usage(problem: string): never {
  console.error(`demo:polyglot: ${problem}\nusage: demo:polyglot [--customer-success ${LANGUAGES.join('|')}] [--payments ${LANGUAGES.join('|')}]`);
  process.exit(2);
}

let args: { 'customer-success'?: string | undefined; payments?: string | undefined };
try {
  args = parseArgs({ options: { 'customer-success': { type: 'string' }, payments: { type: 'string' } } }).values;
} catch (err) {
  usage((err as Error).message);
}
const language = (flag: string, value: string | undefined, fallback: Language): Language => {
  const v = value ?? fallback;
  if (!(LANGUAGES as readonly string[]).includes(v)) usage(`--${flag} must be one of ${LANGUAGES.join(', ')}; got '${v}'`);
  return v as Language;
};
const languages: Record<Team, Language> = {
  customer_success: language('customer-success', args['customer-success'], 'ruby'),
  payments: language('payments', args.payments, 'rust'),
};

const env = process.env;
const setting = (name: string, fallback: string): string => (env[name] === undefined || env[name] === '' ? fallback : env[name]!);
const schema = setting('TASKER_DB_SCHEMA', 'tasker');
const prefix = setting('TASKER_AMQP_PREFIX', 'tasker');
const httpPort = Number(setting('TASKER_HTTP_PORT', '0'));
const timeoutMs = Number(setting('TASKER_DEMO_TIMEOUT_MS', '120000'));
const childLogLevel = setting('TASKER_LOG_LEVEL', 'warn');
const logPath = join(tmpdir(), `tasker-demo-polyglot-${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}.log`);
const log = createWriteStream(logPath, { flags: 'a' });

const run = new AbortController();
const startedAt = Date.now();
let waitingFor = 'the start';
const deadline = setTimeout(
  () => run.abort(new DemoFailure(`the demo did not finish within ${timeoutMs / 1000} s (still waiting for ${waitingFor}); logs in ${logPath}`)),
  timeoutMs,
);

interface Worker {
  team: Team;
  label: string;
  proc: ChildProcess;
  exited: Promise<void>;
  stopping: boolean;
  tail: string[];
}
const workers: Worker[] = [];

function startWorker(team: Team, lang: Language): void {
  const [cmd, ...rest] = workerCommand(team, lang);
  const label = `${team} (${lang})`;
  const proc = spawn(cmd!, rest, {
    cwd: REPO,
    env: {
      ...env,
      TASKER_AMQP_PREFIX: prefix,
      TASKER_NAMESPACE: team,
      TASKER_LOG_LEVEL: childLogLevel,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const w: Worker = { team, label, proc, exited: Promise.resolve(), stopping: false, tail: [] };
  w.exited = new Promise((resolve) => {
    const gone = (how: string): void => {
      log.write(`[${label}] ${how}\n`);
      if (!w.stopping) {
        const last = w.tail.length > 0 ? `\n  its last lines:\n${w.tail.map((l) => `    ${l}`).join('\n')}` : '';
        run.abort(new DemoFailure(`the ${label} worker ${how} unexpectedly${last}`));
      }
      resolve();
    };
    proc.once('exit', (code, signal) => gone(`exited (code ${code}, signal ${signal})`));
    proc.once('error', (err) => gone(`could not start: ${err.message}`));
  });
  for (const stream of [proc.stdout!, proc.stderr!]) {
    createInterface({ input: stream }).on('line', (line) => {
      log.write(`[${label}] ${line}\n`);
      w.tail.push(line);
      if (w.tail.length > 20) w.tail.shift();
      process.stdout.write(`${cyan(`[${label.padEnd(28)}]`)} ${line.length > 220 ? `${line.slice(0, 220)}…` : line}\n`);
    });
  }
  workers.push(w);
}

async function stopWorkers(): Promise<void> {
  const live = workers.filter((w) => w.proc.exitCode === null && w.proc.signalCode === null);
  for (const w of live) {
    w.stopping = true;
    w.proc.kill('SIGTERM');
  }
  await Promise.all(
    live.map(async (w) => {
      const killed = sleep(STOP_GRACE_MS, 'timeout' as const);
      if ((await Promise.race([w.exited.then(() => 'exited' as const), killed])) === 'timeout') {
        print(`[${w.label}] did not stop within ${STOP_GRACE_MS / 1000} s: SIGKILL`);
        w.proc.kill('SIGKILL');
        await w.exited;
      }
    }),
  );
}
// Last resort: no worker outlives the demo.
process.once('exit', () => {
  for (const w of workers) if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill('SIGKILL');
});
process.on('SIGINT', () => run.abort(new DemoFailure('interrupted (Ctrl-C); stopping the workers')));
process.on('SIGTERM', () => run.abort(new DemoFailure('terminated (SIGTERM); stopping the workers')));

function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

const running: { orchestrator: Orchestrator | null } = { orchestrator: null };
// The API needs a token: the demo makes one for this run, scoped to the two namespaces.
const apiToken = `demo-${randomBytes(18).toString('base64url')}`;

async function main(checks: Check[]): Promise<void> {
  print(bold('Tasker polyglot demo: two teams, one workflow name, each team in its own language'));
  print(
    dim(
      [
        `  customer_success  ${languages.customer_success}`,
        `  payments          ${languages.payments}${languages.payments === 'rust' ? ' (through the exec bridge)' : ''}`,
        `  orchestrator      TypeScript, in this process: schema ${schema}, prefix ${prefix}`,
        `  logs              ${logPath}`,
      ].join('\n'),
    ),
  );
  if (Object.values(languages).includes('rust')) {
    waitingFor = 'the Rust build';
    const t0 = Date.now();
    await Promise.race([buildRust(REPO), aborted(run.signal)]);
    print(dim(`  rust handlers built (cargo --offline, ${((Date.now() - t0) / 1000).toFixed(1)} s)`));
  }
  waitingFor = 'the orchestrator';
  const orchestrator = await Orchestrator.start({
    apiTokensJson: JSON.stringify([{ name: 'demo', token: apiToken, namespaces: [...TEAMS], actions: ['read', 'create', 'operate'] }]),
    dbSchema: schema,
    amqpPrefix: prefix,
    httpPort,
    templatesDir: join(REPO, 'templates'),
    logger: pino({ level: 'warn', base: { component: 'orchestrator' } }, destination({ dest: logPath, append: true, sync: true })),
  });
  running.orchestrator = orchestrator;
  const baseUrl = orchestrator.httpUrl;
  if (!baseUrl) throw new DemoFailure('the orchestrator did not start its HTTP API');
  print(`orchestrator ready at ${baseUrl} (${((Date.now() - startedAt) / 1000).toFixed(1)} s)`);
  for (const team of TEAMS) startWorker(team, languages[team]);
  print(`workers started: ${workers.map((w) => w.label).join(', ')}`);
  print(dim("the requests of (a) to (e) are sent at once; the workers' warnings for (d) and (e) are expected"));
  await Promise.race([
    runScenario({ baseUrl, token: apiToken, signal: run.signal, remainingMs: () => startedAt + timeoutMs - Date.now(), waitingFor: (w) => (waitingFor = w) }, checks),
    aborted(run.signal),
  ]);
}

const describe = (err: unknown): string =>
  err instanceof DemoFailure ? err.message : err instanceof Error ? `${err.name}: ${err.message}` : String(err);

const checks: Check[] = [];
try {
  await main(checks);
} catch (thrown) {
  const err: unknown = run.signal.aborted ? run.signal.reason : thrown;
  print();
  print(red(`demo failed: ${describe(err)}`));
  const missing = unreached(checks);
  const ranToEnd: Check = { id: 'run', label: 'the demo ran to the end', pass: false, detail: describe(err).split('\n')[0]! };
  checks.push(...missing, ranToEnd);
} finally {
  clearTimeout(deadline);
}
print();
print(bold(`Checklist (customer_success: ${languages.customer_success}, payments: ${languages.payments})`));
print(checklist(checks));
print(dim(`  (${((Date.now() - startedAt) / 1000).toFixed(1)} s; logs in ${logPath})`));
print(dim('stopping the workers...'));
await stopWorkers();
await running.orchestrator?.stop().catch(() => undefined);
await new Promise<void>((resolve) => log.end(resolve));
process.exit(checks.length > 0 && checks.every((c) => c.pass) ? 0 : 1);
