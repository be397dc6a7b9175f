// Tasker's benchmark harness (issue 7). One invocation measures, in order and in the same
// conditions: Tasker's throughput on the diamond workload, its per-step overhead, task
// creation over HTTP and AMQP, the raw broker and database limits, the peers on the same
// workload, memory with many tasks in flight and with 1 vs 2 orchestrators, and the
// per-step overhead of each language's worker runtime (issue 4).
// `pnpm bench --help` lists the options; bench/README.md explains every figure.
import { CREATION_LEGS, LEGS, isResultBatchStatement, legsTable, summarizeCreation, summarizeTimeline } from './timeline-summary.ts';
import { mkdirSync, writeFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { measureWorkerOverhead } from '@tasker/conformance';
import { ensureDatabase } from '@tasker/orchestrator';
import pino from 'pino';
import { createDatabase, dropDatabase, withDatabase } from './cleanup.ts';
import { describeIdle, describeMachine, durabilitySettings, pgWalBetween, pgWalMark } from './machine.ts';
import { LANGUAGES, parseOptions, USAGE, type Options, type PeerName, type Section } from './options.ts';
import { medianRun, type PeerContext, type PeerResult } from './peers/common.ts';
import { allChildren, spawnChild } from './proc.ts';
import { heading, table } from './report.ts';
import { pgCas, twoHop, type CasResult, type TwoHopResult } from './sections/limit.ts';
import { LANGUAGE_LABELS, prepareWorker, skipped, WORKER_CONCURRENCY, type LanguageFigures, type RustBuild } from './sections/languages.ts';
import {
  creationRates,
  HTTP_BATCH_CONCURRENCY,
  HTTP_BATCH_SIZE,
  HTTP_CREATE_CONCURRENCY,
  diamondThroughput,
  linearOverhead,
  memoryInFlight,
  warmUp,
  type CreateResult,
  type MemoryResult,
  type OverheadResult,
  type ThroughputResult,
} from './sections/tasker.ts';
import { TaskerStack } from './tasker-stack.ts';
import { cpuByProcess } from './cpu-by-process.ts';
import { cleanLeftovers, registerRun } from './leftovers.ts';
import { cpuMeter, median, round, runId as makeRunId, waitQuiet } from './util.ts';
import { forceNoDelay } from './experiments.ts';
import { overheadFloor } from './floor.ts';

const BENCH_DIR = dirname(dirname(fileURLToPath(import.meta.url)));
const REPO_DIR = dirname(BENCH_DIR);

const say = (s: string) => process.stdout.write(`${s}\n`);
const note = (s: string) => process.stderr.write(`${s}\n`);

let parsed: Options | 'help';
try {
  parsed = parseOptions(process.argv.slice(2), join(BENCH_DIR, 'out'));
} catch (err) {
  note((err as Error).message);
  process.exit(2);
}
if (parsed === 'help') {
  say(USAGE);
  process.exit(0);
}
const opts: Options = parsed;
// The AMQP task requester of the creation section is Tasker's client: same what-if.
if (opts.nodelay) forceNoDelay();
const runId = makeRunId();
const outDir = resolve(opts.outDir, `run-${new Date().toISOString().replace(/[:.]/g, '-')}-${runId}`);
mkdirSync(outDir, { recursive: true });
const startedAt = Date.now();
const deadlineFor = () => Date.now() + opts.sizes.sectionTimeoutMs;

/** Cleanups still owed (stacks to stop, databases to drop, Redis to restore): run on any exit path. */
const cleanups = new Map<string, () => Promise<unknown>>();
async function runCleanups(): Promise<void> {
  for (const [name, fn] of [...cleanups.entries()].reverse()) {
    try {
      await fn();
    } catch (err) {
      note(`cleanup '${name}' failed: ${(err as Error).message}`);
    }
    cleanups.delete(name);
  }
}
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    note(`\n${signal}: stopping the bench's processes and cleaning up (again to exit at once)`);
    const hard = setTimeout(() => process.exit(130), 30_000);
    hard.unref();
    void runCleanups()
      .then(() => Promise.all([...allChildren].map((c) => c.stop(5000))))
      .then(() => unregisterRun())
      .finally(() => process.exit(130));
  });
}

const errors: Array<{ section: string; error: string }> = [];
async function attempt<T>(section: string, fn: () => Promise<T>): Promise<T | null> {
  try {
    return await fn();
  } catch (err) {
    const message = (err as Error).message ?? String(err);
    errors.push({ section, error: message });
    note(`  ${section} failed: ${message}`);
    return null;
  }
}
const wants = (s: Section) => opts.sections.has(s);

/** How busy the machine was before (when waiting for quiet) and during each measurement, in % of all CPUs. */
const cpuBusy: Record<string, { before_pct: number | null; during_pct: number }> = {};
/** Where the CPU went during each measurement, in % of one core (two cores: 200 % in all). */
const cpuShares: Record<string, Record<string, number>> = {};
async function measured<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const before = opts.waitQuietSec > 0 ? await waitQuiet(30, opts.waitQuietSec * 1000) : null;
  const meter = cpuMeter();
  const shares = cpuByProcess();
  try {
    return await fn();
  } finally {
    cpuBusy[label] = { before_pct: before, during_pct: meter() };
    cpuShares[label] = shares();
  }
}
const sharesLine = (label: string, during = 'it') =>
  cpuShares[label]
    ? `  CPU during ${during}, % of one core (2 cores = 200): ${Object.entries(cpuShares[label]!)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`
    : '';

function reachable(url: string, port: number): Promise<boolean> {
  const u = new URL(url);
  return new Promise((res) => {
    const s = new Socket();
    const done = (ok: boolean) => {
      s.destroy();
      res(ok);
    };
    s.setTimeout(1500, () => done(false));
    s.once('error', () => done(false));
    s.connect(Number(u.port || port), u.hostname, () => done(true));
  });
}

// ---------------------------------------------------------------------------------------
// A fresh machine has no `tasker` database yet; the orchestrator would create it, but the
// harness cleans up and reads the server's settings before any orchestrator starts.
await ensureDatabase(opts.databaseUrl, pino({ level: 'warn' }));
const redisUp = await reachable(opts.redisUrl, 6379);
const leftover = redisUp ? await import('./peers/redis-durability.ts').then((m) => m.restoreLeftover()) : null;
if (leftover) note(leftover);
for (const line of await cleanLeftovers()) note(line);
const unregisterRun = registerRun({ runId, pid: process.pid, databaseUrl: opts.databaseUrl, amqpUrl: opts.amqpUrl, redisUrl: opts.redisUrl });

