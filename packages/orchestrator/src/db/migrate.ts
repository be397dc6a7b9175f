import { Migrator, sql, type Migration, type MigrationProvider } from 'kysely';
import pg from 'pg';
import { parseIntoClientConfig } from 'pg-connection-string';
import type { Logger } from 'pino';
import type { Db } from './database.ts';
import * as m0001 from './migrations/0001_initial.ts';
import * as m0002 from './migrations/0002_operator_surface.ts';
import * as m0003 from './migrations/0003_result_batches.ts';
import * as m0004 from './migrations/0004_index_paths.ts';
import * as m0005 from './migrations/0005_statement_reference_checks.ts';
import * as m0006 from './migrations/0006_result_batch_write.ts';
import * as m0007 from './migrations/0007_identifier_collation.ts';
import * as m0008 from './migrations/0008_result_batch_checked_write.ts';
import * as m0009 from './migrations/0009_task_creation_write.ts';
import * as m0010 from './migrations/0010_audit_single_index.ts';
import * as m0011 from './migrations/0011_positional_rows.ts';
import * as m0012 from './migrations/0012_held_newest_template.ts';
import * as m0013 from './migrations/0013_static_reference_checks.ts';
import * as m0014 from './migrations/0014_checked_write_statement.ts';
import * as m0015 from './migrations/0015_heap_only_step_updates.ts';
import * as m0016 from './migrations/0016_outbox_step_references.ts';
import * as m0017 from './migrations/0017_after_update_key_guards.ts';
import * as m0018 from './migrations/0018_audit_from_writes.ts';

/** Numbered, append-only. Add `'0002_...': m0002` below; never edit or reorder. */
const MIGRATIONS: Record<string, Migration> = {
  '0001_initial': m0001,
  '0002_operator_surface': m0002,
  '0003_result_batches': m0003,
  '0004_index_paths': m0004,
  '0005_statement_reference_checks': m0005,
  '0006_result_batch_write': m0006,
  '0007_identifier_collation': m0007,
  '0008_result_batch_checked_write': m0008,
  '0009_task_creation_write': m0009,
  '0010_audit_single_index': m0010,
  '0011_positional_rows': m0011,
  '0012_held_newest_template': m0012,
  '0013_static_reference_checks': m0013,
  '0014_checked_write_statement': m0014,
  '0015_heap_only_step_updates': m0015,
  '0016_outbox_step_references': m0016,
  '0017_after_update_key_guards': m0017,
  '0018_audit_from_writes': m0018,
};

class StaticProvider implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    return MIGRATIONS;
  }
}

/**
 * Creates the schema and runs pending migrations (up to and including `upTo`, when given:
 * tests of an upgrade). Safe when several processes start at once: an advisory lock keyed
 * on the schema name serializes them.
 */
export async function migrate(db: Db, schema: string, logger: Logger, options: { upTo?: string } = {}): Promise<string[]> {
  return db.connection().execute(async (conn) => {
    await sql`SELECT pg_advisory_lock(hashtext(${`tasker.migrate.${schema}`}))`.execute(conn);
    try {
      await sql`CREATE SCHEMA IF NOT EXISTS ${sql.id(schema)}`.execute(conn);
      const migrator = new Migrator({
        db: conn.withSchema(schema),
        provider: new StaticProvider(),
        migrationTableSchema: schema,
        migrationTableName: 'schema_migrations',
        migrationLockTableName: 'schema_migrations_lock',
      });
      const run = () => (options.upTo === undefined ? migrator.migrateToLatest() : migrator.migrateTo(options.upTo));
      let outcome = await run();
      // kysely looks for its migration table by listing the tables of every schema; another
      // schema or table dropped meanwhile (another installation, a test) fails that listing
      // (droppedMeanwhile). Nothing was applied then: look again.
      for (let i = 0; i < 5 && droppedMeanwhile(outcome.error, schema); i++) outcome = await run();
      const { error, results } = outcome;
      const applied = (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
      if (error) throw error instanceof Error ? error : new Error(String(error));
      if (applied.length > 0) logger.info({ schema, applied }, 'migrations applied');
      return applied;
    } finally {
      await sql`SELECT pg_advisory_unlock(hashtext(${`tasker.migrate.${schema}`}))`.execute(conn);
    }
  });
}

/**
 * An error of kysely's listing of every schema's tables about something of another schema
 * dropped while it ran: 3F000 (schema does not exist) naming another schema, or 42P01
 * (relation does not exist) naming another schema's table (`relation "other.steps" does not
 * exist`, raised when the listing reads a column's sequence of a table dropped since it was
 * listed; seen in CI in session 26 with test files dropping their schemas).
 */
export function droppedMeanwhile(error: unknown, schema: string): boolean {
  const e = error as { code?: string; message?: string } | undefined;
  const message = e?.message ?? '';
  if (e?.code === '3F000') return !message.includes(`"${schema}"`);
  if (e?.code === '42P01') return /relation "[^"]+\.[^"]+"/.test(message) && !message.includes(`"${schema}.`);
  return false;
}

/**
 * Creates the database named in the URL if it does not exist (a fresh machine has only the
 * default databases). Needs a role allowed to create databases; otherwise it says so. The URL
 * is read as pg reads it (pg-connection-string), so every form pg takes works here too, a Unix
 * socket's among them (`postgres://user@/tasker?host=/var/run/postgresql`), which is not a URL
 * to the WHATWG parser.
 */
export async function ensureDatabase(databaseUrl: string, logger: Logger): Promise<void> {
  const config = parseIntoClientConfig(databaseUrl);
  const name = config.database;
  if (!name) return;
  const probe = new pg.Client(config);
  try {
    await probe.connect();
    return;
  } catch (err) {
    if ((err as { code?: string }).code !== '3D000') throw err; // 3D000: database does not exist
  } finally {
    await probe.end().catch(() => undefined);
  }
  const admin = new pg.Client({ ...config, database: 'postgres' });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
    logger.info({ database: name }, 'database created');
  } catch (err) {
    // Created meanwhile by another process: 42P04 if its CREATE DATABASE had committed, 23505
    // (pg_database's unique name index) if both were running at once.
    const code = (err as { code?: string }).code;
    if (code !== '42P04' && code !== '23505') throw err;
  } finally {
    await admin.end();
  }
}
