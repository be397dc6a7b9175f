import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scratchSchema } from './support/scratch-schema.ts';

// Migration 0015: a step's moves, written by the result batch's function, change no indexed
// column, so Postgres keeps them on the row's page without writing into the indexes of steps
// (heap-only updates). Counted with the transaction's own statistics, which are exact.
describe("a step's moves are heap-only updates", () => {
  const scratch = scratchSchema('hot');
  const { S, client: c } = scratch;

  beforeAll(async () => {
    await scratch.open();
    await c.query(`SET search_path TO ${S}`);
    await c.query(`INSERT INTO namespaces (name) VALUES ('hot')`);
    const { rows } = await c.query(
      `INSERT INTO templates (namespace, name, version, major, minor, patch, definition)
       VALUES ('hot', 'flow', '1.0.0', 1, 0, 0, '{}') RETURNING id::text`,
    );
    await c.query(
      `INSERT INTO tasks (id, namespace, name, version, template_id, state, context, correlation_id)
       VALUES ('tsk_h1', 'hot', 'flow', '1.0.0', $1, 'in_progress', '{}', 'tsk_h1')`,
      [rows[0].id],
    );
    await c.query(
      `INSERT INTO steps (id, task_id, name, position, state, max_attempts, deps_pending)
       VALUES ('stp_a', 'tsk_h1', 'a', 0, 'pending', 3, 0), ('stp_b', 'tsk_h1', 'b', 1, 'pending', 3, 1)`,
    );
  });
  afterAll(() => scratch.close());

  /**
   * In one transaction, rolled back: a enqueued; a complete with its result and b enqueued;
   * b failed, waiting for its retry. Positions as write_result_rows reads them (migration 0011).
   */
  async function moves(before?: string): Promise<{ updated: number; hot: number }> {
    const counts = async () =>
      (
        await c.query(
          `SELECT pg_stat_get_xact_tuples_updated('steps'::regclass)::int AS updated,
                  pg_stat_get_xact_tuples_hot_updated('steps'::regclass)::int AS hot`,
        )
      ).rows[0] as { updated: number; hot: number };
    await c.query('BEGIN');
    try {
      if (before) await c.query(before);
      // The counts not yet reported include earlier transactions of this connection.
      const start = await counts();
      const write = (steps: unknown[][]) =>
        c.query(`SELECT write_result_rows($1::jsonb, '[]'::jsonb, '[]'::jsonb, '[]'::jsonb)`, [JSON.stringify(steps)]);
      const at = new Date().toISOString();
      await write([['stp_a', 'pending', 0, 0, 'enqueued', 1, 0, true, false]]);
      await write([
        ['stp_a', 'enqueued', 1, 0, 'complete', 1, 0, false, true, { ok: true, lines: [1, 2] }, null, at, at],
        ['stp_b', 'pending', 0, 1, 'enqueued', 1, 0, true, false],
      ]);
      await write([['stp_b', 'enqueued', 1, 0, 'waiting_retry', 1, 0, false, true, null, { kind: 'retryable', code: 'BUSY', message: 'busy' }, at, at, 1000]]);
      const end = await counts();
      return { updated: end.updated - start.updated, hot: end.hot - start.hot };
    } finally {
      await c.query('ROLLBACK');
    }
  }

  it('every move of a step keeps its indexes as they were', async () => {
    expect(await moves()).toEqual({ updated: 4, hot: 4 });
  });

  it("with migration 0001's index on enqueued_at back, the same moves write into the indexes", async () => {
    // What the migration removed, and why: the index named state and enqueued_at.
    const before = `CREATE INDEX steps_in_flight_idx ON steps (enqueued_at) WHERE state IN ('enqueued', 'waiting_retry')`;
    expect(await moves(before)).toEqual({ updated: 4, hot: 0 });
  });
});