const machine = await describeMachine(opts.databaseUrl, opts.amqpUrl, redisUp ? opts.redisUrl : null);
const durability = await durabilitySettings(opts.databaseUrl);
const templatesDir = join(BENCH_DIR, 'templates');

say(heading(`Tasker benchmark (${opts.mode}) ${new Date().toISOString()}`));
say(`machine: ${machine.nproc} cores, ${machine.cpu_model}; Node ${machine.node}; PostgreSQL ${machine.postgres}; RabbitMQ ${machine.rabbitmq}; Redis ${machine.redis ?? 'unreachable'}`);
say(
  `machine probes: wake-up round trip ${machine.probes.wakeup_round_trip_us_p50} µs p50 (a byte to another process and back), ` +
    `CPU loop ${machine.probes.cpu_loop_ms} ms, 8 kB write + fdatasync ${machine.probes.fdatasync_us_p50} µs p50; ` +
    `idle CPUs: ${describeIdle(machine.cpu_idle)}`,
);
say(`code: commit ${machine.source.commit}, ${machine.source.changed_under_packages} files under packages/ changed from it (the tree is shared and moving)`);
say(`load average at start: ${machine.load_average.join(' ')} (other work on this machine shows in every figure; compare ratios of one run)`);
// The step queues' type, and the results queue's where it differs (--results-queue-type).
const queuesLabel = opts.resultsQueueType === opts.queueType ? opts.queueType : `${opts.queueType} step, ${opts.resultsQueueType} results`;
say(`Tasker durable settings: persistent messages, durable ${queuesLabel} queues, Postgres fsync=${durability.fsync} synchronous_commit=${durability.synchronous_commit}`);
say(`Tasker: at most ${opts.stepsPerMessage} step(s) per step message (TASKER_STEPS_PER_MESSAGE=${opts.stepsPerMessage}; the orchestrator's default is 1); at most ${opts.requestsPerMessage} task request(s) per AMQP message (the requester's maxRequestsPerMessage)`);
say(`worker concurrency ${opts.concurrency} for every system; run id ${runId}; logs in ${outDir}`);
if (opts.nodelay) say('WHAT-IF: --nodelay forces TCP_NODELAY on Tasker\'s AMQP sockets (not the code as committed)');

const result: Record<string, unknown> = {
  date: new Date().toISOString(),
  mode: opts.mode,
  queue_type: opts.queueType,
  results_queue_type: opts.resultsQueueType,
  steps_per_message: opts.stepsPerMessage,
  requests_per_message: opts.requestsPerMessage,
  concurrency: opts.concurrency,
  sizes: opts.sizes,
  machine,
  durability: { ...durability, persistent_messages: true, durable_queues: true, queue_type: opts.queueType, results_queue_type: opts.resultsQueueType },
  experiments: opts.nodelay ? ['nodelay'] : [],
  // --prefill: what sections 1-3 found in their tables before measuring (null: empty tables).
  prefill: null,
};

