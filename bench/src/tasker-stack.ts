import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import type { QueueType } from '@tasker/protocol';
import { newStepId, newTaskId } from '@tasker/orchestrator';
import { deleteTopology, dropSchema, taskerTopology } from './cleanup.ts';
import { bundle } from '../../scripts/bundle.ts';
import { CHILDREN_DIR, spawnChild, type Child } from './proc.ts';

export const BENCH_NAMESPACES = ['bench', 'bench_idle'];

export interface StackOptions {
  /** Names this run's schema, prefix and logs: `bench_<runId>_<label>`. */
  label: string;
  runId: string;
  queueType: QueueType;
  /** TASKER_RESULTS_QUEUE_TYPE of the orchestrators (Options.resultsQueueType, resolved). */
  resultsQueueType: QueueType;
  orchestrators: number;
  databaseUrl: string;
  amqpUrl: string;
  templatesDir: string;
  outDir: string;
  /** `--cpu-prof` the orchestrators and the worker into this folder. */
  cpuProfDir?: string | null;
  /** Time SQL statements and publisher confirms inside the children. */
  trace?: boolean;
  /** What-if: TCP_NODELAY on the children's sockets (experiments.ts). */
  nodelay?: boolean;
  /** Record a timeline of events inside the children (children/timeline.ts). */
  timeline?: boolean;
  concurrency: number;
  /** TASKER_STEPS_PER_MESSAGE of the orchestrators. */
  stepsPerMessage: number;
  /** The bench's AmqpTaskRequester: most task requests in one message. */
  requestsPerMessage: number;
}

/**
 * One run of Tasker as it is deployed: orchestrator processes and a worker process on a
 * fresh Postgres schema and a fresh AMQP prefix, both removed by {@link stop}.
 */
export class TaskerStack {
  readonly schema: string;
  readonly prefix: string;
  readonly orchestrators: Child[] = [];
  readonly urls: string[] = [];
  worker: Child | null = null;
  /** Each orchestrator's VmHWM once started (before any task): the fixed cost, tsx's loader included. */
  readonly startMb: Array<number | null> = [];
  /** The bearer token the bench's HTTP requests carry (create and read, every namespace). */
  readonly token = randomBytes(24).toString('hex');
  /** The bench's own connection, for polling task states (search_path = the run's schema). */
  db!: pg.Client;
  private workers = 0;

  private constructor(readonly o: StackOptions) {
    this.schema = `bench_${o.runId}_${o.label}`;
    this.prefix = `bench_${o.runId}_${o.label}`;
  }

  private env(): Record<string, string> {
    return {
      TASKER_DATABASE_URL: this.o.databaseUrl,
      TASKER_DB_SCHEMA: this.schema,
      TASKER_AMQP_URL: this.o.amqpUrl,
      TASKER_AMQP_PREFIX: this.prefix,
      TASKER_QUEUE_TYPE: this.o.queueType,
      TASKER_RESULTS_QUEUE_TYPE: this.o.resultsQueueType,
      TASKER_STEPS_PER_MESSAGE: String(this.o.stepsPerMessage),
      TASKER_HTTP_HOST: '127.0.0.1',
      TASKER_HTTP_PORT: '0',
      TASKER_TEMPLATES_DIR: this.o.templatesDir,
      TASKER_LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
      TASKER_API_TOKENS: JSON.stringify([{ name: 'bench', token: this.token, namespaces: ['*'], actions: ['create', 'read'] }]),
      BENCH_TRACE: this.o.trace ? '1' : '0',
      BENCH_FORCE_NODELAY: this.o.nodelay ? '1' : '0',
      BENCH_TIMELINE: this.o.timeline ? '1' : '0',
    };
  }

  /**
   * Starts the orchestrators (at once: migrations take an advisory lock and declaring is
   * idempotent) and, when `workerEnv` is given, the worker alongside them (it waits for its
   * queue to be declared).
   */
  static async start(o: StackOptions, workerEnv: Record<string, string> | null = null): Promise<TaskerStack> {
    const s = new TaskerStack(o);
    try {
      for (let i = 0; i < o.orchestrators; i++) {
        s.orchestrators.push(
          spawnChild(`orchestrator-${o.label}-${i + 1}`, await childScript(o, 'orchestrator'), {
            env: s.env(),
            logFile: join(o.outDir, 'logs', `orchestrator-${o.label}-${i + 1}.log`),
            cpuProfDir: o.cpuProfDir ?? null,
          }),
        );
      }
      const worker = workerEnv ? s.startWorker(workerEnv) : null;
      for (const c of s.orchestrators) {
        s.urls.push(String((await c.ready).httpUrl));
        s.startMb.push(c.peakMemoryMb());
      }
      await worker;
      s.db = new pg.Client({ connectionString: o.databaseUrl, options: `-c search_path=${s.schema}`, application_name: 'tasker-bench' });
      await s.db.connect();
    } catch (err) {
      await s.stop().catch(() => undefined);
      throw err;
    }
    return s;
  }

