import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { sql } from 'kysely';
import pino from 'pino';
import { createDb, preparedQuery } from '../src/db/database.ts';
import { ensureDatabase } from '../src/db/migrate.ts';
import { DATABASE_URL } from './support/statements.ts';

const url = DATABASE_URL;
const schema = `prepq_${Math.random().toString(36).slice(2, 10)}`;

describe('preparedQuery: hot-path statements', () => {
  const { db, pool } = createDb(url, schema, 2);
  /** Every query the pool's connections are sent: its text and whether it was named (prepared). */
  const sent: Array<{ text: string; name: string | undefined }> = [];
  pool.on('connect', (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    client.query = ((...args: unknown[]) => {
      const a = args[0] as string | { text: string; name?: string };
      sent.push(typeof a === 'string' ? { text: a, name: undefined } : { text: a.text, name: a.name });
      return query(...args);
    }) as typeof client.query;
  });

  beforeAll(async () => {
    await ensureDatabase(url, pino({ level: 'silent' }));
    await sql`CREATE SCHEMA ${sql.id(schema)}`.execute(db);
    await sql`CREATE TABLE items (id int PRIMARY KEY, tags text[] NOT NULL, doc jsonb NOT NULL)`.execute(db);
  });
  afterAll(async () => {
    await sql`DROP SCHEMA IF EXISTS ${sql.id(schema)} CASCADE`.execute(db);
    await db.destroy();
  });

  it('on a Db that createDb made, runs on the pool as a named statement, not through kysely, and answers with the rows', async () => {
    const viaKysely = vi.spyOn(db, 'executeQuery');
    try {
      const text = '/* prepared:items_insert */ INSERT INTO items (id, tags, doc) VALUES ($1, $2::text[], $3::jsonb) RETURNING id, tags, doc';
      const rows = await preparedQuery<{ id: number; tags: string[]; doc: unknown }>(db, text, [1, ['a', 'b,c', 'd"e'], JSON.stringify({ q: "it's" })]);
      expect(rows).toEqual([{ id: 1, tags: ['a', 'b,c', 'd"e'], doc: { q: "it's" } }]);
      expect(viaKysely).not.toHaveBeenCalled();
      expect(sent.filter((s) => s.text === text)).toEqual([{ text, name: 'items_insert' }]);
    } finally {
      viaKysely.mockRestore();
    }
  });

  it('inside a transaction, runs on its connection, and is rolled back with it', async () => {
    const text = '/* prepared:items_insert_tx */ INSERT INTO items (id, tags, doc) VALUES ($1, $2::text[], $3::jsonb)';
    const failed = await db
      .transaction()
      .execute(async (trx) => {
        await preparedQuery(trx, text, [2, [], '{}']);
        const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM items WHERE id = 2`.execute(trx);
        expect(rows[0]!.n).toBe(1);
        // Prepared on the transaction's own connection, under its name.
        const { rows: named } = await sql<{ name: string }>`SELECT name FROM pg_prepared_statements WHERE name = 'items_insert_tx'`.execute(trx);
        expect(named).toEqual([{ name: 'items_insert_tx' }]);
        throw new Error('roll back');
      })
      .then(() => null, (e: Error) => e.message);
    expect(failed).toBe('roll back');
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM items WHERE id = 2`.execute(db);
    expect(rows[0]!.n).toBe(0);
  });

  it('refuses a statement without its prepared:NAME marker, before sending anything', async () => {
    const before = sent.length;
    await expect(preparedQuery(db, 'SELECT 1', [])).rejects.toThrow(/prepared:NAME/);
    expect(sent.length).toBe(before);
  });
});