// 1-3: throughput, overhead, creation: one run of Tasker (one orchestrator, one worker) --
let throughput: ThroughputResult | null = null;
let throughputHttp: ThroughputResult | null = null;
let overhead: OverheadResult | null = null;
let create: CreateResult | null = null;
const memory: Record<string, number | null> = {};
if (wants('throughput') || wants('overhead') || wants('create')) {
  say(heading('1-3. Tasker: throughput, per-step overhead, task creation'));
  const profileDir = opts.profile ? join(outDir, 'profiles') : null;
  const stack = await attempt('tasker start', () =>
    TaskerStack.start({
      label: 'main',
      runId,
      queueType: opts.queueType,
      resultsQueueType: opts.resultsQueueType,
      stepsPerMessage: opts.stepsPerMessage,
      requestsPerMessage: opts.requestsPerMessage,
      orchestrators: 1,
      databaseUrl: opts.databaseUrl,
      amqpUrl: opts.amqpUrl,
      templatesDir,
      outDir,
      cpuProfDir: profileDir,
      trace: opts.trace,
      nodelay: opts.nodelay,
      timeline: opts.timeline,
      concurrency: opts.concurrency,
    }, { BENCH_NOTIFY_STEP: 's4' }),
  );
  if (stack) {
    cleanups.set('tasker main run', () => stack.stop());
    if (opts.prefill > 0) {
      const filled = await attempt('prefill', () => stack.prefill(opts.prefill));
      if (filled) {
        result.prefill = filled;
        say(
          `prefilled: ${filled.tasks.toLocaleString('en-US')} finished diamond tasks, ${filled.steps.toLocaleString('en-US')} steps, ` +
            `${filled.transitions.toLocaleString('en-US')} audit rows in ${filled.seconds} s, then VACUUM ANALYZE and CHECKPOINT (sections 1-3 measure on these tables)`,
        );
      }
    }
    if (wants('throughput') && stack.worker) {
      throughput = await attempt('throughput', async () => {
        await warmUp(stack, opts.sizes.warmupTasks, deadlineFor(), 'amqp');
        const t0 = performance.now();
        const { r, before, after, steps } = await measured('throughput', async () => {
          await stack.mark();
          if (opts.profileWindow) await stack.profileStart();
          const before = await pgWalMark(opts.databaseUrl);
          const runs: ThroughputResult[] = [];
          for (let k = 0; k < opts.repeat; k++) runs.push(await diamondThroughput(stack, opts.sizes.throughputTasks, deadlineFor(), 'amqp'));
          const after = await pgWalMark(opts.databaseUrl);
          return { r: medianRun(runs), before, after, steps: Math.max(1, runs.reduce((a, x) => a + x.steps, 0)) };
        });
        const windowSeconds = (performance.now() - t0) / 1000;
        if (opts.profileWindow) {
          // Stopped outside the measured window: writing a profile is work of its own.
          const dir = join(outDir, 'profiles');
          mkdirSync(dir, { recursive: true });
          const files = await stack.profileStop(dir, 'throughput');
          say(`  CPU profiles of the measured runs only (--profile-window): ${files.join(', ')} (summarise with: npx tsx bench/src/profile-summary.ts FILE)`);
        }
        const wal = await pgWalBetween(opts.databaseUrl, before, after);
        const stats = await stack.stats();
        writeFileSync(join(outDir, 'throughput-process-stats.json'), JSON.stringify(stats, null, 2));
        const shares = cpuShares['throughput'] ?? {};
        // With --trace: the orchestrators' own SQL, exactly (the database-wide counters include other clients).
        const traced = Object.entries(stats)
          .filter(([k]) => k.startsWith('orchestrator'))
          .flatMap(([, v]) => (v as { timings: Array<{ key: string; count: number }> }).timings);
        const sqlCount = traced.filter((t) => t.key.startsWith('sql')).reduce((a, t) => a + t.count, 0);
        // Transactions: a BEGIN (alone, or leading a pipelined text), a creation batch and a
        // result batch written from the task cache (each one statement, its own transaction:
        // the prepared result-batch statements of isResultBatchStatement).
        const opensTransaction = (key: string) => {
          const kind = /^sql \/\* ([a-z_:]+) \*\//.exec(key)?.[1];
          return (
            key === 'sql begin' ||
            key.startsWith('sql /* pipelined */ BEGIN') ||
            kind === 'prepared:tasks_create_batch' ||
            (kind !== undefined && kind !== 'pipelined' && isResultBatchStatement(kind))
          );
        };
        const txCount = traced.filter((t) => opensTransaction(t.key)).reduce((a, t) => a + t.count, 0);
        return {
          ...r,
          // CPU time of each process per step over the whole measurement (all repetitions), ms.
          cpu_ms_per_step: Object.fromEntries(Object.entries(shares).map(([k, pct]) => [k, round(((pct / 100) * windowSeconds * 1000) / steps, 3)])),
          ...(opts.trace ? { sql_statements_per_step: round(sqlCount / steps, 2), transactions_per_step: round(txCount / steps, 3) } : {}),
          pg_write_xacts_per_step: round(wal.write_xacts / steps, 3),
          ...(wal.records ? { pg_commits_per_step: round(wal.records.commits / steps, 3), pg_wal_fpi_per_step: round(wal.records.fpi / steps, 3) } : {}),
          pg_wal_bytes_per_step: Math.round(wal.bytes / steps),
          processes: Object.fromEntries(
            Object.entries(stats).map(([k, v]) => {
              const s = v as { cpu_pct_of_one_core: number; event_loop_utilization: number };
              return [k, { cpu_pct_of_one_core: s.cpu_pct_of_one_core, event_loop_utilization: s.event_loop_utilization }];
            }),
          ),
        };
      });
      if (opts.sizes.throughputOverHttp) {
        throughputHttp = await attempt('throughput over HTTP', async () => {
          await warmUp(stack, opts.sizes.warmupTasks, deadlineFor(), 'http');
          return measured('throughput_http', () => diamondThroughput(stack, opts.sizes.throughputTasks, deadlineFor(), 'http'));
        });
      }
      memory.orchestrator_throughput_run = stack.orchestrators[0]?.peakMemoryMb() ?? null;
      memory.worker_throughput_run = stack.worker?.peakMemoryMb() ?? null;
      if (throughput) {
        const p = throughput.processes ?? {};
        say(
          table(
            ['throughput (diamond)', 'tasks', 'steps', 'seconds', 'steps/s', 'create s', 'errors'],
            [throughput, throughputHttp]
              .filter((t): t is ThroughputResult => t !== null)
              .map((t) => [
                `tasker, created ${t.created_via === 'amqp' ? 'with AMQP task requests' : 'over HTTP'}`,
                t.tasks,
                t.steps,
                t.seconds,
                t.steps_per_sec,
                t.create_seconds,
                t.error_tasks + t.failed_requests,
              ]),
          ),
        );
        say(
          `  per step: ${throughput.pg_write_xacts_per_step} Postgres write transactions, ` +
            (throughput.pg_commits_per_step !== undefined ? `${throughput.pg_commits_per_step} commit records, ` : '') +
            `${throughput.pg_wal_bytes_per_step} bytes of WAL` +
            (throughput.pg_wal_fpi_per_step !== undefined ? ` of which ${throughput.pg_wal_fpi_per_step} whole pages` : '') +
            ` (read from the whole server's WAL, other clients included${throughput.pg_commits_per_step === undefined ? '; records not read: pg_walinspect could not be created' : ''})` +
            (throughput.sql_statements_per_step !== undefined
              ? `; traced: ${throughput.sql_statements_per_step} SQL statements and ${throughput.transactions_per_step} transactions per step`
              : '') +
            '; ' +
            Object.entries(p)
              .map(([k, v]) => `${k} ${v.cpu_pct_of_one_core}% of a core, event loop ${Math.round(v.event_loop_utilization * 100)}% busy`)
              .join('; '),
        );
        say(sharesLine('throughput'));
        if (throughput.cpu_ms_per_step) {
          const per = throughput.cpu_ms_per_step;
          const ours = Object.entries(per).filter(([k]) => !k.startsWith('other') && k !== 'kernel workers');
          say(
            `  CPU per step, ms: ${ours.map(([k, v]) => `${k} ${v}`).join(', ')}; together ${round(ours.reduce((a, [, v]) => a + v, 0), 3)} ` +
              `(two cores give 2,000 ms per second: at most ${Math.round(2000 / Math.max(0.001, ours.reduce((a, [, v]) => a + v, 0)))} steps/s at this cost)`,
          );
        }
        if (throughput.samples) say(`  repetitions: ${throughput.samples.join(', ')} steps/s (median shown)`);
        if (throughput.timed_out) say('  (timed out: the figure counts the tasks done by then)');
      }
    }
    if (wants('overhead') && stack.worker) {
      overhead = await attempt('overhead', () =>
        measured('overhead', async () => {
          await stack.mark();
          // A first pass on a machine that was quiet (or busy with the throughput run), then
          // the same load, unmeasured, until it has run for settleMs, then the measured pass.
          const first = await linearOverhead(stack, opts.sizes.overheadTasks, Math.min(5, opts.sizes.overheadTasks), deadlineFor());
          const settleUntil = performance.now() + opts.sizes.settleMs;
          while (performance.now() < settleUntil && Date.now() < deadlineFor()) await linearOverhead(stack, 20, 0, deadlineFor());
          // The orchestrator's and the worker's events since the last take (children/timeline.ts).
          const takeTimelines = async () => {
            const [o, w] = await Promise.all([stack.orchestrators[0]!.request('timeline'), stack.worker!.request('timeline')]);
            return { orchestrator: o.data as string[], worker: w.data as string[] };
          };
          if (opts.timeline) await takeTimelines();
          const sends: number[] = [];
          const r = await linearOverhead(stack, opts.sizes.overheadTasks, 0, deadlineFor(), sends);
          r.first_pass = { p50: first.p50, p99: first.p99, gap_p50: first.gap_p50, gap_p99: first.gap_p99, settle_seconds: opts.sizes.settleMs / 1000 };
          writeFileSync(join(outDir, 'overhead-process-stats.json'), JSON.stringify(await stack.stats(), null, 2));
          if (opts.timeline) {
            const t = await takeTimelines();
            r.timeline = summarizeTimeline(t.orchestrator, t.worker, 's4');
            r.timeline_creation = summarizeCreation(sends, t.orchestrator, t.worker);
          }
          return r;
        }),
      );
      if (overhead) {
        say(
          table(
            ['per-step overhead, ms (4-step linear task, one at a time)', 'p50', 'p99', 'mean'],
            [
              ['task duration / 4 (request sent → complete seen)', overhead.p50, overhead.p99, overhead.mean],
              ['task row created_at → completed_at, / 4', overhead.db_p50, overhead.db_p99, null],
              ["gap: a step's handler returns → next step's handler starts", overhead.gap_p50, overhead.gap_p99, null],
              ['gap from step rows (finished_at → next started_at, 1 ms res.)', overhead.gap_rows_p50, overhead.gap_rows_p99, null],
              ["request sent → first step's handler starts", overhead.first_handler_p50, overhead.first_handler_p99, null],
              ["last step's handler → complete seen (row read back to back)", overhead.seen_p50, overhead.seen_p99, null],
              ['POST /v1/tasks latency', overhead.create_p50, null, null],
              ...(overhead.first_pass
                ? [
                    ['first pass, before settling: task duration / 4', overhead.first_pass.p50, overhead.first_pass.p99, null],
                    ['first pass, before settling: gap', overhead.first_pass.gap_p50, overhead.first_pass.gap_p99, null],
                  ]
                : []),
            ],
          ),
        );
        say(
          `  ${overhead.samples} tasks, ${queuesLabel} queues, measured after a first pass of as many and ${overhead.first_pass?.settle_seconds ?? 0} s more ` +
            'of the same load, unmeasured (the first pass is shown for comparison; bench/README.md, "Settling")',
        );
        say(sharesLine('overhead'));
        const tl = overhead.timeline;
        if (tl) {
          say(legsTable(`where a step's time goes (--timeline, ${tl.steps} steps; ${tl.statements_per_step} result-batch statement(s) per step)`, LEGS, tl, 'handler → next handler, all legs'));
          const tc = overhead.timeline_creation;
          if (tc) say(legsTable(`where a task's start goes (--timeline, ${tc.tasks} tasks: POST /v1/tasks sent → first handler)`, CREATION_LEGS, tc, 'request → first handler, all legs'));
          say('  (the processes run from source under tsx, with their libraries wrapped: a little slower than the figures above)');
        }
      }
    }
    if (wants('create')) {
      create = await attempt('create', () =>
        measured('create', () => creationRates(stack, opts.sizes.createTasks, opts.sizes.createWarmup, deadlineFor(), (what, fn) => measured(`create_${what}`, fn))),
      );
      if (create) {
        say(
          table(
            ['task creation', 'tasks', 'seconds', 'tasks/s', 'p50 ms', 'p99 ms'],
            [
              [`HTTP POST /v1/tasks, ${create.http.in_flight} in flight`, create.http.tasks, create.http.seconds, create.http_per_sec, create.http.latency_ms?.p50 ?? null, create.http.latency_ms?.p99 ?? null],
              [`HTTP POST /v1/tasks, ${create.http_64.in_flight} in flight`, create.http_64.tasks, create.http_64.seconds, create.http_64_per_sec, create.http_64.latency_ms?.p50 ?? null, create.http_64.latency_ms?.p99 ?? null],
              [`HTTP POST /v1/tasks/batch, ${HTTP_BATCH_SIZE} per request, ${HTTP_BATCH_CONCURRENCY} in flight`, create.http_batch.tasks, create.http_batch.seconds, create.http_batch_per_sec, null, null],
              [`AMQP task requests, ${create.amqp.in_flight} in flight (≤ ${opts.requestsPerMessage} per message)`, create.amqp.tasks, create.amqp.seconds, create.amqp_per_sec, null, null],
            ],
          ),
        );
        say(`  each after ${create.warmup} untimed tasks of its own kind on the same connections; p50 / p99: sent → answered, per request`);
        say(sharesLine('create_http', `HTTP creation, ${create.http.in_flight} in flight`));
        say(sharesLine('create_http_64', `HTTP creation, ${create.http_64.in_flight} in flight`));
        say(sharesLine('create_http_batch', 'HTTP batch creation'));
        say(sharesLine('create_amqp', 'AMQP creation'));
      }
    }
    cleanups.delete('tasker main run');
    await attempt('tasker cleanup', () => stack.stop());
    if (profileDir) say(`  CPU profiles: ${profileDir} (summarise with: npx tsx bench/src/profile-summary.ts ${profileDir})`);
  }
}

