#!/usr/bin/env node
/**
 * The chaos suite (`pnpm test:chaos`): real processes, real faults, then the invariants.
 *
 * 1. Starts its own PostgreSQL and RabbitMQ (or, with --shared-services, uses the
 *    machine's main ones), two orchestrators (bin/orchestrator.ts, same schema and prefix,
 *    different HTTP ports) and three workers (./worker.ts, handlers that fail transiently
 *    part of the time and record every execution).
 * 2. Creates ~500 tasks of mixed DAG shapes (./templates) over HTTP, spread over the load
 *    window, while it SIGKILLs orchestrators and workers at random moments (restarting
 *    each after a short pause) and restarts RabbitMQ and PostgreSQL once each.
 * 3. Waits until every task is terminal or the bound passes, then checks the invariants
 *    (./checks.ts) from the audit tables and the handlers' records, prints one summary
 *    line per figure and writes the JSON report.
 * Every child is killed and the services are torn down (or, shared, left running) at the
 * end, also on errors and Ctrl-C. Exit: 0 all invariants hold; 1 an invariant broke; 2 the
 * time bound was hit; 3 the run could not be set up; 130 interrupted.
 *
 * See ./README.md for the options.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import amqp from 'amqplib';
import pg from 'pg';
import { coreTopology, namespaceTopology, names } from '@tasker/protocol';
import { Children, type Child } from './children.ts';
import { httpUp, planFaults, prng, runFaults, type Fault, type FaultKind } from './chaos.ts';
import { evidenceFor, runChecks, type CheckResult, type Violation } from './checks.ts';
import { portOpen, say, setRunnerLog, sleep, waitUntil } from './exec.ts';
import { runLoad, type LoadResult } from './load.ts';
import { recoveries, summaryLines, type FaultRecovery } from './report.ts';
import { DedicatedServices, SharedServices, type Services } from './services.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, '../..');
const TEMPLATES = ['linear', 'diamond', 'fan_out_in', 'tree'];
/** Time kept at the end of the bound for the checks, the evidence and the teardown. */
const RESERVE_MS = 75_000;

const USAGE = `usage: tsx test/chaos/run.ts [options]

  --json PATH               where to write the JSON report (default test/chaos/out/chaos-<timestamp>.json)
  --tasks N                 tasks to create (default 500)
  --spread-ms MS            window over which they are created (default 100000; faults happen in its first 75 %)
  --max-ms MS               hard bound on the whole run (default 480000)
  --orchestrator-kills N    SIGKILLs of an orchestrator (default 4)
  --worker-kills N          SIGKILLs of a worker (default 6)
  --rabbitmq-restarts N     (default 1)
  --postgres-restarts N     (default 1)
                            fewer than 3 / 5 / 1 / 1 survived fails the run (an invariant)
  --workers N               worker processes (default 3)
  --concurrency N           steps one worker runs at once (default 20)
  --fail-rate R             share of executions that fail transiently (default 0.15)
  --hang-rate R             share of executions that hang until their timeout (default 0.005)
  --seed N                  seed of the fault plan (default: random; printed)
  --shared-services         use the machine's main PostgreSQL and RabbitMQ (TASKER_DATABASE_URL,
                            TASKER_AMQP_URL) and restart them: only where nothing else uses them (CI)
  --pg-port N, --amqp-port N, --dist-port N
                            ports of the dedicated instances (default 5433, 5673, 25673)
  --keep                    keep the dedicated services' folder (and, shared, the schemas and queues)
  --help`;

