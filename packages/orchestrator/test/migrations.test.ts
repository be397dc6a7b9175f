import { existsSync } from 'node:fs';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { droppedMeanwhile, ensureDatabase } from '../src/db/migrate.ts';
import { scratchSchema } from './support/scratch-schema.ts';
import { DATABASE_URL, failure } from './support/statements.ts';

// An installation upgraded with rows in it: migration 0007 (identifier columns compare
// bytewise) applied on top of 0006 keeps every row, every index lookup and every guard.
const url = DATABASE_URL;
const logger = pino({ level: 'silent' });

describe('upgrading an installation that has tasks', () => {
  const scratch = scratchSchema('upgrade');
  const { schema, S, client: a } = scratch;

  beforeAll(async () => {
    expect(await scratch.open({ upTo: '0006_result_batch_write' })).toContain('0006_result_batch_write');
    await a.query(`INSERT INTO ${S}.namespaces (name) VALUES ('shop')`);
    const { rows } = await a.query(
      `INSERT INTO ${S}.templates (namespace, name, version, major, minor, patch, definition)
       VALUES ('shop', 'order', '1.0.0', 1, 0, 0, '{}') RETURNING id::text`,
    );
    for (const [id, parent, key] of [['tsk_B1', null, 'Key-É'], ['tsk_a1', 'tsk_B1', 'key-é']] as const) {
      await a.query(
        `INSERT INTO ${S}.tasks (id, namespace, name, version, template_id, state, context, correlation_id, idempotency_key, parent_task_id)
         VALUES ($1, 'shop', 'order', '1.0.0', $2, 'in_progress', '{}', $1, $3, $4)`,
        [id, rows[0].id, key, parent],
      );
      await a.query(
        `INSERT INTO ${S}.steps (id, task_id, name, position, state, max_attempts, deps_pending) VALUES ('stp_' || $1::text, $1, 'charge', 0, 'enqueued', 3, 0)`,
        [id],
      );
      await a.query(`INSERT INTO ${S}.transitions (task_id, step_id, to_state, reason) VALUES ($1, 'stp_' || $1::text, 'enqueued', 'created')`, [id]);
    }
    expect(await scratch.migrate()).toEqual(['0007_identifier_collation', '0008_result_batch_checked_write', '0009_task_creation_write', '0010_audit_single_index', '0011_positional_rows', '0012_held_newest_template', '0013_static_reference_checks', '0014_checked_write_statement', '0015_heap_only_step_updates', '0016_outbox_step_references', '0017_after_update_key_guards', '0018_audit_from_writes']);
  });
  afterAll(() => scratch.close());

  it('the identifier columns compare bytewise, and the rows written before are all there', async () => {
    const { rows: cols } = await a.query(
      `SELECT table_name || '.' || column_name AS col FROM information_schema.columns
       WHERE table_schema = $1 AND collation_name = 'C' ORDER BY 1`,
      [schema],
    );
    expect(cols.map((c) => c.col)).toEqual([
      'steps.id', 'steps.name', 'steps.task_id', 'steps.waiting_for_task_id',
      'tasks.correlation_id', 'tasks.id', 'tasks.idempotency_key', 'tasks.name', 'tasks.namespace', 'tasks.parent_task_id',
      'transitions.task_id',
    ]);
    const { rows } = await a.query(
      `SELECT t.id, s.id AS step, t.parent_task_id, (SELECT count(*)::int FROM ${S}.transitions x WHERE x.task_id = t.id) AS audit
       FROM ${S}.tasks t JOIN ${S}.steps s ON s.task_id = t.id ORDER BY t.id`,
    );
    expect(rows).toEqual([
      { id: 'tsk_B1', step: 'stp_tsk_B1', parent_task_id: null, audit: 1 },
      { id: 'tsk_a1', step: 'stp_tsk_a1', parent_task_id: 'tsk_B1', audit: 1 },
    ]);
  });

  it('lookups by id, by idempotency key and by step name use the rebuilt indexes and find the same rows', async () => {
    await a.query('SET enable_seqscan = off');
    try {
      const plan = await a.query(`EXPLAIN SELECT id FROM ${S}.tasks WHERE id = $1`, ['tsk_a1']);
      expect(plan.rows.map((r) => r['QUERY PLAN']).join('\n')).toMatch(/Index.*Scan using tasks_pkey/);
      const byId = await a.query(`SELECT id FROM ${S}.tasks WHERE id = $1`, ['tsk_a1']);
      expect(byId.rows).toEqual([{ id: 'tsk_a1' }]);
      const byKey = await a.query(`SELECT id FROM ${S}.tasks WHERE namespace = 'shop' AND idempotency_key = ANY($1::text[]) ORDER BY id`, [['Key-É', 'key-é', 'KEY-É']]);
      expect(byKey.rows.map((r) => r.id)).toEqual(['tsk_B1', 'tsk_a1']);
      const step = await a.query(`SELECT id FROM ${S}.steps WHERE task_id = $1 AND name = 'charge'`, ['tsk_a1']);
      expect(step.rows).toEqual([{ id: 'stp_tsk_a1' }]);
    } finally {
      await a.query('RESET enable_seqscan');
    }
  });

  it('the guards made again around the change still hold: unique keys, the parent reference, fixed ids', async () => {
    const dup = await failure(a.query(`UPDATE ${S}.tasks SET idempotency_key = 'Key-É' WHERE id = 'tsk_a1'`));
    expect(dup.code).toBe('23505');
    const orphan = await failure(a.query(`UPDATE ${S}.tasks SET parent_task_id = 'tsk_none' WHERE id = 'tsk_a1'`));
    expect(orphan.code).toBe('23503');
    const moved = await failure(a.query(`UPDATE ${S}.steps SET task_id = 'tsk_B1' WHERE id = 'stp_tsk_a1'`));
    expect(moved.message).toMatch(/task_id/);
    const renamed = await failure(a.query(`UPDATE ${S}.tasks SET id = 'tsk_c1' WHERE id = 'tsk_a1'`));
    expect(renamed.message).toMatch(/id and template_id/);
    // A parent's id is held by the parent reference too, whose check fires first (migration 0017).
    const parent = await failure(a.query(`UPDATE ${S}.tasks SET id = 'tsk_c1' WHERE id = 'tsk_B1'`));
    expect(parent.code).toBe('23503');
  });
  it('the audit keeps one index, its primary key (task_id, id): the audit rows written before are there, read by task through it', async () => {
    const { rows: indexes } = await a.query(`SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'transitions'`, [schema]);
    expect(indexes.map((r) => r.indexdef.replace(`"${schema}".`, '').replace(`${schema}.`, ''))).toEqual([
      'CREATE UNIQUE INDEX transitions_pkey ON transitions USING btree (task_id, id)',
    ]);
    await a.query('SET enable_seqscan = off');
    try {
      // The read of GET /v1/tasks/:id (read-task.ts): a task's audit in order.
      const plan = await a.query(`EXPLAIN SELECT * FROM ${S}.transitions WHERE task_id = $1 ORDER BY id`, ['tsk_a1']);
      expect(plan.rows.map((r) => r['QUERY PLAN']).join('\n')).toMatch(/Index Scan using transitions_pkey/);
    } finally {
      await a.query('RESET enable_seqscan');
    }
    const { rows } = await a.query(`SELECT task_id, step_id, to_state FROM ${S}.transitions ORDER BY task_id, id`);
    expect(rows).toEqual([
      { task_id: 'tsk_B1', step_id: 'stp_tsk_B1', to_state: 'enqueued' },
      { task_id: 'tsk_a1', step_id: 'stp_tsk_a1', to_state: 'enqueued' },
    ]);
    const { rows: ids } = await a.query(`SELECT id FROM ${S}.transitions WHERE task_id = 'tsk_a1'`);
    const dup = await failure(
      a.query(`INSERT INTO ${S}.transitions (id, task_id, to_state, reason) OVERRIDING SYSTEM VALUE VALUES ($1, 'tsk_a1', 'complete', 'again')`, [ids[0].id]),
    );
    expect(dup.code).toBe('23505');
  });
});

