import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import pino from 'pino';
import { createDb, jsonLiteral } from '../src/db/database.ts';
import { ensureDatabase, migrate } from '../src/db/migrate.ts';
import { planBatch, type Change } from '../src/results/batch-plan.ts';
import { batchTransaction, KEPT_PLAN_TASKS, lockAndReadSteps, writeCheckedPlan, writePlan } from '../src/results/batch-store.ts';
import { TaskCache } from '../src/results/task-cache.ts';
import { DATABASE_URL } from './support/statements.ts';

const url = DATABASE_URL;
const schema = `store_${Math.random().toString(36).slice(2, 10)}`;
const logger = pino({ level: 'silent' });

describe('result batch store', () => {
  const { db } = createDb(url, schema, 4);
  beforeAll(async () => {
    await ensureDatabase(url, logger);
    await migrate(db, schema, logger);
    await sql`INSERT INTO namespaces (name) VALUES ('ns');
      INSERT INTO templates (namespace, name, version, major, minor, patch, definition) VALUES ('ns', 'two', '1.0.0', 1, 0, 0, '{}')`.execute(db);
  });
  afterAll(async () => {
    await db.schema.dropSchema(schema).ifExists().cascade().execute();
    await db.destroy();
  });

  async function task(id: string) {
    await sql`INSERT INTO tasks (id, namespace, name, version, template_id, state, context, correlation_id)
      SELECT ${id}, 'ns', 'two', '1.0.0', id, 'in_progress', '{"x":1}', 'corr' FROM templates`.execute(db);
    await sql`INSERT INTO steps (id, task_id, name, position, state, attempt, max_attempts, deps_pending, dependents) VALUES
      (${`${id}_a`}, ${id}, 'a', 0, 'enqueued', 1, 3, 0, ${[`${id}_b`]}::text[]),
      (${`${id}_b`}, ${id}, 'b', 1, 'pending', 0, 3, 1, '{}')`.execute(db);
  }
  const done = (id: string): Change => ({
    id: `${id}_a`, task_id: id, attempt: 1, from_state: 'enqueued', state: 'complete', waiting_for: null, result: { n: 1 },
    error: null, started_at: new Date().toISOString(), finished_at: new Date().toISOString(), retry_in_ms: null, reason: 'result: success',
  });

  it('reads the locked tasks and all their steps, and writes the plan (steps, audit, outbox) and commits in one round trip', async () => {
    await task('t_ok');
    const outbox = await batchTransaction(db, async (tx) => {
      const { tasks, steps } = await tx.lockAndReadSteps(['t_ok', 't_ok', 't_missing']);
      expect([...tasks.keys()]).toEqual(['t_ok']);
      expect(tasks.get('t_ok')).toMatchObject({ state: 'in_progress', template_id: expect.any(String), context: { x: 1 } });
      expect([...steps.keys()].sort()).toEqual(['t_ok_a', 't_ok_b']);
      const plan = planBatch(tasks, steps, [done('t_ok')]);
      return tx.writePlanAndCommit(plan, [{ exchange: 'ex', routingKey: 'ns', body: '{"quote":"it\'s \\\\ fine"}', properties: { persistent: true } }]);
    });
    expect(outbox).toHaveLength(1);
    const { rows } = await sql<{ name: string; state: string; attempt: number; deps_pending: number; result: unknown; enqueued: boolean }>`
      SELECT name, state, attempt, deps_pending, result, enqueued_at IS NOT NULL AS enqueued FROM steps WHERE task_id = 't_ok' ORDER BY name`.execute(db);
    expect(rows).toEqual([
      { name: 'a', state: 'complete', attempt: 1, deps_pending: 0, result: { n: 1 }, enqueued: false },
      { name: 'b', state: 'enqueued', attempt: 1, deps_pending: 0, result: null, enqueued: true },
    ]);
    const { rows: audit } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM transitions WHERE task_id = 't_ok'`.execute(db);
    expect(audit[0]!.n).toBe(2);
    const { rows: ob } = await sql<{ id: string; body: string }>`SELECT id::text, body FROM outbox`.execute(db);
    expect(ob.map((r) => r.id)).toEqual(outbox.map((o) => o.id));
    // Values travel as literals in the statement's text: quotes and backslashes arrive intact.
    expect(ob[0]!.body).toBe('{"quote":"it\'s \\\\ fine"}');
  });

  it('a row changed after it was read aborts the whole write: nothing of the plan lands', async () => {
    await task('t_race');
    const attempt = batchTransaction(db, async (tx) => {
      const { tasks, steps } = await tx.lockAndReadSteps(['t_race']);
      // Another writer that ignores the task lock (none does; this is the safety net).
      await sql`UPDATE steps SET deps_pending = 0 WHERE id = 't_race_b'`.execute(db);
      return tx.writePlanAndCommit(planBatch(tasks, steps, [done('t_race')]), []);
    });
    // serialization_failure, which the batch consumer retries.
    await expect(attempt).rejects.toMatchObject({ code: '40001', message: expect.stringContaining('1 of 2 step rows') });
    const { rows } = await sql<{ state: string }>`SELECT state FROM steps WHERE id = 't_race_a'`.execute(db);
    expect(rows[0]!.state).toBe('enqueued');
    const { rows: audit } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM transitions WHERE task_id = 't_race'`.execute(db);
    expect(audit[0]!.n).toBe(0);
  });

  it('a batch that ends without writing, or throws, rolls back and leaves its connection out of any transaction', async () => {
    await task('t_quiet');
    const one = createDb(url, schema, 1);
    try {
      expect(await batchTransaction(one.db, async (tx) => (await tx.lockAndReadSteps(['t_quiet'])).steps.size)).toBe(2);
      await expect(
        batchTransaction(one.db, async (tx) => {
          await tx.lockAndReadSteps(['t_quiet']);
          throw new Error('template gone');
        }),
      ).rejects.toThrow('template gone');
      // The pool's only connection is back, in no transaction, and the task lock is free.
      const { rows } = await sql<{ xid: string | null }>`SELECT txid_current_if_assigned()::text AS xid`.execute(one.db);
      expect(rows[0]!.xid).toBeNull();
      // The small batch's kept plans were the transaction's setting only.
      const { rows: mode } = await sql<{ plan_cache_mode: string }>`SHOW plan_cache_mode`.execute(one.db);
      expect(mode[0]!.plan_cache_mode).toBe('force_custom_plan');
      const free = await db.transaction().execute(async (trx) =>
        (await sql<{ id: string }>`SELECT id FROM tasks WHERE id = 't_quiet' FOR UPDATE NOWAIT`.execute(trx)).rows.length,
      );
      expect(free).toBe(1);
      const { rows: steps } = await sql<{ state: string }>`SELECT state FROM steps WHERE task_id = 't_quiet' ORDER BY name`.execute(db);
      expect(steps.map((r) => r.state)).toEqual(['enqueued', 'pending']);
    } finally {
      await one.db.destroy();
    }
  });

  /** The tasks as they are now, held by a fresh TaskCache (as a batch that read them would leave them). */
  async function held(ids: string[], on = db) {
    const cache = new TaskCache(1 << 20);
    const read = await batchTransaction(on, (tx) => tx.lockAndReadSteps(ids));
    cache.keep(read.tasks, read.steps.values());
    return cache.take(ids)!;
  }
  /** A Db of one connection on this installation, and the text of every query it sends. */
  function recordingDb() {
    const one = createDb(url, schema, 1);
    const sent: string[] = [];
    one.pool.on('connect', (client) => {
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      client.query = ((...args: unknown[]) => {
        sent.push(typeof args[0] === 'string' ? args[0] : String((args[0] as { text?: string }).text));
        return query(...args);
      }) as typeof client.query;
    });
    return { one, sent };
  }
  /**
   * A fresh installation in a schema of its own (its tables empty, then one task of one
   * enqueued step, 't_fresh_a'), on one connection whose notices land in `plans`; `explain()`
   * has auto_explain send every plan from then on, nested statements' too.
   */
  async function freshInstallation(name: string) {
    const fresh = `${schema}_${name}`;
    const one = createDb(url, fresh, 1);
    const plans: string[] = [];
    one.pool.on('connect', (client) => client.on('notice', (n) => plans.push(String(n.message))));
    await migrate(one.db, fresh, logger);
    await sql`INSERT INTO namespaces (name) VALUES ('ns');
      INSERT INTO templates (namespace, name, version, major, minor, patch, definition) VALUES ('ns', 'one', '1.0.0', 1, 0, 0, '{}');
      INSERT INTO tasks (id, namespace, name, version, template_id, state, context, correlation_id)
        SELECT 't_fresh', 'ns', 'one', '1.0.0', id, 'in_progress', '{}', 'corr' FROM templates;
      INSERT INTO steps (id, task_id, name, position, state, attempt, max_attempts, deps_pending, dependents)
        VALUES ('t_fresh_a', 't_fresh', 'a', 0, 'enqueued', 1, 3, 0, '{}')`.execute(one.db);
    return {
      db: one.db,
      plans,
      explain: () =>
        sql`LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on;
          SET auto_explain.log_level = notice`.execute(one.db),
      drop: async () => {
        await one.db.schema.dropSchema(fresh).ifExists().cascade().execute();
        await one.db.destroy();
      },
    };
  }
  const auditRows = async (id: string) =>
    (await sql<{ n: number }>`SELECT count(*)::int AS n FROM transitions WHERE task_id = ${id}`.execute(db)).rows[0]!.n;

  it('a batch planned from the task cache is written by one prepared statement, its own transaction, when every row is as it was held', async () => {
    await task('t_held');
    const batch = await held(['t_held']);
    const { one, sent } = recordingDb();
    try {
      const outbox = await writeCheckedPlan(one.db, batch.check, planBatch(batch.tasks, batch.steps, [done('t_held')]), [
        { exchange: 'ex', routingKey: 'ns', body: '{}', properties: {} },
      ]);
      expect(outbox).toHaveLength(1);
      expect(sent).toHaveLength(1);
      // On plans kept for the connection: a batch of one task (KEPT_PLAN_TASKS).
      expect(sent[0]).toMatch(/^\/\* prepared:result_write_checked_kept \*\/\s+SELECT write_result_rows_checked_kept\(\$1::text\[\]/);
      expect(sent[0]).not.toMatch(/BEGIN|COMMIT/);
    } finally {
      await one.db.destroy();
    }
    const { rows } = await sql<{ name: string; state: string; deps_pending: number }>`
      SELECT name, state, deps_pending FROM steps WHERE task_id = 't_held' ORDER BY name`.execute(db);
    expect(rows).toEqual([
      { name: 'a', state: 'complete', deps_pending: 0 },
      { name: 'b', state: 'enqueued', deps_pending: 0 },
    ]);
    expect(await auditRows('t_held')).toBe(2);
  });

  it('a batch planned from the task cache writes nothing, and says so, when a row differs from what was held', async () => {
    const changes: Array<[string, (id: string) => Promise<unknown>]> = [
      // A task's state (the plan writes no task row here, so only the check sees it).
      ['task state', (id) => sql`UPDATE tasks SET state = 'cancelled' WHERE id = ${id}`.execute(db)],
      // A step the plan does not write: one more step than was held.
      ['a step more', (id) => sql`INSERT INTO steps (id, task_id, name, position, state, attempt, max_attempts, deps_pending, dependents)
        VALUES (${`${id}_c`}, ${id}, 'c', 2, 'pending', 0, 3, 1, '{}')`.execute(db)],
      // The attempt of the step the result is for (without the check, the write's compare-and-set would raise).
      ['an attempt', (id) => sql`UPDATE steps SET attempt = 2 WHERE id = ${`${id}_a`}`.execute(db)],
    ];
    for (const [what, change] of changes) {
      const id = `t_stale_${what.replace(/ /g, '_')}`;
      await task(id);
      const batch = await held([id]);
      await change(id);
      const { rows: before } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM outbox`.execute(db);
      const outbox = await writeCheckedPlan(db, batch.check, planBatch(batch.tasks, batch.steps, [done(id)]), [{ exchange: 'ex', routingKey: 'ns', body: '{}', properties: {} }]);
      expect(outbox, what).toBeNull();
      const { rows } = await sql<{ state: string }>`SELECT state FROM steps WHERE id = ${`${id}_a`}`.execute(db);
      expect(rows[0]!.state, what).toBe('enqueued');
      expect(await auditRows(id), what).toBe(0);
      const { rows: after } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM outbox`.execute(db);
      expect(after[0]!.n, what).toBe(before[0]!.n);
    }
  });

  it('rows sent by position (write_result_rows, migration 0011) write exactly what rows sent by key (write_result_batch) wrote', async () => {
    // The same batch for two copies of four tasks: a step completed with a result, one to
    // retry, one failed for good (its task fails), one waiting for a child task; an audit row
    // with an actor, and a message with headers. One copy goes through write_result_batch
    // with rows of keys, as the orchestrator sent them before 0011; the other through
    // writePlan, rows of positions.
    const cases = ['done', 'retry', 'fail', 'wait'];
    const at = '2026-11-27T10:00:00.123Z';
    const change = (p: string, c: string): Change => {
      const base = { id: `${p}${c}_a`, task_id: `${p}${c}`, attempt: 1, from_state: 'enqueued', waiting_for: null, result: null, error: null, started_at: at, finished_at: at, retry_in_ms: null };
      if (c === 'done') return { ...base, state: 'complete', result: { n: 1, q: "it's \\ $j$ é" }, reason: 'result: success' };
      if (c === 'retry') return { ...base, state: 'waiting_retry', error: { message: 'try again' }, retry_in_ms: 1500, reason: 'result: retryable error' };
      if (c === 'fail') return { ...base, state: 'error', error: { message: 'boom', kind: 'permanent' }, reason: 'result: permanent error' };
      return { ...base, state: 'waiting_child', waiting_for: `${p}done`, started_at: null, reason: 'result: waiting for a child task' };
    };
    const messages = [{ exchange: 'ex', routingKey: 'ns', body: '{"a":"it\'s \\\\ ok"}', properties: { persistent: true, headers: { h: [1, null] } } }];
    // write_result_batch takes every audit row; write_result_rows writes them from the rows'
    // reasons (migration 0018): the same rows, built here the way the orchestrator built them.
    const audit = (plan: ReturnType<typeof planBatch>, stepTask: (id: string) => string) => [
      ...plan.audit,
      ...plan.steps.filter((w) => w.reason !== null).map((w) => ({
        task_id: stepTask(w.id), step_id: w.id, from_state: w.from_state, to_state: w.state, attempt: w.attempt || null, reason: w.reason, actor: w.actor ?? null,
      })),
      ...plan.tasks.map((t) => ({ task_id: t.id, step_id: null, from_state: t.from_state, to_state: t.state, attempt: null, reason: t.reason, actor: null })),
    ];
    const byKey = (plan: ReturnType<typeof planBatch>, stepTask: (id: string) => string) => [
      plan.steps.map((w) => {
        const c = w.outcome;
        return {
          id: w.id, from_state: w.from_state, from_attempt: w.from_attempt, from_deps_pending: w.from_deps_pending, state: w.state,
          attempt: w.attempt, deps_pending: w.deps_pending, enqueue: w.enqueue, outcome: c !== null,
          result: c && c.state === 'complete' ? (c.result ?? null) : null, error: c ? c.error : null, started_at: c?.started_at ?? null,
          finished_at: c?.finished_at ?? null, retry_in_ms: c?.retry_in_ms ?? null, waiting_for: c?.waiting_for ?? null,
        };
      }),
      plan.tasks,
      audit(plan, stepTask),
      messages.map((m) => ({ exchange: m.exchange, routing_key: m.routingKey, body: m.body, properties: m.properties })),
    ];
    for (const p of ['pk_', 'pp_']) {
      for (const c of cases) await task(`${p}${c}`);
      await db.transaction().execute(async (trx) => {
        const ids = cases.map((c) => `${p}${c}`);
        const { tasks, steps } = await lockAndReadSteps(trx, ids);
        const plan = planBatch(tasks, steps, cases.map((c) => change(p, c)));
        expect(plan.tasks.map((t) => [t.id, t.state])).toEqual([[`${p}fail`, 'error']]);
        plan.steps[0]!.actor = 'ops@example.com';
        if (p === 'pp_') return writePlan(trx, plan, messages);
        const [a, b, t, o] = byKey(plan, (id) => steps.get(id)!.task_id).map((v) => JSON.stringify(v));
        await sql`SELECT write_result_batch(${a}::jsonb, ${b}::jsonb, ${t}::jsonb, ${o}::jsonb)`.execute(trx);
      });
    }
    const written = async (p: string) => {
      const strip = (v: unknown) => JSON.parse(JSON.stringify(v).replaceAll(p, ''));
      const { rows: steps } = await sql`
        SELECT task_id, name, state, attempt, deps_pending, result, error, started_at, finished_at, next_retry_at IS NOT NULL AS retry_set,
               waiting_for_task_id, enqueued_at IS NOT NULL AS enqueued
        FROM steps WHERE task_id LIKE ${`${p}%`} ORDER BY task_id, name`.execute(db);
      const { rows: tasks } = await sql`
        SELECT id, state, error, completed_at IS NOT NULL AS completed FROM tasks WHERE id LIKE ${`${p}%`} ORDER BY id`.execute(db);
      const { rows: audit } = await sql`
        SELECT task_id, step_id, from_state, to_state, attempt, reason, actor FROM transitions WHERE task_id LIKE ${`${p}%`} ORDER BY task_id, id`.execute(db);
      return strip({ steps, tasks, audit });
    };
    const keys = await written('pk_');
    const positions = await written('pp_');
    expect(positions).toEqual(keys);
    // And what was written is what the batch said, not two identical mistakes.
    expect(positions.steps).toContainEqual(expect.objectContaining({ task_id: 'done', name: 'a', state: 'complete', result: { n: 1, q: "it's \\ $j$ é" }, error: null }));
    expect(positions.steps).toContainEqual(expect.objectContaining({ task_id: 'done', name: 'b', state: 'enqueued', attempt: 1, deps_pending: 0, enqueued: true }));
    expect(positions.steps).toContainEqual(expect.objectContaining({ task_id: 'retry', name: 'a', state: 'waiting_retry', error: { message: 'try again' }, retry_set: true }));
    expect(positions.steps).toContainEqual(expect.objectContaining({ task_id: 'wait', name: 'a', state: 'waiting_child', waiting_for_task_id: 'done', started_at: null }));
    expect(positions.tasks).toContainEqual({ id: 'fail', state: 'error', error: { step: 'a', error: { message: 'boom', kind: 'permanent' } }, completed: true });
    expect(positions.audit).toContainEqual(expect.objectContaining({ task_id: 'done', step_id: 'done_a', actor: 'ops@example.com' }));
    expect(positions.audit.filter((r: { actor: string | null }) => r.actor === null)).toHaveLength(positions.audit.length - 1);
    // The two copies' messages: the last two outbox rows.
    const { rows: outbox } = await sql`SELECT exchange, routing_key, body, properties FROM outbox ORDER BY id DESC LIMIT 2`.execute(db);
    const message = { exchange: 'ex', routing_key: 'ns', body: '{"a":"it\'s \\\\ ok"}', properties: { persistent: true, headers: { h: [1, null] } } };
    expect(outbox).toEqual([message, message]);
  });

  it('a JSON literal reaches Postgres as the same value, whatever quotes, backslashes or dollar tags it holds', async () => {
    const value = { a: "it's", b: 'back\\slash', c: '$j$ and $j0$', d: ['$$', "''"], e: 'é \u2028' };
    const { rows } = await sql<{ v: unknown }>`SELECT ${sql.raw(jsonLiteral(value))} AS v`.execute(db);
    expect(rows[0]!.v).toEqual(value);
  });

  it('a batch of more tasks than run on kept plans is planned for its size and written the same way', async () => {
    const ids = Array.from({ length: KEPT_PLAN_TASKS + 4 }, (_, i) => `t_big${i}`);
    for (const id of ids) await task(id);
    const outbox = await batchTransaction(db, async (tx) => {
      const { tasks, steps } = await tx.lockAndReadSteps(ids);
      expect(steps.size).toBe(ids.length * 2);
      return tx.writePlanAndCommit(planBatch(tasks, steps, ids.map(done)), []);
    });
    expect(outbox).toEqual([]);
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM steps WHERE task_id = ANY(${ids}::text[]) AND state = 'enqueued' AND name = 'b'`.execute(db);
    expect(rows[0]!.n).toBe(ids.length);
  });

  it('a batch from the task cache of more tasks than run on kept plans is written by the statement planned for its size', async () => {
    const ids = Array.from({ length: KEPT_PLAN_TASKS + 4 }, (_, i) => `t_bigheld${i}`);
    for (const id of ids) await task(id);
    const batch = await held(ids);
    const { one, sent } = recordingDb();
    try {
      const outbox = await writeCheckedPlan(one.db, batch.check, planBatch(batch.tasks, batch.steps, ids.map(done)), []);
      expect(outbox).toEqual([]);
      expect(sent).toHaveLength(1);
      expect(sent[0]).toMatch(/^\/\* prepared:result_write_checked \*\/\s+SELECT write_result_rows_checked\(\$1::text\[\]/);
    } finally {
      await one.db.destroy();
    }
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM steps WHERE task_id = ANY(${ids}::text[]) AND state = 'enqueued' AND name = 'b'`.execute(db);
    expect(rows[0]!.n).toBe(ids.length);
  });

  it("a small batch from the task cache runs on kept plans by the function's own settings: made while the tables are empty, they find every row by key", async () => {
    // write_result_rows_checked_kept (migration 0014) runs outside a transaction block, so no
    // SET LOCAL gives its statements their settings: the function's own do. On a fresh
    // installation's empty tables, a plan made for the values would scan them whole.
    const fresh = await freshInstallation('fresh_held');
    try {
      const batch = await held(['t_fresh'], fresh.db);
      await fresh.explain();
      const outbox = await writeCheckedPlan(fresh.db, batch.check, planBatch(batch.tasks, batch.steps, [done('t_fresh')]), []);
      expect(outbox).toEqual([]);
      const nodes = fresh.plans.flatMap((p) => p.split('\n').filter((l) => l.includes('(cost='))).join('\n');
      expect(nodes).toMatch(/Index Scan using steps_pkey on steps/);
      expect(nodes).toMatch(/Index Scan using tasks_pkey on tasks/);
      expect(nodes).not.toMatch(/Seq Scan|Hash Join|Merge Join/);
      const { rows } = await sql<{ state: string }>`SELECT state FROM tasks WHERE id = 't_fresh'`.execute(fresh.db);
      expect(rows[0]!.state).toBe('complete');
    } finally {
      await fresh.drop();
    }
  });

  it("a small batch's kept plan, made while the tables are empty, finds every row it writes by primary key", async () => {
    // A plan kept from an empty table must not scan the table once it has grown: auto_explain
    // shows the plans the write runs on (made here, on a fresh installation's empty tables).
    const fresh = await freshInstallation('fresh');
    try {
      await fresh.explain();
      await batchTransaction(fresh.db, async (tx) => {
        const { tasks, steps } = await tx.lockAndReadSteps(['t_fresh']);
        const plan = planBatch(tasks, steps, [done('t_fresh')]);
        expect(plan.tasks).toHaveLength(1);
        return tx.writePlanAndCommit(plan, []);
      });
      // The plan's nodes (the query text above them is left out).
      const write = fresh.plans
        .find((p) => p.includes('Update on steps'))
        ?.split('\n')
        .filter((l) => l.includes('(cost='))
        .join('\n');
      expect(write).toBeDefined();
      expect(write).toMatch(/Index Scan using steps_pkey on steps/);
      expect(write).toMatch(/Index Scan using tasks_pkey on tasks/);
      expect(write).not.toMatch(/Seq Scan|tasks_live_idx|Hash Join|Merge Join/);
      // And the lock-and-read's statements look their rows up by key too.
      const nodes = fresh.plans.flatMap((p) => p.split('\n').filter((l) => l.includes('(cost=')));
      expect(nodes.join('\n')).toMatch(/Index Scan on tasks_pkey/);
      expect(nodes.join('\n')).toMatch(/Index Scan on steps_task_id_name_key/);
      expect(nodes.join('\n')).not.toMatch(/Seq Scan|Hash Join|Merge Join/);
      const { rows } = await sql<{ state: string }>`SELECT state FROM tasks WHERE id = 't_fresh'`.execute(fresh.db);
      expect(rows[0]!.state).toBe('complete');
    } finally {
      await fresh.drop();
    }
  });
});