interface Options {
  json: string | undefined;
  tasks: number;
  spreadMs: number;
  maxMs: number;
  orchestratorKills: number;
  workerKills: number;
  rabbitmqRestarts: number;
  postgresRestarts: number;
  workers: number;
  concurrency: number;
  failRate: number;
  hangRate: number;
  seed: number;
  sharedServices: boolean;
  pgPort: number;
  amqpPort: number;
  distPort: number;
  keep: boolean;
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      json: { type: 'string' },
      tasks: { type: 'string' },
      'spread-ms': { type: 'string' },
      'max-ms': { type: 'string' },
      'orchestrator-kills': { type: 'string' },
      'worker-kills': { type: 'string' },
      'rabbitmq-restarts': { type: 'string' },
      'postgres-restarts': { type: 'string' },
      workers: { type: 'string' },
      concurrency: { type: 'string' },
      'fail-rate': { type: 'string' },
      'hang-rate': { type: 'string' },
      seed: { type: 'string' },
      'shared-services': { type: 'boolean', default: false },
      'pg-port': { type: 'string' },
      'amqp-port': { type: 'string' },
      'dist-port': { type: 'string' },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const num = (name: string, v: string | undefined, fallback: number, min: number, max: number): number => {
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) {
      console.error(`--${name} must be a number from ${min} to ${max}; got '${v}'`);
      process.exit(3);
    }
    return n;
  };
  return {
    json: values.json,
    tasks: num('tasks', values.tasks, 500, 1, 100_000),
    spreadMs: num('spread-ms', values['spread-ms'], 100_000, 0, 3_600_000),
    maxMs: num('max-ms', values['max-ms'], 480_000, 60_000, 24 * 3_600_000),
    orchestratorKills: num('orchestrator-kills', values['orchestrator-kills'], 4, 0, 100),
    workerKills: num('worker-kills', values['worker-kills'], 6, 0, 100),
    rabbitmqRestarts: num('rabbitmq-restarts', values['rabbitmq-restarts'], 1, 0, 10),
    postgresRestarts: num('postgres-restarts', values['postgres-restarts'], 1, 0, 10),
    workers: num('workers', values.workers, 3, 1, 20),
    concurrency: num('concurrency', values.concurrency, 20, 1, 1000),
    failRate: num('fail-rate', values['fail-rate'], 0.15, 0, 0.9),
    hangRate: num('hang-rate', values['hang-rate'], 0.005, 0, 0.5),
    seed: num('seed', values.seed, Math.floor(Math.random() * 2 ** 31), 0, 2 ** 32 - 1),
    sharedServices: values['shared-services'] ?? false,
    pgPort: num('pg-port', values['pg-port'], 5433, 1, 65535),
    amqpPort: num('amqp-port', values['amqp-port'], 5673, 1, 65535),
    distPort: num('dist-port', values['dist-port'], 25673, 1, 65535),
    keep: values.keep ?? false,
  };
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolvePort(port));
    });
  });
}

type ExitReason = 'ok' | 'invariants' | 'bound' | 'setup' | 'interrupted';
const EXIT_CODES: Record<ExitReason, number> = { ok: 0, invariants: 1, bound: 2, setup: 3, interrupted: 130 };

const opts = parseOptions();
const startedAt = Date.now();
const stamp = new Date(startedAt).toISOString().replace(/[:.]/g, '-');
const outRoot = join(REPO, 'test/chaos/out');
const outDir = join(outRoot, `chaos-${stamp}`);
const jsonPath = resolve(opts.json ?? join(outRoot, `chaos-${stamp}.json`));
mkdirSync(outDir, { recursive: true });
mkdirSync(dirname(jsonPath), { recursive: true });
setRunnerLog(join(outDir, 'runner.log'));

const suffix = `${stamp.slice(0, 10).replace(/-/g, '')}_${Math.random().toString(36).slice(2, 8).replace(/[^a-z0-9]/g, 'x')}`;
const schema = `chaos_${suffix}`;
const executionsSchema = `chaos_${suffix}_handlers`;
const prefix = `chaos_${suffix}`;
const random = prng(opts.seed);
/** The run's own API token (the orchestrators refuse unauthenticated API calls). */
const apiToken = randomBytes(24).toString('hex');

const services: Services = opts.sharedServices
  ? new SharedServices()
  : new DedicatedServices({ pgPort: opts.pgPort, amqpPort: opts.amqpPort, distPort: opts.distPort });