describe('migrating while other schemas are dropped', () => {
  // kysely lists every schema's tables to find its migration table; a table or schema of
  // another installation (a test file) dropped during that listing fails it with an error
  // naming that other schema, and migrate() lists again. The errors here are Postgres's own.
  const client = new pg.Client({ connectionString: url });
  beforeAll(() => client.connect());
  afterAll(() => client.end());

  it("an error naming another schema's dropped table or the dropped schema is told apart from one about our own", async () => {
    const sfx = Math.random().toString(36).slice(2, 10);
    const [ours, gone] = [`ours_${sfx}`, `gone_${sfx}`];
    const schema = await failure(client.query(`CREATE TABLE ${gone}.t (id int)`));
    expect(schema.code).toBe('3F000');
    expect(droppedMeanwhile(schema, ours)).toBe(true);
    const ownSchema = await failure(client.query(`CREATE TABLE ${ours}.t (id int)`));
    expect(droppedMeanwhile(ownSchema, ours)).toBe(false);
    // A table gone from a schema that is still there.
    await client.query(`CREATE SCHEMA ${gone}; CREATE SCHEMA ${ours}`);
    try {
      const table = await failure(client.query(`SELECT pg_get_serial_sequence('${gone}.steps', 'id')`));
      expect(table.code).toBe('42P01');
      expect(droppedMeanwhile(table, ours)).toBe(true);
      const ownTable = await failure(client.query(`SELECT pg_get_serial_sequence('${ours}.steps', 'id')`));
      expect(ownTable.code).toBe('42P01');
      expect(droppedMeanwhile(ownTable, ours)).toBe(false);
    } finally {
      await client.query(`DROP SCHEMA ${gone}; DROP SCHEMA ${ours}`);
    }
    expect(droppedMeanwhile({ code: '40P01', message: 'deadlock detected' }, ours)).toBe(false);
  });
});

