import pg from 'pg';
import pino from 'pino';
import { createDb, type Db } from '../../src/db/database.ts';
import { ensureDatabase, migrate } from '../../src/db/migrate.ts';
import { DATABASE_URL } from './statements.ts';

const logger = pino({ level: 'silent' });

/**
 * A schema of its own on the test database for one test file: the orchestrator's database
 * handle on it (`db`), and `clients` plain connections with the default search_path, as an
 * operator's psql session has (tables named through `S`, the quoted schema).
 */
export interface ScratchSchema {
  schema: string;
  /** The schema's name, quoted, to prefix tables with. */
  S: string;
  db: Db;
  /** The first of `clients`. */
  client: pg.Client;
  clients: pg.Client[];
  /** Creates the database if it is missing, migrates the schema (up to `upTo`), connects the clients; the migrations applied. */
  open(options?: { upTo?: string }): Promise<string[]>;
  /** Applies the migrations not applied yet; the ones it applied. */
  migrate(): Promise<string[]>;
  /** Disconnects and drops the schema. */
  close(): Promise<void>;
}

export function scratchSchema(prefix: string, clients = 1): ScratchSchema {
  const schema = `${prefix}_${Math.random().toString(36).slice(2, 10)}`;
  const { db } = createDb(DATABASE_URL, schema, 2);
  const conns = Array.from({ length: clients }, () => new pg.Client({ connectionString: DATABASE_URL }));
  return {
    schema,
    S: `"${schema}"`,
    db,
    client: conns[0]!,
    clients: conns,
    async open(options = {}) {
      await ensureDatabase(DATABASE_URL, logger);
      const applied = await migrate(db, schema, logger, options.upTo ? { upTo: options.upTo } : {});
      for (const c of conns) await c.connect();
      return applied;
    },
    migrate: () => migrate(db, schema, logger),
    async close() {
      for (const c of conns) await c.end();
      await db.schema.dropSchema(schema).ifExists().cascade().execute();
      await db.destroy();
    },
  };
}