const children = new Children(REPO, outDir, () => servicesAnswer(60_000));
const abort = new AbortController();
// Every request of the load listens to it.
setMaxListeners(0, abort.signal);
let exitReason: ExitReason | null = null;
const setReason = (r: ExitReason): void => {
  // The first reason wins, except that a broken invariant never hides behind "ok".
  if (exitReason === null || exitReason === 'ok') exitReason = r;
};

// State gathered along the way, for the report.
let load: LoadResult | null = null;
const faults: Fault[] = [];
let checks: CheckResult | null = null;
let setupError: string | null = null;
let stuckDiagnostics: unknown = null;
const orchestrators: Child[] = [];
const workers: Child[] = [];
const orchestratorUrls = new Map<Child, string>();

let interrupts = 0;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    interrupts += 1;
    if (interrupts === 1) {
      say(`${signal}: stopping the run; children are stopped and the services torn down (again to kill everything now)`);
      setReason('interrupted');
      abort.abort();
    } else {
      children.killAll();
      process.exit(130);
    }
  });
}

// The hard bound: whatever is going on, the run ends.
const hardStop = setTimeout(() => {
  say(`the hard bound of ${opts.maxMs} ms is over: killing every child and leaving`);
  setReason('bound');
  children.killAll();
  void Promise.race([services.teardown({ keep: opts.keep }), sleep(30_000)]).finally(() => {
    writeReport();
    process.exit(EXIT_CODES.bound);
  });
}, opts.maxMs);
hardStop.unref();

const pool = new pg.Pool({ connectionString: services.databaseUrl, max: 3, connectionTimeoutMillis: 3000 });
pool.on('error', () => undefined);

/** Waits (at most `timeoutMs`) until PostgreSQL answers a query and RabbitMQ accepts connections. */
async function servicesAnswer(timeoutMs: number): Promise<void> {
  const amqpPort = Number(new URL(services.amqpUrl).port || 5672);
  await waitUntil(async () => {
    await pool.query('SELECT 1');
    return portOpen(amqpPort);
  }, timeoutMs, 500);
}

async function setupDatabase(): Promise<void> {
  await pool.query(`CREATE SCHEMA IF NOT EXISTS "${executionsSchema}"`);
  await pool.query(`
    CREATE TABLE IF NOT EXISTS "${executionsSchema}".chaos_executions (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      step_id text NOT NULL,
      task_id text NOT NULL,
      task_name text NOT NULL,
      step_name text NOT NULL,
      attempt int NOT NULL,
      max_attempts int NOT NULL,
      pid int NOT NULL,
      worker text NOT NULL,
      fate text NOT NULL,
      started_at timestamptz NOT NULL,
      recorded_at timestamptz NOT NULL
    )`);
  await pool.query(`CREATE INDEX IF NOT EXISTS chaos_executions_step ON "${executionsSchema}".chaos_executions (step_id, attempt)`);
}

function startOrchestrator(name: string, port: number): Child {
  const c = children.add({
    name,
    script: join(REPO, 'packages/orchestrator/src/bin/orchestrator.ts'),
    env: {
      ...process.env,
      TASKER_DATABASE_URL: services.databaseUrl,
      TASKER_DB_SCHEMA: schema,
      TASKER_AMQP_URL: services.amqpUrl,
      TASKER_AMQP_PREFIX: prefix,
      TASKER_HTTP_HOST: '127.0.0.1',
      TASKER_HTTP_PORT: String(port),
      TASKER_TEMPLATES_DIR: join(HERE, 'templates'),
      TASKER_API_TOKENS: JSON.stringify([{ name: 'chaos-suite', token: apiToken, namespaces: ['*'], actions: ['admin'] }]),
      // Recovery windows short enough for a run of a few minutes (defaults: 5 s, 1 s, 5 min, 10 s).
      TASKER_OUTBOX_STALE_MS: '2000',
      TASKER_OUTBOX_SWEEP_MS: '500',
      TASKER_REDISPATCH_AFTER_MS: '15000',
      TASKER_WATCHDOG_INTERVAL_MS: '2000',
      // The second orchestrator packs steps released together (`steps` messages), the first
      // sends each alone: the workers get both kinds, through every fault.
      TASKER_STEPS_PER_MESSAGE: process.env['TASKER_STEPS_PER_MESSAGE'] ?? (name.endsWith('-b') ? '16' : '1'),
      TASKER_LOG_LEVEL: process.env['CHAOS_LOG_LEVEL'] ?? 'info',
    },
  });
  orchestratorUrls.set(c, `http://127.0.0.1:${port}`);
  orchestrators.push(c);
  return c;
}