// 4. The limit ------------------------------------------------------------------------
let twoHops: TwoHopResult[] = [];
let cas: CasResult | null = null;
if (wants('limit')) {
  say(heading('4. The limit: raw RabbitMQ two hops, Postgres batched compare-and-set'));
  const relay = spawnChild('amqp-relay', 'amqp-relay.ts', {
    env: { BENCH_AMQP_URL: opts.amqpUrl, BENCH_PREFETCH: String(opts.concurrency) },
    logFile: join(outDir, 'logs', 'amqp-relay.log'),
  });
  cleanups.set('amqp relay', () => relay.stop());
  if (await attempt('relay start', () => relay.ready)) {
    // The queue type Tasker runs on first: it is the one the ratio uses.
    const types = opts.queueType === 'quorum' ? (['quorum', 'classic'] as const) : (['classic', 'quorum'] as const);
    for (const t of types) {
      const r = await attempt(`two-hop ${t}`, () =>
        measured(`two_hop_${t}`, () => twoHop(opts.amqpUrl, t, relay, `bench_${runId}_raw`, opts.sizes.twoHopMessages, opts.sizes.latencySamples, opts.sizes.settleMs, deadlineFor())),
      );
      if (r) twoHops.push(r);
    }
  }
  cleanups.delete('amqp relay');
  await relay.stop();
  cas = await attempt('postgres cas', () => measured('postgres_cas', () => pgCas(opts.databaseUrl, `bench_${runId}_cas`, opts.sizes.casRows, opts.sizes.latencySamples)));
  say(
    table(
      ['raw RabbitMQ, persistent + confirms + manual acks, two hops', 'messages', 'msgs/s', 'p50 ms', 'p99 ms'],
      twoHops.map((r) => [`${r.queue_type} queues`, r.messages, r.msgs_per_sec, r.latency_p50_ms, r.latency_p99_ms]),
    ),
  );
  if (cas) {
    say(
      table(
        ['Postgres compare-and-set (fsync, synchronous_commit on)', 'rows', 'updates/s', 'commits/s', '1-row commit p50 ms', 'p99 ms'],
        [[`batches of ${cas.batch}, ${cas.concurrency} connections`, cas.rows, cas.updates_per_sec, cas.commits_per_sec, cas.single_commit_p50_ms, cas.single_commit_p99_ms]],
      ),
    );
  }
}
twoHops = twoHops.filter(Boolean);
const limitRate = twoHops.find((r) => r.queue_type === opts.queueType)?.msgs_per_sec ?? null;
const floor = overheadFloor(opts.queueType, twoHops, cas);
if (floor) {
  say(
    `  floor of a step's gap on this machine: two hops ${floor.two_hop_p50_ms} ms (${floor.queue_type}) + one durable commit ` +
      `${floor.commit_p50_ms} ms = ${floor.p50_ms} ms p50 (what any system that stores a result before it dispatches the next step pays)`,
  );
}