  /** Starts the worker process (the step queue exists: the orchestrator declared it from the templates). */
  async startWorker(env: Record<string, string> = {}): Promise<Child> {
    if (this.worker) throw new Error('worker already running');
    this.workers++;
    const w = spawnChild(`worker-${this.o.label}-${this.workers}`, await childScript(this.o, 'tasker-worker'), {
      env: { ...this.env(), BENCH_NAMESPACE: 'bench', BENCH_CONCURRENCY: String(this.o.concurrency), ...env },
      logFile: join(this.o.outDir, 'logs', `worker-${this.o.label}-${this.workers}.log`),
      cpuProfDir: this.o.cpuProfDir ?? null,
    });
    this.worker = w;
    await w.ready;
    return w;
  }

  async stopWorker(): Promise<void> {
    const w = this.worker;
    this.worker = null;
    await w?.stop();
  }

  /**
   * Whether any task of the namespace `bench` is still in progress: the cheap question the
   * bench polls every few milliseconds while the stack works. (Polling `counts()` instead
   * cost Postgres 3-8 ms a time as the tables grew, a quarter of its CPU during a
   * throughput run: load that is the bench's, not Tasker's.)
   */
  async anyLive(): Promise<boolean> {
    const { rows } = await this.db.query<{ live: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM tasks WHERE state = 'in_progress' AND namespace = 'bench') AS live`,
    );
    return rows[0]!.live;
  }

  /**
   * Fills the run's schema with `count` diamond tasks that have ended, as a running
   * installation's tables hold them, before anything is measured (`--prefill`): each task
   * complete with its four steps and its 14 audit rows, its ids made by the orchestrator's
   * own functions, so that the keys are what the code under test makes. Then VACUUM ANALYZE,
   * which autovacuum would otherwise start on these tables during the measurement (it vacuums
   * a table after enough inserts), and a CHECKPOINT, so that the measurement starts where a
   * running installation is after any checkpoint: the first change of each page writes it
   * whole to the WAL. Returns the rows read back.
   */
  async prefill(count: number): Promise<{ tasks: number; steps: number; transitions: number; seconds: number }> {
    const t0 = performance.now();
    const { rows: [template] } = await this.db.query<{ id: string; version: string }>(
      `SELECT id, version FROM templates WHERE namespace = 'bench' AND name = 'diamond' ORDER BY id DESC LIMIT 1`,
    );
    if (!template) throw new Error('prefill: the diamond template is not registered');
    for (let done = 0; done < count; done += 2_000) {
      const n = Math.min(2_000, count - done);
      const taskIds = Array.from({ length: n }, () => newTaskId());
      const stepIds = Array.from({ length: n * 4 }, () => newStepId());
      // One statement a chunk, as a creation batch: the tasks, their steps (a; b and c after a;
      // d after b and c), and the audit of each (the task created and complete; each step
      // created pending, enqueued, complete).
      await this.db.query(
        `WITH tk AS (
           INSERT INTO tasks (id, namespace, name, version, template_id, state, context, correlation_id, completed_at)
           SELECT id, 'bench', 'diamond', $3, $4, 'complete', '{}'::jsonb, id, now() FROM unnest($1::text[]) AS id
           RETURNING id
         ), shape (pos, name, dependents) AS (
           VALUES (0, 'a', ARRAY['b', 'c']), (1, 'b', ARRAY['d']), (2, 'c', ARRAY['d']), (3, 'd', ARRAY[]::text[])
         ), st AS (
           INSERT INTO steps (id, task_id, name, position, state, attempt, max_attempts, deps_pending, dependents,
                              result, enqueued_at, started_at, finished_at)
           SELECT ($2::text[])[(t.ord - 1) * 4 + s.pos + 1], t.id, s.name, s.pos, 'complete', 1, 3, 0, s.dependents,
                  '{"ok":true}'::jsonb, now(), now(), now()
           FROM unnest($1::text[]) WITH ORDINALITY AS t(id, ord) CROSS JOIN shape s
           WHERE t.id IN (SELECT id FROM tk)
           RETURNING id, task_id, position
         )
         INSERT INTO transitions (task_id, step_id, from_state, to_state, attempt, reason)
         SELECT a.task_id, a.step_id, a.from_state, a.to_state, a.attempt, a.reason
         FROM (
           SELECT id AS task_id, NULL::text AS step_id, NULL::text AS from_state, 'in_progress' AS to_state,
                  NULL::int AS attempt, 'task created' AS reason, 0 AS k FROM tk
           UNION ALL SELECT task_id, id, NULL, 'pending', NULL, 'task created', 1 + position * 3 FROM st
           UNION ALL SELECT task_id, id, 'pending', 'enqueued', 1, 'dependencies done', 2 + position * 3 FROM st
           UNION ALL SELECT task_id, id, 'enqueued', 'complete', 1, 'step succeeded', 3 + position * 3 FROM st
           UNION ALL SELECT id, NULL, 'in_progress', 'complete', NULL, 'all steps complete', 13 FROM tk
         ) AS a
         ORDER BY a.task_id, a.k`,
        [taskIds, stepIds, template.version, template.id],
      );
    }
    await this.db.query('VACUUM (ANALYZE) tasks, steps, transitions');
    await this.db.query('CHECKPOINT');
    const { rows: [c] } = await this.db.query<{ tasks: number; steps: number; transitions: number }>(
      `SELECT (SELECT count(*) FROM tasks)::int AS tasks, (SELECT count(*) FROM steps)::int AS steps,
              (SELECT count(*) FROM transitions)::int AS transitions`,
    );
    return { ...c!, seconds: Math.round((performance.now() - t0) / 10) / 100 };
  }

  /** Tasks of the namespace `bench` still in progress, and tasks that ended in error. */
  async counts(): Promise<{ live: number; error: number }> {
    const { rows } = await this.db.query<{ live: number; error: number }>(
      // Only the namespace a worker serves: tasks of bench_idle stay in progress by design.
      `SELECT (SELECT count(*) FROM tasks WHERE state = 'in_progress' AND namespace = 'bench')::int AS live,
              (SELECT count(*) FROM tasks WHERE state = 'error')::int AS error`,
    );
    return rows[0]!;
  }

  /** The orchestrators, then the worker if one runs. */
  private children(): Child[] {
    return [...this.orchestrators, ...(this.worker ? [this.worker] : [])];
  }

  /** `mark` on every child: CPU, event-loop and SQL statistics start now. */
  async mark(): Promise<void> {
    await Promise.all(this.children().map((c) => c.request('mark')));
  }

  /** Starts a CPU profile in every child (--profile-window). */
  async profileStart(): Promise<void> {
    await Promise.all(this.children().map((c) => c.request('profile-start')));
  }

  /** Ends the profiles profileStart began: `<dir>/<child>.<label>.cpuprofile` each; returns the files. */
  async profileStop(dir: string, label: string): Promise<string[]> {
    const files: string[] = [];
    for (const c of this.children()) {
      const file = join(dir, `${c.name}.${label}.cpuprofile`);
      await c.request('profile-stop', { file });
      files.push(file);
    }
    return files;
  }

  /** Statistics of every child since `mark`. */
  async stats(): Promise<Record<string, unknown>> {
    const out: Record<string, unknown> = {};
    for (const c of this.children()) {
      out[c.name] = (await c.request('stats')).data;
    }
    return out;
  }

  /** Stops the processes (profiles are written on exit), drops the schema, deletes the queues and exchanges. */
  async stop(): Promise<void> {
    await this.db?.end().catch(() => undefined);
    await this.stopWorker().catch(() => undefined);
    await Promise.all(this.orchestrators.map((c) => c.stop().catch(() => undefined)));
    const warn = (what: string) => (err: Error) => process.stderr.write(`  cleanup: ${what} failed (${err.message}); the next run removes it\n`);
    await dropSchema(this.o.databaseUrl, this.schema).catch(warn(`dropping schema ${this.schema}`));
    await deleteTopology(this.o.amqpUrl, taskerTopology(this.prefix, this.o.queueType, BENCH_NAMESPACES)).catch(warn(`deleting the queues of ${this.prefix}`));
  }
}

const bundles = new Map<string, Promise<string>>();

/**
 * Tasker's processes run as in production: bundled (scripts/bundle.ts, `pnpm build`), not
 * under tsx, whose loader alone holds ~50 MB and transpiles at start. --profile profiles the
 * bundles too (its summary names each function's source through the bundle's source map):
 * under tsx, every function made at run time also gets its name set (esbuild's keepNames),
 * which a profile of the sources counts. The what-ifs that patch a library in the child
 * (--trace, --nodelay, --timeline) need the sources, so they run under tsx.
 */
function childScript(o: StackOptions, name: 'orchestrator' | 'tasker-worker'): Promise<string> {
  if (o.trace || o.nodelay || o.timeline) return Promise.resolve(`${name}.ts`);
  const out = join(o.outDir, 'bundle', `${name}.mjs`);
  let p = bundles.get(out);
  if (!p) bundles.set(out, (p = bundle(join(CHILDREN_DIR, `${name}.ts`), out).then(() => out)));
  return p;
}