function startWorker(name: string): Child {
  const c = children.add({
    name,
    script: join(HERE, 'worker.ts'),
    env: {
      ...process.env,
      TASKER_AMQP_URL: services.amqpUrl,
      TASKER_AMQP_PREFIX: prefix,
      TASKER_LOG_LEVEL: process.env['CHAOS_LOG_LEVEL'] ?? 'info',
      CHAOS_DATABASE_URL: services.databaseUrl,
      CHAOS_EXECUTIONS_SCHEMA: executionsSchema,
      CHAOS_WORKER_NAME: name,
      CHAOS_CONCURRENCY: String(opts.concurrency),
      CHAOS_FAIL_RATE: String(opts.failRate),
      CHAOS_HANG_RATE: String(opts.hangRate),
    },
  });
  workers.push(c);
  return c;
}

/** Resolves when `up` says true; throws when it says false or the child exits first (with its last lines). */
async function startedOrFailed(c: Child, up: Promise<boolean>, what: string): Promise<void> {
  const exited = new Promise<'exited'>((resolveExit) => {
    const t = setInterval(() => {
      if (!c.running) {
        clearInterval(t);
        resolveExit('exited');
      }
    }, 200);
    void up.finally(() => clearInterval(t));
  });
  const r = await Promise.race([up, exited]);
  if (r === true) return;
  const tail = children.unexpectedExits.filter((e) => e.name === c.name).at(-1)?.tail.slice(-3).join(' | ') ?? '';
  throw new Error(`${c.name} did not ${what}${r === 'exited' ? ': it exited' : ' within 90 s'} (see ${c.name}.log)${tail ? `: ${tail.slice(0, 600)}` : ''}`);
}

async function liveTasks(): Promise<{ in_progress: number; complete: number; error: number; executions: number } | null> {
  try {
    const { rows } = await pool.query<{ in_progress: number; complete: number; error: number; executions: number }>(
      `SELECT count(*) FILTER (WHERE state = 'in_progress')::int AS in_progress,
              count(*) FILTER (WHERE state = 'complete')::int AS complete,
              count(*) FILTER (WHERE state = 'error')::int AS error,
              (SELECT count(*)::int FROM "${executionsSchema}".chaos_executions) AS executions
       FROM "${schema}".tasks`,
    );
    return rows[0] ?? null;
  } catch {
    return null; // Postgres is restarting
  }
}

