import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { down } from '../src/db/migrations/0016_outbox_step_references.ts';
import { planBatch } from '../src/results/batch-plan.ts';
import { writePlan } from '../src/results/batch-store.ts';
import { scratchSchema } from './support/scratch-schema.ts';

// Migration 0016: an outbox row of a step message keeps the steps it carries (step_refs)
// instead of its body; every other row keeps its body, and the rows written before stay.
describe('outbox rows that keep the steps of their message (migration 0016)', () => {
  const scratch = scratchSchema('obref');
  const { db, schema, S, client: c } = scratch;

  beforeAll(async () => {
    await scratch.open({ upTo: '0015_heap_only_step_updates' });
    await c.query(`SET search_path TO ${S}`);
    // A row written by the version before, waiting for its confirm across the upgrade.
    await c.query(`INSERT INTO outbox (exchange, routing_key, body, properties) VALUES ('ex', 'ns', '{"before":true}', '{"type":"step"}')`);
    expect(await scratch.migrate()).toContain('0016_outbox_step_references');
  });
  afterAll(() => scratch.close());

  it('the row written before keeps its body; a result batch writes a step message as its steps and any other message whole', async () => {
    const written = await db.transaction().execute((trx) =>
      writePlan(trx, planBatch(new Map(), new Map(), []), [
        { exchange: 'ex', routingKey: 'ns', body: '{"step":1}', properties: { type: 'steps' }, stepRefs: [['stp_1', 1], ['stp_2', 3]] },
        { exchange: 'res', routingKey: 'ns', body: '{"outcome":1}', properties: { type: 'child_outcome' } },
      ]),
    );
    // The orchestrator keeps the bodies it publishes.
    expect(written.map((m) => m.body)).toEqual(['{"step":1}', '{"outcome":1}']);
    const { rows } = await c.query('SELECT exchange, body, properties, step_refs FROM outbox ORDER BY id');
    expect(rows).toEqual([
      { exchange: 'ex', body: '{"before":true}', properties: { type: 'step' }, step_refs: null },
      { exchange: 'ex', body: null, properties: { type: 'steps' }, step_refs: [['stp_1', 1], ['stp_2', 3]] },
      { exchange: 'res', body: '{"outcome":1}', properties: { type: 'child_outcome' }, step_refs: null },
    ]);
  });

  it('a row with neither a body nor steps is refused', async () => {
    await expect(c.query(`INSERT INTO outbox (exchange, routing_key, body, properties) VALUES ('ex', 'ns', NULL, '{}')`)).rejects.toThrow(/outbox_body_or_step_refs/);
  });

  it('going back refuses while rows without a body wait, and restores the column once they are gone', async () => {
    await expect(db.transaction().execute((trx) => down(trx as unknown as Kysely<unknown>))).rejects.toThrow(/rows without a body are waiting/);
    await c.query('DELETE FROM outbox WHERE body IS NULL');
    await db.transaction().execute((trx) => down(trx as unknown as Kysely<unknown>));
    const { rows } = await c.query(
      `SELECT column_name, is_nullable FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'outbox' AND column_name IN ('body', 'step_refs')`,
      [schema],
    );
    expect(rows).toEqual([{ column_name: 'body', is_nullable: 'NO' }]);
  });
});
