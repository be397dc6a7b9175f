// What one result write costs, one task at a time (issue 7, the per-step overhead): the
// statement the orchestrator sends for a step's result when its task cache holds the task
// (`writeCheckedPlan`: one prepared statement on kept plans, its own transaction), timed from
// the call to its answer, on a schema of its own that is dropped afterwards. Beside it, the
// floor: a PL/pgSQL function that does nothing, called with the same arguments the same way,
// in the same loop, so what is left is the write's own work and its commit.
//
//   npx tsx packages/orchestrator/scripts/write-cost.ts [--tasks N] [--warmup N] [--sql FILE]
//
// Each task is a 4-step chain inserted with plain INSERTs (not timed); each of its four
// results is then written as the orchestrator writes it: the step done, the next one
// released with its audit rows and one outbox row (the last result ends the task instead).
// `--sql FILE` runs a file of SQL on the schema after its migrations, to measure a candidate
// replacement of a function (CREATE OR REPLACE …) against the migrated one in another run.
// Figures move with the machine; compare runs taken close together, alternately. Where
// Postgres runs on this machine, it also prints the CPU time its backend spent on each call
// (/proc/<pid>/schedstat, in nanoseconds), which moves far less than the time a call takes:
// the commit's wait for the disk is in the one and not the other.
import { existsSync, readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { sql, type Kysely } from 'kysely';
import pino from 'pino';
import { resolveConfig } from '../src/config.ts';
import { createDb, preparedQuery, type Database } from '../src/db/database.ts';
import { ensureDatabase, migrate } from '../src/db/migrate.ts';
import type { OutgoingMessage } from '../src/outbox/outbox.ts';
import { planBatch, type Change } from '../src/results/batch-plan.ts';
import { batchTransaction, checkedWriteArgs, writeCheckedPlan } from '../src/results/batch-store.ts';
import { TaskCache } from '../src/results/task-cache.ts';

export interface WriteCostOptions {
  databaseUrl: string;
  /** Tasks measured (four writes each). */
  tasks: number;
  /** Tasks run first and not measured. */
  warmup: number;
  /** SQL run on the schema after its migrations. */
  extraSql?: string;
}

export interface Percentiles {
  samples: number;
  p50: number;
  p90: number;
  p99: number;
}

export interface WriteCostResult {
  /** The result write, ms from the call to its answer. */
  write: Percentiles;
  /** The no-op function with the same arguments, ms. */
  floor: Percentiles;
  /**
   * The CPU time the backend spent on each call, µs, where Postgres runs on this machine
   * (its process's schedstat); undefined where it does not.
   */
  backendCpuUs?: { write: Percentiles; floor: Percentiles };
  /** What the writes left: tasks complete with their four steps, audit rows, outbox rows. */
  written: { complete: number; audit: number; outbox: number };
  /** The schema it ran on, dropped by now. */
  schema: string;
}

const STEPS = ['a', 'b', 'c', 'd'];

/** Runs the loop on a schema of its own and drops it; throws if a write found its task changed or left it unfinished. */
export async function measureWriteCost(o: WriteCostOptions): Promise<WriteCostResult> {
  const logger = pino({ level: 'warn' });
  const schema = `write_cost_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  await ensureDatabase(o.databaseUrl, logger);
  const { db } = createDb(o.databaseUrl, schema, 1);
  try {
    await migrate(db, schema, logger);
    if (o.extraSql) await sql.raw(o.extraSql).execute(db);
    await sql.raw(`
      CREATE FUNCTION write_cost_floor(p_task_ids text[], p_seen_tasks text, p_seen_steps text,
        p_steps jsonb, p_tasks jsonb, p_transitions jsonb, p_outbox jsonb)
      RETURNS bigint[] LANGUAGE plpgsql VOLATILE AS $fn$ BEGIN RETURN '{}'::bigint[]; END $fn$;
      INSERT INTO namespaces (name) VALUES ('bench');
      INSERT INTO templates (namespace, name, version, major, minor, patch, definition)
        VALUES ('bench', 'linear4', '1.0.0', 1, 0, 0, '{}');`).execute(db);
    const writes: number[] = [];
    const floors: number[] = [];
    const cpu = await backendCpu(db);
    const writeCpu: number[] = [];
    const floorCpu: number[] = [];
    for (let i = 0; i < o.warmup + o.tasks; i++) {
      const id = `tsk_writecost${i}`;
      const step = (n: string) => `stp_writecost${i}${n}`;
      await sql`INSERT INTO tasks (id, namespace, name, version, template_id, state, context, correlation_id)
        SELECT ${id}, 'bench', 'linear4', '1.0.0', id, 'in_progress', '{"n":1}', ${id} FROM templates`.execute(db);
      await sql`INSERT INTO steps (id, task_id, name, position, state, attempt, max_attempts, deps_pending, dependents, enqueued_at) VALUES
        (${step('a')}, ${id}, 'a', 0, 'enqueued', 1, 3, 0, ${[step('b')]}::text[], now()),
        (${step('b')}, ${id}, 'b', 1, 'pending', 0, 3, 1, ${[step('c')]}::text[], NULL),
        (${step('c')}, ${id}, 'c', 2, 'pending', 0, 3, 1, ${[step('d')]}::text[], NULL),
        (${step('d')}, ${id}, 'd', 3, 'pending', 0, 3, 1, '{}', NULL)`.execute(db);
      // The task as a batch that read it leaves it in the orchestrator's cache.
      const cache = new TaskCache(1 << 20);
      const read = await batchTransaction(db, (tx) => tx.lockAndReadSteps([id]));
      cache.keep(read.tasks, read.steps.values());
      for (let k = 0; k < STEPS.length; k++) {
        const held = cache.take([id]);
        if (!held) throw new Error(`task ${id}: not held after step ${STEPS[k - 1]}`);
        const at = new Date().toISOString();
        const change: Change = {
          id: step(STEPS[k]!), task_id: id, attempt: 1, from_state: 'enqueued', state: 'complete', waiting_for: null,
          result: { ok: true }, error: null, started_at: at, finished_at: at, retry_in_ms: null, reason: 'result: success',
        };
        const plan = planBatch(held.tasks, held.steps, [change]);
        const next = STEPS[k + 1];
        const messages: OutgoingMessage[] = next
          ? [{ exchange: 'tasker.steps', routingKey: 'bench', body: '', properties: { persistent: true, contentType: 'application/json', type: 'step' }, stepRefs: [[step(next), 1]] }]
          : [];
        const floorArgs = checkedWriteArgs(held.check, plan, messages);
        // Each call after a pause, as a step's result finds the processes between two steps:
        // woken, their caches filled by other work.
        await pause();
        const fc0 = cpu?.();
        const f0 = performance.now();
        await preparedQuery(db, FLOOR, floorArgs);
        const f1 = performance.now();
        const fc1 = cpu?.();
        await pause();
        const wc0 = cpu?.();
        const w0 = performance.now();
        const outbox = await writeCheckedPlan(db, held.check, plan, messages);
        const w1 = performance.now();
        const wc1 = cpu?.();
        if (!outbox) throw new Error(`task ${id}: the write found the task changed since it was held`);
        if (i >= o.warmup) {
          floors.push(f1 - f0);
          writes.push(w1 - w0);
          if (cpu) {
            floorCpu.push((fc1! - fc0!) / 1000);
            writeCpu.push((wc1! - wc0!) / 1000);
          }
        }
        cache.keep(held.tasks, held.steps.values());
      }
    }
    const { rows } = await sql<{ complete: number; audit: number; outbox: number }>`
      SELECT (SELECT count(*)::int FROM tasks t WHERE t.state = 'complete'
                AND (SELECT count(*) FROM steps s WHERE s.task_id = t.id AND s.state = 'complete') = 4) AS complete,
             (SELECT count(*)::int FROM transitions) AS audit,
             (SELECT count(*)::int FROM outbox) AS outbox`.execute(db);
    const written = rows[0]!;
    const n = o.warmup + o.tasks;
    if (written.complete !== n) throw new Error(`expected ${n} complete tasks with their four steps complete, found ${written.complete}`);
    // Each task: four steps complete, three released, the task complete; three step messages.
    // A replacement (`extraSql`) may write less; its counts are reported, not checked.
    if (!o.extraSql && (written.audit !== n * 8 || written.outbox !== n * 3)) {
      throw new Error(`expected ${n * 8} audit rows and ${n * 3} outbox rows, found ${written.audit} and ${written.outbox}`);
    }
    return {
      write: percentiles(writes),
      floor: percentiles(floors),
      ...(cpu ? { backendCpuUs: { write: percentiles(writeCpu), floor: percentiles(floorCpu) } } : {}),
      written,
      schema,
    };
  } finally {
    await db.schema.dropSchema(schema).ifExists().cascade().execute();
    await db.destroy();
  }
}

const pause = () => new Promise((r) => setTimeout(r, 1));

/**
 * A reader of the CPU time, in ns, that the backend of `db`'s one connection has used so far
 * (the first field of /proc/<pid>/schedstat), or undefined where that process is not on this
 * machine: a Postgres elsewhere, or one whose pid here belongs to another process.
 */
async function backendCpu(db: Kysely<Database>): Promise<(() => number) | undefined> {
  const { rows } = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(db);
  const pid = rows[0]?.pid;
  const file = `/proc/${pid}/schedstat`;
  if (!pid || !existsSync(file)) return undefined;
  try {
    if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('postgres')) return undefined;
  } catch {
    return undefined;
  }
  return () => Number(readFileSync(file, 'utf8').split(' ')[0]);
}

const FLOOR = `/* prepared:write_cost_floor */
  SELECT write_cost_floor($1::text[], $2, $3, $4::jsonb, $5::jsonb, $6::jsonb, $7::jsonb)`;

function percentiles(ms: number[]): Percentiles {
  const s = [...ms].sort((a, b) => a - b);
  const at = (p: number) => Math.round((s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN) * 1000) / 1000;
  return { samples: s.length, p50: at(50), p90: at(90), p99: at(99) };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({ options: { tasks: { type: 'string', default: '250' }, warmup: { type: 'string', default: '50' }, sql: { type: 'string' } } });
  const whole = (name: string, v: string | undefined) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} takes a whole number, not '${v}'`);
    return n;
  };
  const tasks = whole('tasks', values.tasks);
  if (tasks < 1) throw new Error('--tasks must be at least 1');
  const r = await measureWriteCost({
    databaseUrl: resolveConfig().databaseUrl,
    tasks,
    warmup: whole('warmup', values.warmup),
    ...(values.sql ? { extraSql: readFileSync(values.sql, 'utf8') } : {}),
  });
  const line = (what: string, p: Percentiles) => `${what.padEnd(62)} ${String(p.p50).padStart(7)} ${String(p.p90).padStart(7)} ${String(p.p99).padStart(7)}`;
  process.stdout.write(
    [
      `one task at a time, ${r.write.samples} writes${values.sql ? `, with ${values.sql} applied` : ''}, ms`.padEnd(62) + '     p50     p90     p99',
      line('result write (writeCheckedPlan: 2 step rows, audit, outbox)', r.write),
      line('no-op function, same arguments (the round trip alone)', r.floor),
      ...(r.backendCpuUs
        ? [
            'the Postgres backend\'s CPU time a call, µs'.padEnd(62) + '     p50     p90     p99',
            line('result write', r.backendCpuUs.write),
            line('no-op function', r.backendCpuUs.floor),
          ]
        : ['the Postgres backend\'s CPU time: not measured (its process is not on this machine)']),
      `written: ${r.written.complete} tasks complete, ${r.written.audit} audit rows, ${r.written.outbox} outbox rows`,
      '',
    ].join('\n'),
  );
}