async function main(): Promise<void> {
  say(`chaos run ${stamp}: ${opts.tasks} tasks over ${opts.spreadMs} ms; seed ${opts.seed}; logs in ${outDir}`);
  say(
    `faults: ${opts.orchestratorKills} orchestrator kills, ${opts.workerKills} worker kills, ${opts.rabbitmqRestarts} RabbitMQ restart(s), ${opts.postgresRestarts} PostgreSQL restart(s); bound ${opts.maxMs} ms`,
  );

  // 1. Services and processes --------------------------------------------------------------
  say(opts.sharedServices ? 'using the machine\'s main PostgreSQL and RabbitMQ (--shared-services)' : 'starting the dedicated PostgreSQL and RabbitMQ');
  await services.start();
  say(`services up: ${JSON.stringify(services.describe())}`);
  await setupDatabase();
  if (abort.signal.aborted) return;

  const ports = [await freePort(), await freePort()];
  for (const [i, port] of ports.entries()) {
    const c = startOrchestrator(`orchestrator-${'ab'[i]}`, port);
    c.start();
    // One at a time: the first one migrates the schema and declares the topology.
    await startedOrFailed(c, httpUp(orchestratorUrls.get(c)!, 90_000), `answer on port ${port}`);
    say(`${c.name} up on port ${port} (pid ${c.pid})`);
  }
  await Promise.all(
    Array.from({ length: opts.workers }, async (_, i) => {
      const c = startWorker(`worker-${i + 1}`);
      const consuming = c.waitForLine((l) => l.includes('worker consuming'), 90_000);
      c.start();
      await startedOrFailed(c, consuming, 'start consuming');
      say(`${c.name} consuming (pid ${c.pid})`);
    }),
  );
  if (abort.signal.aborted) return;
  children.startRestarting();

  // 2. Load and faults ---------------------------------------------------------------------
  const plan = planFaults(
    {
      orchestratorKills: opts.orchestratorKills,
      workerKills: opts.workerKills,
      rabbitmqRestarts: opts.rabbitmqRestarts,
      postgresRestarts: opts.postgresRestarts,
      // Faults run one after the other and a restart takes seconds, so they slip: the
      // window ends well before the load does, so that the last ones still hit live work.
      fromMs: Math.min(5000, opts.spreadMs / 10),
      toMs: Math.max(opts.spreadMs * 0.75, 10_000),
    },
    random,
  );
  say(`fault plan: ${plan.map((p) => `${p.kind}@${(p.plannedAtMs / 1000).toFixed(1)}s`).join(', ')}`);
  const loadStartedAt = Date.now();
  let created = 0;
  const ticker = setInterval(() => {
    void liveTasks().then((t) =>
      say(
        `progress: created ${created}/${opts.tasks}; ${
          t ? `complete ${t.complete}, in progress ${t.in_progress}, error ${t.error}, executions ${t.executions}` : 'database unavailable'
        }; faults ${faults.length}/${plan.length}`,
      ),
    );
  }, 10_000);
  try {
    const loadPromise = runLoad(
      {
        tasks: opts.tasks,
        spreadMs: opts.spreadMs,
        concurrency: 16,
        baseUrls: [...orchestratorUrls.values()],
        token: apiToken,
        keyPrefix: `chaos-${suffix}`,
        templates: TEMPLATES,
        giveUpMs: 90_000,
        signal: abort.signal,
      },
      (n) => (created = n),
    );
    const faultsPromise = runFaults(plan, loadStartedAt, {
      orchestrators,
      workers,
      services,
      orchestratorUp: (c) => httpUp(orchestratorUrls.get(c)!, 60_000),
      tasksInProgress: async () => (await liveTasks())?.in_progress ?? null,
      random,
      signal: abort.signal,
    }, faults);
    const [l] = await Promise.all([loadPromise, faultsPromise]);
    load = l;
    say(
      `load done: ${l.taskIds.size}/${l.requested} tasks created in ${l.finishedAt - l.startedAt} ms (${l.retriedRequests} requests retried, ${l.replays} idempotent replays, ${l.failures.length} failures)`,
    );
    for (const f of l.failures.slice(0, 5)) say(`  creation of ${f.key} failed: ${f.error}`);

    // 3. Wait until every task is terminal, or the bound --------------------------------------
    const waitUntil = startedAt + opts.maxMs - RESERVE_MS;
    say(`waiting for every task to be terminal (at most ${Math.round((waitUntil - Date.now()) / 1000)} s)`);
    for (;;) {
      if (abort.signal.aborted) return;
      const t = await liveTasks();
      if (t && t.in_progress === 0) {
        say(`every task is terminal: ${t.complete} complete, ${t.error} in error`);
        break;
      }
      if (Date.now() >= waitUntil) {
        say(`BOUND: ${t ? t.in_progress : '?'} tasks still in progress when the wait ended`);
        setReason('bound');
        stuckDiagnostics = await fetchStuck();
        break;
      }
      await sleep(1000, abort.signal);
    }
  } finally {
    clearInterval(ticker);
  }
}

