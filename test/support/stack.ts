import amqp from 'amqplib';
import pg from 'pg';
import pino from 'pino';
import { coreTopology, namespaceTopology, parseTemplate, type CompiledTemplate, type TaskState, type TaskView } from '@tasker/protocol';
import { Orchestrator, type StartOptions } from '@tasker/orchestrator';
import { createWorker, type Worker, type WorkerOptions } from '@tasker/worker';
import { AMQP_URL, DATABASE_URL, uniqueSuffix } from './services.ts';

export const testLogger = () => pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

/**
 * An orchestrator on a fresh Postgres schema and a fresh AMQP prefix, for one test file.
 * `cleanup()` stops it, drops the schema and deletes every queue and exchange it declared
 * (the schema is kept when TEST_KEEP_SCHEMA=1, to inspect a failure).
 */
export interface Stack {
  orchestrator: Orchestrator;
  schema: string;
  prefix: string;
  amqpUrl: string;
  databaseUrl: string;
  namespaces: Set<string>;
  register(...yaml: string[]): Promise<CompiledTemplate[]>;
  /** Starts a second orchestrator on the same schema and prefix. */
  another(options?: StartOptions): Promise<Orchestrator>;
  /**
   * Starts a TypeScript worker on this stack's broker and prefix (the test logger unless
   * given); `cleanup()` stops it, so a test stops one itself only to check what stopping does.
   */
  worker(options: Omit<WorkerOptions, 'amqpUrl' | 'prefix'>): Promise<Worker>;
  cleanup(): Promise<void>;
}

export async function startStack(options: StartOptions = {}): Promise<Stack> {
  const sfx = uniqueSuffix();
  const schema = `t_${sfx}`;
  const prefix = `t${sfx}`;
  const base: StartOptions = {
    databaseUrl: DATABASE_URL(),
    amqpUrl: AMQP_URL(),
    dbSchema: schema,
    amqpPrefix: prefix,
    httpPort: 0,
    outboxSweepMs: 200,
    outboxStaleMs: 1000,
    // Tests that check authentication pass apiTokens and apiInsecure: false.
    apiInsecure: true,
    logger: testLogger(),
    ...options,
  };
  const orchestrator = await Orchestrator.start(base);
  const namespaces = new Set<string>();
  const extra: Orchestrator[] = [];
  const workers: Worker[] = [];
  return {
    orchestrator,
    schema,
    prefix,
    amqpUrl: base.amqpUrl!,
    databaseUrl: base.databaseUrl!,
    namespaces,
    async register(...yaml) {
      const ts = yaml.map((y) => parseTemplate(y));
      await orchestrator.registerTemplates(ts);
      for (const t of ts) namespaces.add(t.namespace);
      return ts;
    },
    async another(more = {}) {
      const o = await Orchestrator.start({ ...base, ...more });
      extra.push(o);
      return o;
    },
    async worker(options) {
      const w = createWorker({ logger: testLogger(), ...options, amqpUrl: base.amqpUrl!, prefix });
      workers.push(w);
      await w.start();
      return w;
    },
    async cleanup() {
      for (const w of workers) await w.stop().catch(() => undefined);
      for (const o of extra) await o.stop().catch(() => undefined);
      await orchestrator.stop().catch(() => undefined);
      await dropTopology(base.amqpUrl!, prefix, [...namespaces]);
      if (process.env.TEST_KEEP_SCHEMA !== '1') await dropSchema(base.databaseUrl!, schema);
    },
  };
}

export async function dropSchema(databaseUrl: string, schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await c.end();
  }
}

/** Deletes the queues and exchanges of a prefix (core topology and the given namespaces). */
export async function dropTopology(amqpUrl: string, prefix: string, namespaces: string[]): Promise<void> {
  const { names } = await import('@tasker/protocol');
  const n = names(prefix);
  const conn = await amqp.connect(amqpUrl);
  try {
    const ch = await conn.createChannel();
    const topologies = [coreTopology(n), ...namespaces.map((ns) => namespaceTopology(n, ns))];
    for (const t of topologies) {
      for (const q of t.queues) await ch.deleteQueue(q.name);
      for (const e of t.exchanges) await ch.deleteExchange(e.name);
    }
    await ch.close();
  } finally {
    await conn.close();
  }
}

/** Polls until `check` returns a value (not undefined) or the time runs out. */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs = 15000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** What a test waits for: a task state, or any test of the task as the orchestrator shows it. */
export type TaskWanted = TaskState | ((task: TaskView) => boolean);

/**
 * Polls `getTask` until each task is as `wanted` says and returns them as last read. On time
 * out the error names what each unfinished task looked like (its state and its steps').
 */
export async function tasksWhen(
  o: Pick<Orchestrator, 'getTask'>,
  ids: readonly string[],
  wanted: TaskWanted,
  timeoutMs = 15000,
): Promise<TaskView[]> {
  const ok = typeof wanted === 'string' ? (t: TaskView) => t.state === wanted : wanted;
  const last = new Map<string, TaskView | null>();
  const want = typeof wanted === 'string' ? `to be ${wanted}` : 'to be as the test wants';
  try {
    return await eventually(
      async () => {
        const tasks = await Promise.all(ids.map((id) => o.getTask(id)));
        tasks.forEach((t, i) => last.set(ids[i]!, t));
        return tasks.every((t) => t !== null && ok(t)) ? (tasks as TaskView[]) : undefined;
      },
      timeoutMs,
      `${ids.length === 1 ? `task ${ids[0]}` : `${ids.length} tasks`} ${want}`,
    );
  } catch (err) {
    const seen = [...last]
      .filter(([, t]) => t === null || !ok(t))
      .map(([id, t]) => (t ? `${id} ${t.state} [${t.steps.map((s) => `${s.name}:${s.state}`).join(' ')}]` : `${id} not found`));
    throw new Error(`${(err as Error).message}; last seen: ${seen.join('; ')}`);
  }
}

/** {@link tasksWhen} for one task. */
export async function taskWhen(o: Pick<Orchestrator, 'getTask'>, id: string, wanted: TaskWanted, timeoutMs = 15000): Promise<TaskView> {
  return (await tasksWhen(o, [id], wanted, timeoutMs))[0]!;
}

/** A task that is no longer in progress (complete, error or cancelled). */
export const finished = (t: TaskView): boolean => t.state !== 'in_progress';
