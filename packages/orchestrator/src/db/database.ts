import { CompiledQuery, Kysely, PostgresDialect, sql, type Generated, type ColumnType } from 'kysely';
import pg from 'pg';

/** Tasker's tables, as kysely sees them (see migrations/ for the DDL). */
type Timestamp = ColumnType<Date, Date | string, Date | string>;
/** A timestamp column with a database default. */
type DefaultTimestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null, Date | string | null>;
type Json = ColumnType<unknown, string, string>;

export interface NamespacesTable {
  name: string;
  created_at: DefaultTimestamp;
}
export interface TemplatesTable {
  id: Generated<string>;
  namespace: string;
  name: string;
  version: string;
  major: number;
  minor: number;
  patch: number;
  prerelease: string;
  definition: Json;
  created_at: DefaultTimestamp;
}
export interface TasksTable {
  id: string;
  namespace: string;
  name: string;
  version: string;
  template_id: string;
  state: string;
  context: Json;
  correlation_id: string;
  idempotency_key: string | null;
  parent_task_id: string | null;
  parent_step_id: string | null;
  requested_by: string | null;
  error: Json | null;
  created_at: DefaultTimestamp;
  updated_at: DefaultTimestamp;
  completed_at: NullableTimestamp;
}
export interface StepsTable {
  id: string;
  task_id: string;
  name: string;
  position: number;
  state: string;
  attempt: number;
  max_attempts: number;
  deps_pending: number;
  dependents: string[];
  result: Json | null;
  error: Json | null;
  enqueued_at: NullableTimestamp;
  started_at: NullableTimestamp;
  finished_at: NullableTimestamp;
  next_retry_at: NullableTimestamp;
  waiting_for_task_id: string | null;
  updated_at: DefaultTimestamp;
}
export interface TransitionsTable {
  id: Generated<string>;
  task_id: string;
  step_id: string | null;
  from_state: string | null;
  to_state: string;
  attempt: number | null;
  reason: string;
  actor: string | null;
  at: DefaultTimestamp;
}
export interface OutboxTable {
  id: Generated<string>;
  exchange: string;
  routing_key: string;
  body: string;
  properties: Json;
  created_at: DefaultTimestamp;
}

export interface Database {
  namespaces: NamespacesTable;
  templates: TemplatesTable;
  tasks: TasksTable;
  steps: StepsTable;
  transitions: TransitionsTable;
  outbox: OutboxTable;
}

export type Db = Kysely<Database>;

// bigint ids (identity columns) come back as strings; timestamps as Date.
pg.types.setTypeParser(20, (v) => v);

/**
 * A kysely instance whose connections use `schema` as their search path, so one database
 * can hold several isolated installations (each test file uses a fresh schema).
 */
export function createDb(databaseUrl: string, schema: string, poolSize: number): { db: Db; pool: pg.Pool } {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: poolSize,
    // Plans are made for each execution, also of prepared statements and of PL/pgSQL
    // functions: a generic plan cached while the tables were small (a fresh installation)
    // kept scanning them whole as they grew (issue 7: per-step overhead 10 -> 17-41 ms, and
    // Postgres's CPU per step doubled, over a few minutes of the bench). Preparing still
    // saves the parsing.
    options: `-c search_path=${schema} -c plan_cache_mode=force_custom_plan`,
    application_name: 'tasker-orchestrator',
  });
  // A dropped idle connection (Postgres restart) must not crash the process.
  pool.on('error', () => undefined);
  // Nor a dropped connection that is checked out: pg-pool detaches its own error listener
  // while a client is lent, and kysely adds none, so an 'error' event there would be
  // unhandled and kill the process. The query in flight fails (a transient error the batch
  // retries), and pg-pool discards the dead client when it comes back.
  pool.on('connect', (client) => {
    client.on('error', () => undefined);
    prepareMarkedStatements(client);
  });
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  pools.set(db, pool);
  return { db, pool };
}

/** The pool under each Db that createDb made, for preparedQuery. */
const pools = new WeakMap<Db, pg.Pool>();

/**
 * Runs one hot-path statement as a named prepared statement, outside any transaction block
 * (it is its own transaction), and answers with its rows (issue 7, per-step overhead). On a
 * Db that createDb made it goes to the pool straight: kysely's building of the query and its
 * lending of a connection cost 50–80 µs a statement when the CPU's caches are cold, as they
 * are between the steps of one task. On any other Db (a connection, a transaction) it runs
 * through kysely, as the same prepared statement. `text` must start with `/* prepared:NAME *\/`
 * and never vary, and its parameters are `$1`, `$2`, … in `values`' order.
 */
export async function preparedQuery<R>(db: Kysely<Database>, text: string, values: unknown[]): Promise<R[]> {
  const name = PREPARED.exec(text)?.[1];
  if (!name) throw new Error('preparedQuery: the statement must start with /* prepared:NAME */');
  const pool = pools.get(db);
  if (pool) return (await pool.query<R & pg.QueryResultRow>({ name, text, values })).rows;
  return (await db.getExecutor().executeQuery<R>(CompiledQuery.raw(text, values))).rows;
}