async function fetchStuck(): Promise<unknown> {
  for (const url of orchestratorUrls.values()) {
    try {
      const r = await fetch(`${url}/v1/diagnostics/stuck`, {
        headers: { authorization: `Bearer ${apiToken}` },
        signal: AbortSignal.timeout(5000),
      });
      if (r.ok) return await r.json();
    } catch {
      // try the other one
    }
  }
  return null;
}

/** Lines of the children's logs that mention any of the ids. */
function logLinesFor(ids: string[], limit = 40): string[] {
  const out: string[] = [];
  for (const c of children.all) {
    const file = join(outDir, `${c.name}.log`);
    if (!existsSync(file)) continue;
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (ids.some((id) => line.includes(id))) out.push(`[${c.name}] ${line}`);
      if (out.length >= limit) return out;
    }
  }
  return out;
}

async function gatherEvidence(violations: Violation[]): Promise<unknown[]> {
  const client = await pool.connect();
  try {
    const ctx = { db: client as unknown as pg.Client, schema, executionsSchema, createdTaskIds: [], requested: 0 };
    const byInvariant = new Map<string, Violation[]>();
    for (const v of violations) byInvariant.set(v.invariant, [...(byInvariant.get(v.invariant) ?? []), v]);
    const out: unknown[] = [];
    for (const [, vs] of byInvariant) {
      for (const v of vs.slice(0, 3)) {
        const rows = await evidenceFor(ctx, v);
        const ids = [v.task_id, v.step_id].filter((x): x is string => !!x);
        out.push({ violation: v, ...rows, log_lines: logLinesFor(ids) });
      }
    }
    return out;
  } finally {
    client.release();
  }
}

let evidence: unknown[] = [];
let recovery: FaultRecovery[] = [];
let reportWritten = false;

function invariantList(): Array<{ invariant: string; ok: boolean; violations: number }> {
  const names = [
    'every task requested was created',
    'every task created is in the database',
    'every task reached complete',
    'every step has exactly one transition into complete',
    'every task has at most one transition into complete',
    'attempts never exceed max_attempts',
    'no step dispatched and then forgotten',
    'every completion was executed and recorded by a handler',
    'no step is enqueued before its dependencies completed',
    "each step's transitions form one chain",
  ];
  const vs = checks?.violations ?? [];
  const list = names.map((n) => {
    const k = vs.filter((v) => v.invariant === n).length;
    return { invariant: n, ok: checks !== null && k === 0, violations: k };
  });
  list.push({ invariant: 'no process exited by itself', ok: children.unexpectedExits.length === 0, violations: children.unexpectedExits.length });
  list.push({ invariant: 'every fault was inflicted and recovered from', ok: faults.every((f) => !f.error), violations: faults.filter((f) => f.error).length });
  const short = (Object.keys(MINIMUM_FAULTS) as FaultKind[]).filter((k) => killCounts(k) < MINIMUM_FAULTS[k]);
  list.push({
    invariant: 'at least 3 orchestrator kills, 5 worker kills, 1 RabbitMQ and 1 PostgreSQL restart were survived',
    ok: short.length === 0,
    violations: short.length,
  });
  return list;
}

/** What the suite must inflict to count as a chaos run (issue 3); fewer (by option) fails the run. */
const MINIMUM_FAULTS: Record<FaultKind, number> = { orchestrator_kill: 3, worker_kill: 5, rabbitmq_restart: 1, postgres_restart: 1 };

function killCounts(kind: FaultKind): number {
  return faults.filter((f) => f.kind === kind && !f.error).length;
}

