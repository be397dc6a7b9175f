import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { down, up } from '../src/db/migrations/0018_audit_from_writes.ts';
import { scratchSchema } from './support/scratch-schema.ts';

// Migration 0018: result and creation batches write their audit rows from the rows they
// write. An orchestrator of the version before still sends its audit rows itself, with rows
// that carry no reasons; during a rolling upgrade both write to the same database, and each
// task's audit must be written once, not twice and not never.
describe('audit rows written from the batch rows (migration 0018)', () => {
  const scratch = scratchSchema('auditrows');
  const { db, S, client: c } = scratch;
  const definitions = async () =>
    (
      await c.query<{ def: string }>(
        `SELECT pg_get_functiondef(p.oid) AS def FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = $1 AND p.proname IN ('write_result_rows', 'create_tasks_rows') ORDER BY p.proname`,
        [scratch.schema],
      )
    ).rows.map((r) => r.def);
  let before: string[] = [];
  let templateId = '';

  const audit = async (taskId: string) =>
    (
      await c.query(
        `SELECT step_id, from_state, to_state, attempt, reason, actor FROM transitions WHERE task_id = $1 ORDER BY id`,
        [taskId],
      )
    ).rows;
  const create = (taskId: string, transitions: unknown[][] | null) =>
    c.query(`SELECT created FROM create_tasks_rows($1::jsonb, $2::jsonb, $3::jsonb, '[]'::jsonb)`, [
      JSON.stringify([[taskId, 'ns', 'two', '1.0.0', templateId, {}, taskId, null, null, null, null]]),
      JSON.stringify([
        [`${taskId}_a`, taskId, 'a', 0, 'enqueued', 1, 3, 0, [`${taskId}_b`]],
        [`${taskId}_b`, taskId, 'b', 1, 'pending', 0, 3, 1, []],
      ]),
      transitions === null ? null : JSON.stringify(transitions),
    ]);

  beforeAll(async () => {
    await scratch.open({ upTo: '0017_after_update_key_guards' });
    await c.query(`SET search_path TO ${S}`);
    before = await definitions();
    await c.query(`INSERT INTO namespaces (name) VALUES ('ns')`);
    const { rows } = await c.query<{ id: string }>(
      `INSERT INTO templates (namespace, name, version, major, minor, patch, definition) VALUES ('ns', 'two', '1.0.0', 1, 0, 0, '{}') RETURNING id::text`,
    );
    templateId = rows[0]!.id;
    expect(await scratch.migrate()).toEqual(['0018_audit_from_writes']);
  });
  afterAll(() => scratch.close());

  it('a creation batch without audit rows writes each created task\'s audit itself, in the order the orchestrator wrote it', async () => {
    await create('t_new', null);
    expect(await audit('t_new')).toEqual([
      { step_id: null, from_state: null, to_state: 'in_progress', attempt: null, reason: 'task created', actor: null },
      { step_id: 't_new_a', from_state: null, to_state: 'pending', attempt: null, reason: 'task created', actor: null },
      { step_id: 't_new_a', from_state: 'pending', to_state: 'enqueued', attempt: 1, reason: 'no dependencies', actor: null },
      { step_id: 't_new_b', from_state: null, to_state: 'pending', attempt: null, reason: 'task created', actor: null },
    ]);
  });

  it('an orchestrator of the version before: its audit rows are written once, and none are added', async () => {
    await create('t_old', [
      ['t_old', null, null, 'in_progress', null, 'created the old way'],
      ['t_old', 't_old_a', 'pending', 'enqueued', 1, 'no dependencies, the old way'],
    ]);
    expect((await audit('t_old')).map((r) => r.reason)).toEqual(['created the old way', 'no dependencies, the old way']);

    // Its result batch: step rows of 15 positions at most, task rows of 4, its own audit rows.
    await c.query(`SELECT write_result_rows($1::jsonb, $2::jsonb, $3::jsonb, '[]'::jsonb)`, [
          JSON.stringify([
            ['t_old_a', 'enqueued', 1, 0, 'complete', 1, 0, false, true, { ok: 1 }, null, null, null, null, null],
            ['t_old_b', 'pending', 0, 1, 'enqueued', 1, 0, true, false],
          ]),
          '[]',
          JSON.stringify([
            ['t_old', 't_old_a', 'enqueued', 'complete', 1, 'result, the old way'],
            ['t_old', 't_old_b', 'pending', 'enqueued', 1, 'released, the old way'],
          ]),
    ]);
    expect((await audit('t_old')).map((r) => r.reason)).toEqual([
      'created the old way',
      'no dependencies, the old way',
      'result, the old way',
      'released, the old way',
    ]);
  });

  it("this version's result batch: the rows given first, then each step row's move with its reason and operator, then each task's", async () => {
    await create('t_cur', null);
    await c.query(`SELECT write_result_rows($1::jsonb, $2::jsonb, $3::jsonb, '[]'::jsonb)`, [
          JSON.stringify([
            ['t_cur_a', 'enqueued', 1, 0, 'complete', 1, 0, false, true, { ok: 1 }, null, null, null, null, null, 'result: success', 'ops'],
            ['t_cur_b', 'pending', 0, 1, 'enqueued', 1, 0, true, false, null, null, null, null, null, null, 'dependencies complete'],
          ]),
          JSON.stringify([['t_cur', 'in_progress', 'error', null, 'made up, for the test']]),
          JSON.stringify([['t_cur', null, 'error', 'in_progress', null, 'reopened', 'ops']]),
    ]);
    expect((await audit('t_cur')).slice(4)).toEqual([
      { step_id: null, from_state: 'error', to_state: 'in_progress', attempt: null, reason: 'reopened', actor: 'ops' },
      { step_id: 't_cur_a', from_state: 'enqueued', to_state: 'complete', attempt: 1, reason: 'result: success', actor: 'ops' },
      { step_id: 't_cur_b', from_state: 'pending', to_state: 'enqueued', attempt: 1, reason: 'dependencies complete', actor: null },
      { step_id: null, from_state: 'in_progress', to_state: 'error', attempt: null, reason: 'made up, for the test', actor: null },
    ]);
  });

  it('going back restores the functions of migration 0016 as they were', async () => {
    await db.transaction().execute((trx) => down(trx as unknown as Kysely<unknown>));
    expect(await definitions()).toEqual(before);
    await db.transaction().execute((trx) => up(trx as unknown as Kysely<unknown>));
    expect(await definitions()).not.toEqual(before);
  });
});