// 5. Peers -------------------------------------------------------------------------------
const peers: Record<string, PeerResult> = {};
const peersDb = `bench_${runId}_peers`;
const peersDatabaseUrl = withDatabase(opts.databaseUrl, peersDb);
const ctxFor = (name: PeerName, repeat = opts.repeat, beside?: PeerContext['beside']): PeerContext => ({
  runId,
  tasks: name === 'pg_boss' ? Math.min(opts.sizes.pgbossTasks, opts.sizes.peerTasks) : opts.sizes.peerTasks,
  warmup: name === 'pg_boss' ? Math.min(2, opts.sizes.warmupTasks) : opts.sizes.warmupTasks,
  deadline: deadlineFor(),
  outDir,
  peersDatabaseUrl,
  redisUrl: opts.redisUrl,
  concurrency: opts.concurrency,
  repeat,
  ...(beside ? { beside } : {}),
});
/** One peer's throughput measurement(s): `repeat` runs on one worker, the median reported; `beside` runs around each. */
async function runPeer(name: PeerName, repeat = opts.repeat, beside?: PeerContext['beside']): Promise<PeerResult> {
  const ctx = ctxFor(name, repeat, beside); // after any wait for quiet: the deadline starts now
  const { runBullmq } = await import('./peers/bullmq.ts');
  const { runGraphile } = await import('./peers/graphile.ts');
  const { runPgBoss } = await import('./peers/pgboss.ts');
  switch (name) {
    case 'bullmq_flow':
      return runBullmq(ctx, name, 'flow', false);
    case 'bullmq_flow_fsync':
      return runBullmq(ctx, name, 'flow', true);
    case 'bullmq_successors':
      return runBullmq(ctx, name, 'successors', false);
    case 'bullmq_successors_fsync':
      return runBullmq(ctx, name, 'successors', true);
    case 'graphile_worker':
      return runGraphile(ctx, name, false);
    case 'graphile_worker_batched':
      return runGraphile(ctx, name, true);
    case 'pg_boss':
      return runPgBoss(ctx, name, false);
    case 'pg_boss_notify':
      return runPgBoss(ctx, name, true);
  }
}
if (wants('peers')) {
  say(heading('5. Peers on the same diamond workload'));
  const created = await attempt('peers database', () => createDatabase(opts.databaseUrl, peersDb));
  if (created !== null) cleanups.set('peers database', () => dropDatabase(opts.databaseUrl, peersDb));
  const { restore } = await import('./peers/redis-durability.ts');
  cleanups.set('redis settings', () => restore());
  for (const name of opts.peers) {
    if (name.startsWith('bullmq') && !redisUp) {
      errors.push({ section: `peer ${name}`, error: `Redis not reachable at ${opts.redisUrl}` });
      note(`  ${name}: skipped, Redis not reachable at ${opts.redisUrl}`);
      continue;
    }
    if (!name.startsWith('bullmq') && created === null) continue;
    const r = await attempt(`peer ${name}`, () => measured(`peer_${name}`, () => runPeer(name)));
    if (r) {
      peers[name] = r;
      say(
        `  ${name.padEnd(24)} ${String(r.steps_per_sec).padStart(8)} steps/s  (${r.tasks} tasks in ${r.seconds} s${r.timed_out ? ', timed out' : ''}; durable ${r.durable}` +
          `${r.samples ? `; repetitions ${r.samples.join(', ')}, median shown` : ''})`,
      );
    }
  }
  cleanups.delete('redis settings');
  await attempt('redis restore', () => restore());
  if (created !== null) {
    cleanups.delete('peers database');
    await attempt('peers database cleanup', () => dropDatabase(opts.databaseUrl, peersDb));
  }
}

const startStack = (label: string, orchestrators: number, workerEnv: Record<string, string> | null) =>
  TaskerStack.start({
    label,
    runId,
    queueType: opts.queueType,
    resultsQueueType: opts.resultsQueueType,
    stepsPerMessage: opts.stepsPerMessage,
    requestsPerMessage: opts.requestsPerMessage,
    orchestrators,
    databaseUrl: opts.databaseUrl,
    amqpUrl: opts.amqpUrl,
    templatesDir,
    outDir,
    nodelay: opts.nodelay,
    concurrency: opts.concurrency,
  }, workerEnv);