function writeReport(): void {
  if (reportWritten) return;
  reportWritten = true;
  const f = checks?.figures;
  const elapsed = Date.now() - startedAt;
  const longest = recovery.reduce((m, r) => Math.max(m, r.stall_ms ?? 0), 0);
  const report = {
    ok: exitReason === 'ok',
    exit_reason: exitReason,
    tasks: f?.tasks ?? null,
    completed: f?.completed ?? null,
    lost: f?.lost ?? null,
    duplicate_completions: f?.duplicate_completions ?? null,
    duplicate_handler_executions: f?.duplicate_handler_executions ?? null,
    attempts_over_max: f?.attempts_over_max ?? null,
    kills: {
      orchestrator: killCounts('orchestrator_kill'),
      worker: killCounts('worker_kill'),
      rabbitmq_restart: killCounts('rabbitmq_restart'),
      postgres_restart: killCounts('postgres_restart'),
    },
    longest_recovery_ms: longest,
    elapsed_ms: elapsed,
    figures: f ?? null,
    invariants: invariantList(),
    faults: (recovery.length > 0 ? recovery : faults).map((x) => ({
      ...x,
      at_iso: new Date(x.at).toISOString(),
      at_run_ms: x.at - startedAt,
      back_after_ms: x.backAt === null ? null : x.backAt - x.at,
    })),
    load: load && {
      requested: load.requested,
      created: load.taskIds.size,
      by_template: load.byTemplate,
      retried_requests: load.retriedRequests,
      idempotent_replays: load.replays,
      failures: load.failures,
      duration_ms: load.finishedAt - load.startedAt,
    },
    unexpected_exits: children.unexpectedExits,
    processes: children.all.map((c) => ({ name: c.name, starts: c.starts, pids: c.pids })),
    violations: (checks?.violations ?? []).slice(0, 100),
    violations_total: checks?.violations.length ?? 0,
    evidence,
    stuck_diagnostics: stuckDiagnostics,
    setup_error: setupError,
    options: opts,
    run: { schema, executions_schema: executionsSchema, amqp_prefix: prefix, services: services.describe(), log_dir: outDir, git: gitState() },
  };
  writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
}

/** The commit under test, and whether the working tree differed from it (the code that ran). */
function gitState(): { commit: string | null; changed_files: number | null } {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: REPO }).toString().trim();
    const changed = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: REPO }).toString().trim();
    return { commit, changed_files: changed ? changed.split('\n').length : 0 };
  } catch {
    return { commit: null, changed_files: null };
  }
}

async function dropSharedLeftovers(): Promise<void> {
  // Only for --shared-services: the run's schemas and queues on the machine's services.
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await pool.query(`DROP SCHEMA IF EXISTS "${executionsSchema}" CASCADE`);
  const n = names(prefix);
  const conn = await amqp.connect(services.amqpUrl);
  try {
    const ch = await conn.createChannel();
    for (const t of [coreTopology(n), namespaceTopology(n, 'chaos')]) {
      for (const q of t.queues) await ch.deleteQueue(q.name);
      for (const e of t.exchanges) await ch.deleteExchange(e.name);
    }
    await ch.close();
  } finally {
    await conn.close();
  }
}

try {
  await main();
} catch (err) {
  setupError = (err as Error).message;
  say(`SETUP FAILED: ${setupError}`);
  setReason('setup');
}

// 4. Checks (whenever the database can answer) ------------------------------------------------
if (exitReason !== 'setup' && exitReason !== 'interrupted') {
  try {
    await services.ensureUp();
    // Set inside main(); TypeScript's flow analysis does not see through the await.
    const loaded = load as LoadResult | null;
    const client = await pool.connect();
    try {
      checks = await runChecks({
        db: client as unknown as pg.Client,
        schema,
        executionsSchema,
        createdTaskIds: loaded ? [...loaded.taskIds.values()] : [],
        requested: loaded?.requested ?? opts.tasks,
      });
    } finally {
      client.release();
    }
    recovery = recoveries(faults, checks.completionTimes);
    if (invariantList().some((i) => !i.ok)) setReason('invariants');
    if (checks.violations.length > 0) evidence = await gatherEvidence(checks.violations);
    setReason('ok');
  } catch (err) {
    say(`CHECKS FAILED to run: ${(err as Error).message}`);
    setupError = `checks failed to run: ${(err as Error).message}`;
    setReason('setup');
  }
}

