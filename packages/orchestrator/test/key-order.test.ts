import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { measureKeyOrder } from '../scripts/key-order.ts';
import { DATABASE_URL } from './support/statements.ts';

describe('key-order script (issue 7: what random keys cost an index that has grown)', () => {
  it('inserts into a table of each kind in turn, reports time, WAL and index size of each round, and drops its schema', async () => {
    const { rounds, schema } = await measureKeyOrder({ databaseUrl: DATABASE_URL, rows: 300, inserts: 250, rounds: 2 });
    expect(rounds.map((r) => r.kind)).toEqual(['random', 'time-ordered', 'random', 'time-ordered']);
    for (const r of rounds) {
      expect(r.inserts).toBe(250);
      expect(r.seconds).toBeGreaterThan(0);
      // Each insert writes at least a heap record and an index record into the WAL.
      expect(r.walBytesPerInsert).toBeGreaterThan(50);
      expect(r.walBytesPerInsert).toBeCloseTo(r.walBytes / 250, 6);
      expect(r.indexBytes).toBeGreaterThanOrEqual(2 * 8192);
    }
    const c = new pg.Client({ connectionString: DATABASE_URL });
    await c.connect();
    try {
      expect((await c.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])).rowCount).toBe(0);
    } finally {
      await c.end();
    }
  });
});
