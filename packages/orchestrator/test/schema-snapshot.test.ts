import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { createDb } from '../src/db/database.ts';
import { describeSchema } from '../src/db/describe-schema.ts';
import { ensureDatabase, migrate } from '../src/db/migrate.ts';
import { DATABASE_URL } from './support/statements.ts';

const url = DATABASE_URL;
const schema = `snap_${Math.random().toString(36).slice(2, 10)}`;
const logger = pino({ level: 'silent' });

describe('database schema', () => {
  const { db } = createDb(url, schema, 4);
  afterAll(async () => {
    await db.schema.dropSchema(schema).ifExists().cascade().execute();
    await db.destroy();
  });

  it('a freshly migrated schema matches the committed snapshot (run `pnpm db:snapshot` after adding a migration)', async () => {
    await ensureDatabase(url, logger);
    await migrate(db, schema, logger);
    const committed = readFileSync(new URL('../src/db/schema.snapshot.txt', import.meta.url), 'utf8');
    expect(await describeSchema(db, schema)).toBe(committed);
  });

  it('migrations are safe when several processes start at once: each migration is applied exactly once', async () => {
    const fresh = `${schema}_b`;
    const others = [0, 1, 2].map(() => createDb(url, fresh, 2).db);
    try {
      const applied = await Promise.all(others.map((d) => migrate(d, fresh, logger)));
      expect(applied.flat().sort()).toEqual(['0001_initial', '0002_operator_surface', '0003_result_batches', '0004_index_paths', '0005_statement_reference_checks', '0006_result_batch_write', '0007_identifier_collation', '0008_result_batch_checked_write', '0009_task_creation_write', '0010_audit_single_index', '0011_positional_rows', '0012_held_newest_template', '0013_static_reference_checks', '0014_checked_write_statement', '0015_heap_only_step_updates', '0016_outbox_step_references', '0017_after_update_key_guards', '0018_audit_from_writes']);
      expect(await migrate(others[0]!, fresh, logger)).toEqual([]);
    } finally {
      await others[0]!.schema.dropSchema(fresh).ifExists().cascade().execute();
      await Promise.all(others.map((d) => d.destroy()));
    }
  });
});