// 5. Teardown --------------------------------------------------------------------------------
say('stopping every child');
await children.stopAll(5000);
if (services.kind === 'shared' && !opts.keep && exitReason === 'ok') {
  await dropSharedLeftovers().catch((err: Error) => say(`could not drop the run's schemas and queues: ${err.message}`));
}
await pool.end().catch(() => undefined);
services.collectLogs(outDir);
await services.teardown({ keep: opts.keep }).catch((err: Error) => say(`teardown: ${err.message}`));
clearTimeout(hardStop);

// 6. Report ----------------------------------------------------------------------------------
writeReport();
const f = checks?.figures;
const lines = summaryLines([
  ['tasks', f?.tasks ?? 'n/a'],
  ['completed', f?.completed ?? 'n/a'],
  ['lost', f?.lost ?? 'n/a'],
  ['tasks in error', f?.tasks_in_error ?? 'n/a'],
  ['duplicate completions (must be 0)', f?.duplicate_completions ?? 'n/a'],
  ['duplicate handler executions (allowed)', f ? `${f.duplicate_handler_executions} (${f.duplicate_execution_pairs} step attempts)` : 'n/a'],
  ['attempts over max_attempts', f?.attempts_over_max ?? 'n/a'],
  ['forgotten steps', f?.forgotten_steps ?? 'n/a'],
  ['completions without a handler record', f?.completions_without_execution ?? 'n/a'],
  ['dependency order violations', f?.dependency_order_violations ?? 'n/a'],
  ['audit chain breaks', f?.audit_chain_breaks ?? 'n/a'],
  ['steps', f?.steps ?? 'n/a'],
  ['handler executions', f ? `${f.handler_executions} ${JSON.stringify(f.executions_by_fate)}` : 'n/a'],
  ['retries / timeouts / re-dispatches', f ? `${f.retries} / ${f.timeouts} / ${f.redispatches}` : 'n/a'],
  ['highest attempt', f?.highest_attempt ?? 'n/a'],
  ['orchestrator kills', killCounts('orchestrator_kill')],
  ['worker kills', killCounts('worker_kill')],
  ['rabbitmq restarts', killCounts('rabbitmq_restart')],
  ['postgres restarts', killCounts('postgres_restart')],
  ['unexpected process exits', children.unexpectedExits.length],
  ['longest recovery ms', recovery.reduce((m, r) => Math.max(m, r.stall_ms ?? 0), 0)],
  ['elapsed ms', Date.now() - startedAt],
]);
console.log('');
for (const l of lines) console.log(l);
console.log('');
for (const r of recovery) {
  console.log(
    `chaos: fault ${r.kind.padEnd(17)} ${r.target.padEnd(15)} at +${((r.at - startedAt) / 1000).toFixed(1)}s (${r.tasksInProgress ?? '?'} tasks in progress): stall ${r.stall_ms} ms, first completion ${
      r.first_completion_after_back_ms ?? 'n/a'
    } ms after back${r.error ? `; ERROR ${r.error}` : ''}`,
  );
}
if (checks) for (const inv of invariantList()) console.log(`chaos: ${inv.ok ? 'PASS' : 'FAIL'} ${inv.invariant}${inv.ok ? '' : ` (${inv.violations})`}`);
for (const v of (checks?.violations ?? []).slice(0, 10)) console.log(`chaos:   ${v.invariant}: task ${v.task_id} step ${v.step_id}: ${v.detail}`);
if (checks) {
  // The plain closing line CI reads: invariants passed and failed.
  const inv = invariantList();
  console.log(`chaos: ${inv.filter((i) => i.ok).length} passed, ${inv.filter((i) => !i.ok).length} failed`);
}
console.log(`chaos: report ${jsonPath}`);
console.log(`chaos: logs ${outDir}`);
console.log(`chaos: ${exitReason === 'ok' ? 'PASSED' : `FAILED (${exitReason}${setupError ? `: ${setupError}` : ''})`}`);
process.exit(EXIT_CODES[exitReason ?? 'setup']);