// 5b. Tasker and each BullMQ configuration, alternately (--paired) -------------------------
/**
 * Pairs of throughput runs, one of Tasker and one of the peer, next to each other: Tasker
 * first in the first pair, the peer first in the next, in turn. Both sides stay up for all of
 * their pairs, warmed up once (Tasker's stack of its own; the peer's worker, as with
 * --repeat), so every run of either is a repetition on a warm system. The machine's speed
 * drifts over minutes (RESULTS.md), and sections 1 and 5 run minutes apart; the two runs of a
 * pair see the same machine.
 */
interface PairedResult {
  durable: boolean;
  tasker_steps_per_sec: number[];
  peer_steps_per_sec: number[];
  /** Tasker ÷ peer, pair by pair. */
  ratios: number[];
  median_ratio: number | null;
}
const paired: Record<string, PairedResult> = {};
const pairedPeers = opts.peers.filter((p) => p.startsWith('bullmq'));
if (opts.paired > 0 && !(wants('peers') && pairedPeers.length > 0)) {
  note(`--paired ${opts.paired}: not run; it pairs Tasker with the BullMQ peers, and ${wants('peers') ? 'none is selected (--peers)' : 'the peers section is not run'}`);
} else if (opts.paired > 0) {
  say(heading(`5b. Tasker and BullMQ alternately: ${opts.paired} pair(s) each`));
  if (!redisUp) note(`  skipped: Redis not reachable at ${opts.redisUrl}`);
  const stack = redisUp ? await attempt('paired start', () => startStack('paired', 1, {})) : null;
  if (stack) {
    cleanups.set('tasker paired run', () => stack.stop());
    const { restore } = await import('./peers/redis-durability.ts');
    cleanups.set('redis settings', () => restore());
    const warm = await attempt('paired warm-up', () => warmUp(stack, opts.sizes.warmupTasks, deadlineFor(), 'amqp'));
    for (const name of warm === null ? [] : pairedPeers) {
      const tasker: number[] = [];
      const runTasker = async (k: number) => {
        const t = await attempt(`paired ${name} ${k + 1}: tasker`, () =>
          measured(`paired_${name}_tasker`, () => diamondThroughput(stack, opts.sizes.throughputTasks, deadlineFor(), 'amqp')),
        );
        tasker[k] = t?.steps_per_sec ?? Number.NaN;
      };
      const p = await attempt(`paired ${name}`, () =>
        measured(`paired_${name}`, () =>
          runPeer(name, opts.paired, {
            before: async (k) => (k % 2 === 0 ? runTasker(k) : undefined),
            after: async (k) => (k % 2 === 1 ? runTasker(k) : undefined),
          }),
        ),
      );
      if (!p) continue;
      const peerRuns = p.samples ?? [p.steps_per_sec];
      const r: PairedResult = { durable: p.durable, tasker_steps_per_sec: [], peer_steps_per_sec: [], ratios: [], median_ratio: null };
      peerRuns.forEach((peer, k) => {
        const t = tasker[k];
        if (t === undefined || !Number.isFinite(t) || !(peer > 0)) return;
        r.tasker_steps_per_sec.push(t);
        r.peer_steps_per_sec.push(peer);
        r.ratios.push(round(t / peer, 2));
      });
      r.median_ratio = r.ratios.length > 0 ? round(median(r.ratios), 2) : null;
      paired[name] = r;
      say(
        `  ${name.padEnd(24)} durable ${String(r.durable).padEnd(5)}  tasker ${r.tasker_steps_per_sec.join(', ')}; ${name} ${r.peer_steps_per_sec.join(', ')} steps/s; ` +
          `ratios ${r.ratios.join(', ')}, median ${r.median_ratio ?? '-'}`,
      );
    }
    cleanups.delete('redis settings');
    await attempt('redis restore', () => restore());
    cleanups.delete('tasker paired run');
    await attempt('paired cleanup', () => stack.stop());
  }
}

// 6. Memory with many tasks in flight; 1 vs 2 orchestrators --------------------------------
let mem: MemoryResult | null = null;
let scale2: ThroughputResult | null = null;
if (wants('memory') || wants('scale')) say(heading('6. Memory with tasks in flight; 1 vs 2 orchestrators'));
if (wants('memory')) {
  const stack = await attempt('memory start', () => startStack('mem', 1, null));
  if (stack) {
    cleanups.set('tasker memory run', () => stack.stop());
    mem = await attempt('memory', () => measured('memory', () => memoryInFlight(stack, opts.sizes.memoryTasks, deadlineFor)));
    cleanups.delete('tasker memory run');
    await attempt('memory cleanup', () => stack.stop());
  }
}
if (wants('scale')) {
  const stack = await attempt('scale start', () => startStack('two', 2, {}));
  if (stack) {
    cleanups.set('tasker scale run', () => stack.stop());
    scale2 = await attempt('two orchestrators', async () => {
      await warmUp(stack, opts.sizes.warmupTasks, deadlineFor(), 'amqp');
      return measured('two_orchestrators', () => diamondThroughput(stack, opts.sizes.throughputTasks, deadlineFor(), 'amqp'));
    });
    memory.orchestrator_two_run = Math.max(...stack.orchestrators.map((c) => c.peakMemoryMb() ?? 0));
    cleanups.delete('tasker scale run');
    await attempt('scale cleanup', () => stack.stop());
  }
}
const memRows: Array<Array<string | number | null>> = [];
if (mem) {
  memRows.push([`orchestrator, ${mem.tasks_in_flight} tasks in flight (created with no worker, then drained)`, mem.orchestrator_mb]);
  memRows.push(['  the same orchestrator once started, before any task', mem.orchestrator_after_start_mb]);
  memRows.push(['  the same once the tasks were created (no worker yet)', mem.orchestrator_after_create_mb]);
  memRows.push(['worker, draining them', mem.worker_mb]);
}
if (memory.orchestrator_throughput_run) memRows.push(['orchestrator, throughput run', memory.orchestrator_throughput_run]);
if (memory.worker_throughput_run) memRows.push(['worker, throughput run', memory.worker_throughput_run]);
if (memRows.length) say(table(['peak memory (VmHWM)', 'MB'], memRows));
if (mem) say(`  draining ${mem.tasks_in_flight} queued tasks: ${mem.drain_steps_per_sec} steps/s`);
if (scale2 || throughput) {
  say(
    table(
      ['orchestrators (diamond throughput)', 'steps/s'],
      [
        ['1 (section 1)', throughput?.steps_per_sec ?? null],
        ['2, same schema and queues (task requests shared)', scale2?.steps_per_sec ?? null],
      ],
    ),
  );
}

