import type { Kysely } from 'kysely';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '../src/db/database.ts';
import { ensureDatabase, migrate } from '../src/db/migrate.ts';
import { down } from '../src/db/migrations/0016_outbox_step_references.ts';
import { planBatch } from '../src/results/batch-plan.ts';
import { writePlan } from '../src/results/batch-store.ts';
import { DATABASE_URL } from './support/statements.ts';

// Migration 0016: an outbox row of a step message keeps the steps it carries (step_refs)
// instead of its body; every other row keeps its body, and the rows written before stay.
const url = DATABASE_URL;
const schema = `obref_${Math.random().toString(36).slice(2, 10)}`;
const logger = pino({ level: 'silent' });

describe('outbox rows that keep the steps of their message (migration 0016)', () => {
  const { db } = createDb(url, schema, 2);
  const c = new pg.Client({ connectionString: url });
  const S = `"${schema}"`;

  beforeAll(async () => {
    await ensureDatabase(url, logger);
    await migrate(db, schema, logger, { upTo: '0015_heap_only_step_updates' });
    await c.connect();
    await c.query(`SET search_path TO ${S}`);
    // A row written by the version before, waiting for its confirm across the upgrade.
    await c.query(`INSERT INTO outbox (exchange, routing_key, body, properties) VALUES ('ex', 'ns', '{"before":true}', '{"type":"step"}')`);
    expect(await migrate(db, schema, logger)).toContain('0016_outbox_step_references');
  });
  afterAll(async () => {
    await c.end();
    await db.schema.dropSchema(schema).ifExists().cascade().execute();
    await db.destroy();
  });

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