/**
 * Hot-path statements run as named prepared statements: Postgres parses them once per
 * connection instead of on every batch (issue 7; plans stay per execution, see createDb). A statement opts in by starting with
 * `/* prepared:NAME *\/`; its text must never vary, only its parameters (pg refuses a name
 * reused with another text). kysely sends every query as `query(text, values)`, so this
 * wraps that call on each pooled connection.
 */
const PREPARED = /^\s*\/\* prepared:([a-z0-9_]+) \*\//;

/**
 * A text of several statements sent in one round trip (`BEGIN; SELECT …`, `SELECT …; COMMIT`)
 * starts with `/* pipelined *\/`, takes no parameters, and answers with the one statement
 * that returns rows (pg answers such a text with a result per statement, which kysely would
 * take for none).
 */
const PIPELINED = /^\s*\/\* pipelined \*\//;

function prepareMarkedStatements(client: pg.PoolClient): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  client.query = ((text: unknown, values?: unknown, ...rest: unknown[]) => {
    if (typeof text === 'string' && rest.length === 0) {
      const name = PREPARED.exec(text)?.[1];
      if (name) return query({ name, text, values });
      if (PIPELINED.test(text)) {
        if (Array.isArray(values) && values.length > 0) throw new Error('a pipelined statement takes no parameters');
        return (query(text) as Promise<pg.QueryResult | pg.QueryResult[]>).then((r) =>
          Array.isArray(r) ? (r.find((x) => x.fields.length > 0) ?? r[r.length - 1]!) : r,
        );
      }
    }
    return query(text, values, ...rest);
  }) as typeof client.query;
}

/**
 * Settings of a transaction whose statements must find their rows by index lookups and nested
 * loops, whatever statistics taken while the tables were small say (the watchdog's pass;
 * KEPT_PLANS below).
 */
export const INDEX_PATHS_ONLY = 'SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off;';

/**
 * Settings of a transaction whose statements run on plans kept for the connection (issue 7).
 * The orchestrator's connections plan every execution (see createDb), and for a small batch
 * planning costs as much as running: 0.22 of the result write's 0.49 ms, 0.25 of task
 * creation's 0.87 ms (server log, bind vs execute, one task at a time; creation now runs in a
 * function that keeps its plan, migration 0009). A kept (generic) plan
 * is made without the values, maybe while the tables are small, and used as they grow, so it
 * is made with index lookups and nested loops only: right for a batch's few rows found by
 * key whatever the statistics say. Big batches are planned for their size (their lookups of
 * hundreds of ids ran 1.5–2× slower on a kept plan).
 */
export const KEPT_PLANS = 'SET LOCAL plan_cache_mode = force_generic_plan; ' + INDEX_PATHS_ONLY;

/**
 * A transaction whose BEGIN and COMMIT travel with other statements, saving their round
 * trips (issue 7): `begin(statements)` sends `BEGIN; statements`, `commit(statements)` sends
 * `statements; COMMIT`, each as one query. Such a query goes by Postgres's simple query
 * protocol, which takes no parameters: values go into the text as literals (jsonLiteral).
 * Statements in between run on `db`, the transaction's connection, as usual.
 */
export class PipelinedTransaction {
  private begun = false;
  private ended = false;

  constructor(
    /** The transaction's connection. */
    readonly db: Kysely<Database>,
  ) {}

  /** Sends `BEGIN; statements`; answers with the rows of the statement that returns rows. */
  async begin<R>(statements = ''): Promise<R[]> {
    if (this.begun) throw new Error('the transaction has begun already');
    this.begun = true;
    return (await sql.raw<R>(`/* pipelined */ BEGIN; ${statements}`).execute(this.db)).rows;
  }

  /** Sends `statements; COMMIT`; answers with the rows of the statement that returns rows. */
  async commit<R>(statements = ''): Promise<R[]> {
    if (!this.begun || this.ended) throw new Error('no transaction to commit');
    const { rows } = await sql.raw<R>(`/* pipelined */ ${statements} COMMIT`).execute(this.db);
    this.ended = true;
    return rows;
  }

  /** Rolls back what was begun and not committed (also after a failed commit: it did not run). */
  async rollback(): Promise<void> {
    if (!this.begun || this.ended) return;
    this.ended = true;
    await sql`ROLLBACK`.execute(this.db);
  }
}

/**
 * Runs `fn` with a PipelinedTransaction on a connection of its own. Whatever `fn` began and
 * did not commit, because it returned early or threw, is rolled back before the connection
 * goes back to the pool.
 */
export async function pipelinedTransaction<T>(db: Db, fn: (tx: PipelinedTransaction) => Promise<T>): Promise<T> {
  return db.connection().execute(async (conn) => {
    const tx = new PipelinedTransaction(conn);
    try {
      const out = await fn(tx);
      await tx.rollback();
      return out;
    } catch (err) {
      await tx.rollback().catch(() => undefined);
      throw err;
    }
  });
}

/**
 * A value as a `jsonb` literal to write into a statement's text: dollar-quoted, so the JSON
 * goes in as it is, with a tag it does not contain (pg's `escapeLiteral` would copy a batch's
 * hundreds of kilobytes a character at a time).
 */
export function jsonLiteral(value: unknown): string {
  const json = JSON.stringify(value);
  let tag = '$j$';
  for (let i = 0; json.includes(tag); i++) tag = `$j${i}$`;
  return `${tag}${json}${tag}::jsonb`;
}