// 7. Per-step overhead by worker language ------------------------------------------------
// Each language's conformance worker alone: steps published straight to its queue, results
// timed on the results exchange (no orchestrator, no database; see sections/languages.ts).
let byLanguage: Record<string, LanguageFigures> | null = null;
if (wants('languages')) {
  say(heading('7. Per-step overhead by worker language (the worker alone: no orchestrator, no database)'));
  byLanguage = {};
  let rustBuild: RustBuild | null = null;
  mkdirSync(join(outDir, 'logs'), { recursive: true });
  for (const language of LANGUAGES) {
    if (!opts.sizes.languages.includes(language)) {
      byLanguage[language] = skipped(language, `not measured in ${opts.mode} mode`);
      continue;
    }
    // The Rust build lives in bench/out whatever --out says: it is a cache, reused by later runs.
    const prepared = await attempt(`languages ${language}`, () =>
      prepareWorker(language, REPO_DIR, join(BENCH_DIR, 'out', 'cargo-target'), opts.sizes.rustBuildTimeoutMs),
    );
    if (!prepared) {
      byLanguage[language] = skipped(language, 'could not prepare the worker (see errors)');
      continue;
    }
    if (prepared.build) rustBuild = prepared.build;
    if ('skipped' in prepared) {
      byLanguage[language] = skipped(language, prepared.skipped);
      continue;
    }
    const r = await attempt(`languages ${language}`, () =>
      measured(`language_${language}`, () =>
        measureWorkerOverhead({
          command: prepared.command,
          env: prepared.env,
          cwd: REPO_DIR,
          amqpUrl: opts.amqpUrl,
          queueType: opts.queueType,
          steps: opts.sizes.languageSteps,
          warmup: opts.sizes.languageWarmup,
          warmupMs: opts.sizes.settleMs,
          inFlight: opts.sizes.languageInFlight,
          inFlightSteps: opts.sizes.languageInFlightSteps,
          logPath: join(outDir, 'logs', `language-${language}.log`),
          deadline: deadlineFor(),
        }),
      ),
    );
    byLanguage[language] = r
      ? { worker: LANGUAGE_LABELS[language], runtime: prepared.runtime, ...r, ...(prepared.build ? { rust_build: prepared.build } : {}) }
      : skipped(language, 'the measurement failed (see errors)', prepared.build);
  }
  const rows = LANGUAGES.map((language) => {
    const f = byLanguage![language]!;
    const label = language === 'rust' && rustBuild ? `${f.worker.replace(/\)$/, '')}, ${rustBuild.profile} build)` : f.worker;
    if ('skipped' in f) return [label, null, null, null, null, null, 'skipped'];
    return [label, f.p50_ms, f.p95_ms, f.p99_ms, f.in_flight_steps_per_sec, f.start_ms, f.runtime];
  });
  say(
    table(
      ['per-step overhead, step message → result', 'p50 ms', 'p95 ms', 'p99 ms', `steps/s, ${opts.sizes.languageInFlight} in flight`, 'ready ms', 'runtime'],
      rows,
    ),
  );
  say(
    `  ${opts.sizes.languageSteps} steps one at a time after unmeasured ones (at least ${opts.sizes.languageWarmup}, for at least ${opts.sizes.settleMs / 1000} s), then ${opts.sizes.languageInFlightSteps.toLocaleString('en-US')} steps with ` +
      `${opts.sizes.languageInFlight} kept in flight; every worker at concurrency ${WORKER_CONCURRENCY}; ${opts.queueType} queues; ` +
      "'ready': the worker's start until it consumes its queue (not in the figures)",
  );
  for (const language of LANGUAGES) {
    const f = byLanguage[language]!;
    if ('skipped' in f) say(`  ${language}: skipped, ${f.skipped}`);
    else if (f.timed_out) say(`  ${language}: timed out after ${f.steps} sequential steps (the figures use those)`);
  }
  if (rustBuild) {
    say(
      `  Rust worker: cargo build --offline${rustBuild.profile === 'release' ? ' --release' : ''} ${rustBuild.seconds} s ` +
        `(${rustBuild.compiled ? 'compiled' : 'up to date'}; not part of the figures)${rustBuild.note ? `; DEBUG build: ${rustBuild.note}` : ''}`,
    );
  }
}

// Ratios and targets ------------------------------------------------------------------------
const ours = throughput?.steps_per_sec ?? null;
const ratio = (a: number | null, b: number | null | undefined) => (a && b ? round(a / b, 2) : null);
const thresholds =
  opts.queueType === 'classic' ? { p50: 1.5, p99: 5 } : { p50: 2.5, p99: 8 };
