import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scratchSchema } from './support/scratch-schema.ts';
import { failure } from './support/statements.ts';

// steps.task_id and tasks.template_id are checked once per statement by triggers
// (migrations 0005 and 0013) instead of row by row by foreign keys: these are the guarantees
// a foreign key gave, checked against a real Postgres.
describe('references between steps, tasks and templates', () => {
  // Plain connections with the default search_path, as an operator's psql session has.
  const scratch = scratchSchema('refs', 2);
  const { schema, S } = scratch;
  const [a, b] = [scratch.clients[0]!, scratch.clients[1]!];
  let templateId = '';

  const task = (id: string, template = templateId) =>
    a.query(
      `INSERT INTO ${S}.tasks (id, namespace, name, version, template_id, state, context, correlation_id)
       VALUES ($1, 'refs', 'flow', '1.0.0', $2, 'in_progress', '{}', $1)`,
      [id, template],
    );
  const steps = (client: pg.Client, taskIds: string[]) =>
    client.query(
      `INSERT INTO ${S}.steps (id, task_id, name, position, state, max_attempts, deps_pending)
       SELECT 'stp_' || t || '_' || n, t, 'step' || n, n, 'pending', 1, 0
       FROM unnest($1::text[]) t, generate_series(1, 2) n`,
      [taskIds],
    );

  beforeAll(async () => {
    await scratch.open();
    await a.query(`INSERT INTO ${S}.namespaces (name) VALUES ('refs')`);
    const { rows } = await a.query(
      `INSERT INTO ${S}.templates (namespace, name, version, major, minor, patch, definition)
       VALUES ('refs', 'flow', '1.0.0', 1, 0, 0, '{}') RETURNING id::text`,
    );
    templateId = rows[0].id;
  });
  afterAll(async () => {
    await scratch.close();
  });

  it('steps of existing tasks are inserted, many rows in one statement', async () => {
    await task('tsk_ok1');
    await task('tsk_ok2');
    await steps(a, ['tsk_ok1', 'tsk_ok2']);
    const { rows } = await a.query(`SELECT count(*)::int AS n FROM ${S}.steps WHERE task_id IN ('tsk_ok1', 'tsk_ok2')`);
    expect(rows[0].n).toBe(4);
  });

  it('a statement inserting a step of a task that does not exist fails whole, naming the task', async () => {
    await task('tsk_ok3');
    const e = await failure(steps(a, ['tsk_ok3', 'tsk_missing']));
    expect(e.code).toBe('23503');
    expect(e.message).toBe('insert into steps: task_id tsk_missing does not exist in tasks');
    const { rows } = await a.query(`SELECT count(*)::int AS n FROM ${S}.steps WHERE task_id = 'tsk_ok3'`);
    expect(rows[0].n).toBe(0);
  });

  it("the checks read this installation's tables whatever the inserting session's search path", async () => {
    // Another schema first on the path, whose own `tasks` holds the id: the check must not
    // find it there (migration 0013 pins the functions to the installation's schema).
    const decoy = `"${schema}_decoy"`;
    await a.query(`CREATE SCHEMA ${decoy}; CREATE TABLE ${decoy}.tasks (id text); INSERT INTO ${decoy}.tasks VALUES ('tsk_decoy')`);
    try {
      await a.query(`SET search_path = ${decoy}`);
      const e = await failure(steps(a, ['tsk_decoy']));
      expect(e.code).toBe('23503');
      expect(e.message).toBe('insert into steps: task_id tsk_decoy does not exist in tasks');
      // And a task of this installation is found from that session.
      await task('tsk_from_elsewhere');
      await steps(a, ['tsk_from_elsewhere']);
    } finally {
      await a.query('RESET search_path');
      await a.query(`DROP SCHEMA ${decoy} CASCADE`);
    }
  });

  it('a task of a template that does not exist is refused', async () => {
    const e = await failure(task('tsk_orphan', '999999'));
    expect(e.code).toBe('23503');
    expect(e.message).toBe('insert into tasks: template_id 999999 does not exist in templates');
  });

  it('a task or template still referred to cannot be deleted; one that is not can', async () => {
    const e = await failure(a.query(`DELETE FROM ${S}.tasks WHERE id = 'tsk_ok1'`));
    expect(e.code).toBe('23503');
    expect(e.message).toBe('delete from tasks: tasks tsk_ok1 is still referred to by steps.task_id');
    const t = await failure(a.query(`DELETE FROM ${S}.templates WHERE id = $1`, [templateId]));
    expect(t.message).toBe(`delete from templates: templates ${templateId} is still referred to by tasks.template_id`);
    await task('tsk_lonely');
    await a.query(`DELETE FROM ${S}.tasks WHERE id = 'tsk_lonely'`);
    const { rows } = await a.query(`SELECT count(*)::int AS n FROM ${S}.tasks WHERE id = 'tsk_lonely'`);
    expect(rows[0].n).toBe(0);
  });

  it('the referring and referred ids cannot change once written', async () => {
    await task('tsk_stepless');
    expect((await failure(a.query(`UPDATE ${S}.steps SET task_id = 'tsk_stepless' WHERE task_id = 'tsk_ok1'`))).message).toBe(
      'update of steps: task_id cannot change once written',
    );
    // The guards fire after the row is written (migration 0017): a change that also breaks a
    // unique key is refused by that key first.
    expect((await failure(a.query(`UPDATE ${S}.steps SET task_id = 'tsk_ok2' WHERE task_id = 'tsk_ok1'`))).code).toBe('23505');
    expect((await failure(a.query(`UPDATE ${S}.tasks SET id = 'tsk_renamed' WHERE id = 'tsk_ok1'`))).code).toBe('23503');
    // Other columns change as before.
    await a.query(`UPDATE ${S}.steps SET state = 'enqueued', attempt = 1 WHERE task_id = 'tsk_ok1'`);
    await a.query(`UPDATE ${S}.tasks SET state = 'complete' WHERE id = 'tsk_ok1'`);
  });

  it('a task being given steps cannot be deleted meanwhile: the delete waits, then fails', async () => {
    await task('tsk_busy');
    await a.query('BEGIN');
    await steps(a, ['tsk_busy']);
    // b's delete blocks on the row lock a's check took (FOR KEY SHARE), as with a foreign key.
    let settled = false;
    const deleting = b.query(`DELETE FROM ${S}.tasks WHERE id = 'tsk_busy'`).finally(() => (settled = true));
    const blocked = deleting.catch(() => undefined);
    await new Promise((r) => setTimeout(r, 300));
    expect(settled).toBe(false);
    await a.query('COMMIT');
    await blocked;
    const e = await failure(deleting);
    expect(e.code).toBe('23503');
  });

  it('TRUNCATE of a referred table alone fails; with its referring table in one statement it works', async () => {
    expect((await failure(a.query(`TRUNCATE ${S}.tasks`))).message).toBe(
      'truncate tasks: steps still refers to it; truncate both in one statement',
    );
    await a.query(`TRUNCATE ${S}.tasks, ${S}.steps`);
    const { rows } = await a.query(`SELECT (SELECT count(*) FROM ${S}.tasks)::int AS t, (SELECT count(*) FROM ${S}.steps)::int AS s`);
    expect(rows[0]).toEqual({ t: 0, s: 0 });
  });
});