describe('a fresh machine whose database does not exist yet', () => {
  // Test files start orchestrators side by side, so on a fresh machine several create the
  // database at once. Their CREATE DATABASE statements then race in pg_database's unique
  // index (23505), which is not the "already exists" error (42P04) one after the other gives.
  const name = `tasker_fresh_${Math.random().toString(36).slice(2, 10)}`;
  const fresh = new URL(url);
  fresh.pathname = `/${name}`;
  const admin = new pg.Client({ connectionString: url });

  beforeAll(() => admin.connect());
  afterAll(async () => {
    await admin.query(`DROP DATABASE IF EXISTS "${name}"`);
    await admin.end();
  });

  it('eight processes creating it at once all succeed, and it exists once', async () => {
    const outcomes = await Promise.allSettled(Array.from({ length: 8 }, () => ensureDatabase(fresh.toString(), logger)));
    expect(outcomes.filter((o) => o.status === 'rejected').map((o) => String((o as PromiseRejectedResult).reason))).toEqual([]);
    const { rows } = await admin.query('SELECT count(*)::int AS n FROM pg_database WHERE datname = $1', [name]);
    expect(rows[0].n).toBe(1);
  });
});

describe('creating the database through a Unix socket', () => {
  // The form libpq and pg take for a socket, with no host before the path: not a URL to the
  // WHATWG parser, which ensureDatabase used to read it with.
  const local = new URL(url);
  const socketDir = '/var/run/postgresql';
  const port = local.port || '5432';
  const onThisMachine = ['127.0.0.1', 'localhost', '::1', '[::1]'].includes(local.hostname);
  const hasSocket = onThisMachine && existsSync(`${socketDir}/.s.PGSQL.${port}`);
  const name = `tasker_socket_${Math.random().toString(36).slice(2, 10)}`;
  const user = local.username ? `${local.username}@` : '';
  const socketUrl = `postgres://${user}/${name}?host=${encodeURIComponent(socketDir)}&port=${port}`;
  const admin = new pg.Client({ connectionString: url });

  beforeAll(async () => {
    if (hasSocket) await admin.connect();
  });
  afterAll(async () => {
    if (!hasSocket) return;
    await admin.query(`DROP DATABASE IF EXISTS "${name}"`);
    await admin.end();
  });

  it.skipIf(!hasSocket)('a URL naming the socket directory creates the database, then finds it there', async () => {
    await ensureDatabase(socketUrl, logger);
    const { rows } = await admin.query('SELECT count(*)::int AS n FROM pg_database WHERE datname = $1', [name]);
    expect(rows[0].n).toBe(1);
    await ensureDatabase(socketUrl, logger); // already there: nothing to do
    const c = new pg.Client({ connectionString: socketUrl });
    await c.connect();
    expect((await c.query('SELECT current_database() AS db')).rows[0].db).toBe(name);
    await c.end();
  });
});