type Verdict = { target: string; measured: string; met: boolean | null };
const verdicts: Verdict[] = [];
const v = (target: string, measured: string, met: boolean | null) => verdicts.push({ target, measured, met });
v('≥ 5,000 steps/s on the diamond', ours === null ? 'not measured' : `${ours} steps/s`, ours === null ? null : ours >= 5000);
for (const [name, p] of Object.entries(peers)) {
  const r = ratio(ours, p.steps_per_sec);
  if (p.durable) v(`≥ 1.5× ${name} (durable)`, r === null ? 'not measured' : `${r}× (${p.steps_per_sec} steps/s)`, r === null ? null : r >= 1.5);
  else v(`stretch: ahead of ${name} (Redis keeps nothing on disk)`, r === null ? 'not measured' : `${r}× (${p.steps_per_sec} steps/s)`, r === null ? null : r > 1);
}
for (const [name, r] of Object.entries(paired)) {
  const m = r.median_ratio;
  const measuredText = m === null ? 'not measured' : `${m}× (median of ${r.ratios.length} alternating pair(s): ${r.ratios.join(', ')})`;
  if (r.durable) v(`≥ 1.5× ${name} (durable), paired`, measuredText, m === null ? null : m >= 1.5);
  else v(`stretch: ahead of ${name} (Redis keeps nothing on disk), paired`, measuredText, m === null ? null : m > 1);
}
const limitRatio = ratio(ours, limitRate);
v(`≥ 0.5 × raw two-hop rate (${opts.queueType})`, limitRatio === null ? 'not measured' : `${limitRatio} (${limitRate} msgs/s)`, limitRatio === null ? null : limitRatio >= 0.5);
const floorText = floor ? `; floor ${floor.p50_ms} ms${floor.p50_ms > thresholds.p50 ? ', over the target' : ''}` : '';
v(
  `per-step overhead ≤ ${thresholds.p50} ms p50, ≤ ${thresholds.p99} ms p99 (${queuesLabel})`,
  overhead ? `${overhead.p50} ms p50, ${overhead.p99} ms p99${floorText}` : 'not measured',
  overhead ? overhead.p50 <= thresholds.p50 && overhead.p99 <= thresholds.p99 : null,
);
v(`task creation ≥ 3,000 tasks/s (HTTP, one per request, ${create?.http.in_flight ?? HTTP_CREATE_CONCURRENCY[0]} in flight)`, create ? `${create.http_per_sec}/s` : 'not measured', create ? create.http_per_sec >= 3000 : null);
v(`task creation ≥ 3,000 tasks/s (HTTP, one per request, ${create?.http_64.in_flight ?? HTTP_CREATE_CONCURRENCY[1]} in flight)`, create ? `${create.http_64_per_sec}/s` : 'not measured', create ? create.http_64_per_sec >= 3000 : null);
v(`task creation ≥ 3,000 tasks/s (HTTP, ${HTTP_BATCH_SIZE} per request)`, create ? `${create.http_batch_per_sec}/s` : 'not measured', create ? create.http_batch_per_sec >= 3000 : null);
v('task creation ≥ 3,000 tasks/s (AMQP)', create ? `${create.amqp_per_sec}/s` : 'not measured', create ? create.amqp_per_sec >= 3000 : null);
const memAt10k = mem && mem.tasks_in_flight >= 10_000;
v(
  'orchestrator ≤ 200 MB with 10,000 tasks in flight',
  mem ? `${mem.orchestrator_mb} MB with ${mem.tasks_in_flight} in flight` : 'not measured',
  mem ? (memAt10k ? (mem.orchestrator_mb ?? Infinity) <= 200 : null) : null,
);

say(heading('Summary'));
const peerRows = Object.values(peers).map((p) => [p.name, p.durable ? 'yes' : 'no', p.steps_per_sec, ratio(ours, p.steps_per_sec)]);
say(
  table(
    ['system (diamond, concurrency 50)', 'durable', 'steps/s', 'tasker ÷ it'],
    [
      [`tasker (${queuesLabel} queues, ${opts.stepsPerMessage} steps/message)`, 'yes', ours, ours ? 1 : null],
      ...peerRows,
      [`raw RabbitMQ two hops (${opts.queueType}), msgs/s`, 'yes', limitRate, limitRatio],
    ],
  ),
);
say('');
say(table(['target (issue 7)', 'measured', 'met'], verdicts.map((x) => [x.target, x.measured, x.met === null ? 'n/a' : x.met ? 'yes' : 'NO'])));
const elapsed = round((Date.now() - startedAt) / 1000, 1);
say(
  `\nmachine CPU busy during each measurement (% of both cores, every process; ours included): ` +
    Object.entries(cpuBusy)
      .map(([k, b]) => `${k} ${b.during_pct}${b.before_pct !== null ? ` (before ${b.before_pct})` : ''}`)
      .join(', '),
);
say(`\nwhole run: ${elapsed} s; load average at end: ${(await import('node:os')).loadavg().map((x) => round(x, 2)).join(' ')}`);
if (errors.length) {
  say('\nerrors:');
  for (const e of errors) say(`  ${e.section}: ${e.error}`);
}

Object.assign(result, {
  elapsed_sec: elapsed,
  throughput: throughput ? { ...throughput, over_http: throughputHttp } : { steps_per_sec: null },
  overhead_ms: { ...(overhead ?? { p50: null, p99: null }), floor },
  create: create ?? { http_per_sec: null, http_64_per_sec: null, http_batch_per_sec: null, amqp_per_sec: null },
  limit: {
    two_hop_msgs_per_sec: limitRate,
    two_hop: Object.fromEntries(twoHops.map((r) => [r.queue_type, r])),
    postgres_cas: cas,
    tasker_fraction_of_two_hop: limitRatio,
  },
  peers: Object.fromEntries(Object.entries(peers).map(([k, p]) => [k, { ...p, tasker_ratio: ratio(ours, p.steps_per_sec) }])),
  paired: Object.keys(paired).length > 0 ? paired : null,
  memory_mb: {
    orchestrator: mem?.orchestrator_mb ?? memory.orchestrator_throughput_run ?? null,
    worker: mem?.worker_mb ?? memory.worker_throughput_run ?? null,
    tasks_in_flight: mem?.tasks_in_flight ?? null,
    ...memory,
    in_flight_run: mem,
  },
  scaling: {
    one_orchestrator_steps_per_sec: ours,
    two_orchestrators_steps_per_sec: scale2?.steps_per_sec ?? null,
    two: scale2,
    ratio: ratio(scale2?.steps_per_sec ?? null, ours),
  },
  overhead_by_language: byLanguage,
  targets: verdicts,
  machine_cpu_busy_pct: cpuBusy,
  cpu_by_process_pct_of_one_core: cpuShares,
  errors,
  load_average_end: (await import('node:os')).loadavg(),
});
if (opts.json) {
  mkdirSync(dirname(resolve(opts.json)), { recursive: true });
  writeFileSync(opts.json, `${JSON.stringify(result, null, 2)}\n`);
  say(`JSON: ${resolve(opts.json)}`);
}
writeFileSync(join(outDir, 'result.json'), `${JSON.stringify(result, null, 2)}\n`);
await runCleanups();
unregisterRun();
process.exit(errors.length > 0 ? 1 : 0);
