// What the order of new keys costs an index that has grown (issue 7): task ids as Tasker made
// them before session 25 (`tsk_` and 20 random characters) against ids as it makes them now
// (`timeOrderedId`: the creation time first), each as the text primary key of a table of its
// own with `--rows` rows already in it. After a CHECKPOINT, `--inserts` more go in, in
// transactions of 100 rows as a busy orchestrator's creation batches do, alternately for each
// kind (`--rounds` times); each round prints the time, the WAL written and the index's size.
// The WAL tells most: the first change of an index page after a checkpoint writes the whole
// page (full_page_writes, on by default), and random keys change a new page at nearly every
// insert while ordered ones fill the rightmost page.
//
//   npx tsx packages/orchestrator/scripts/key-order.ts [--rows N] [--inserts N] [--rounds N]
//
// On a schema of its own, dropped afterwards. Figures move with the machine; compare the two
// kinds of one run.
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { customAlphabet } from 'nanoid';
import pg from 'pg';
import { resolveConfig } from '../src/config.ts';
import { timeOrderedId } from '../src/tasks/create-tasks.ts';

export type KeyKind = 'random' | 'time-ordered';

export interface KeyOrderRound {
  kind: KeyKind;
  inserts: number;
  seconds: number;
  walBytes: number;
  walBytesPerInsert: number;
  indexBytes: number;
}

const randomPart = customAlphabet('0123456789abcdefghijklmnopqrstuvwxyz', 20);
/** A task id as Tasker made them before time-ordered ids. */
const randomId = (): string => `tsk_${randomPart()}`;

/** Fills a table of each kind with `rows` keys, then runs `rounds` rounds of `inserts` more of each kind after a CHECKPOINT. */
export async function measureKeyOrder(o: {
  databaseUrl: string;
  rows: number;
  inserts: number;
  rounds: number;
}): Promise<{ rounds: KeyOrderRound[]; schema: string }> {
  const schema = `key_order_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const client = new pg.Client({ connectionString: o.databaseUrl });
  await client.connect();
  // Time-ordered ids of the fill are made as if their rows had come one a millisecond up to now,
  // so that the measured inserts, made now, come after them as they would on a live installation.
  let clock = Date.now() - o.rows;
  const make: Record<KeyKind, () => string> = { random: randomId, 'time-ordered': () => timeOrderedId('tsk_', clock++) };
  const table = (kind: KeyKind) => `${schema}.${kind === 'random' ? 'k_random' : 'k_ordered'}`;
  /** `count` new keys of `kind`, `perStatement` rows to a statement (each its own transaction). */
  const insertKeys = async (kind: KeyKind, count: number, perStatement: number) => {
    for (let done = 0; done < count; done += perStatement) {
      const ids = Array.from({ length: Math.min(perStatement, count - done) }, make[kind]);
      await client.query(`INSERT INTO ${table(kind)} SELECT id, 'x' FROM unnest($1::text[]) AS id`, [ids]);
    }
  };
  try {
    await client.query(`CREATE SCHEMA ${schema}`);
    for (const kind of ['random', 'time-ordered'] as const) {
      await client.query(`CREATE TABLE ${table(kind)} (id text COLLATE "C" PRIMARY KEY, pad text)`);
      await insertKeys(kind, o.rows, 10_000);
    }
    clock = Math.max(clock, Date.now());
    const rounds: KeyOrderRound[] = [];
    for (let r = 0; r < o.rounds; r++) {
      for (const kind of ['random', 'time-ordered'] as const) {
        await client.query('CHECKPOINT');
        const { rows: [start] } = await client.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn() AS lsn');
        const t0 = performance.now();
        // In transactions of 100 rows, as a busy orchestrator's creation batches write them.
        await insertKeys(kind, o.inserts, 100);
        const seconds = (performance.now() - t0) / 1000;
        const { rows: [after] } = await client.query<{ wal: string; index: string }>(
          `SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1) AS wal, pg_relation_size($2::regclass) AS index`,
          [start!.lsn, `${table(kind)}_pkey`],
        );
        const walBytes = Number(after!.wal);
        rounds.push({ kind, inserts: o.inserts, seconds, walBytes, walBytesPerInsert: walBytes / Math.max(1, o.inserts), indexBytes: Number(after!.index) });
      }
    }
    return { rounds, schema };
  } finally {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => undefined);
    await client.end();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({
    options: { rows: { type: 'string', default: '2000000' }, inserts: { type: 'string', default: '100000' }, rounds: { type: 'string', default: '2' } },
  });
  const whole = (name: string, v: string | undefined) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} takes a whole number of at least 1, not '${v}'`);
    return n;
  };
  const o = { rows: whole('rows', values.rows), inserts: whole('inserts', values.inserts), rounds: whole('rounds', values.rounds) };
  process.stdout.write(`${o.inserts} inserts in transactions of 100 after a CHECKPOINT, into a text primary key of ${o.rows} rows\n`);
  process.stdout.write(`${'keys'.padEnd(14)} ${'seconds'.padStart(8)} ${'WAL MB'.padStart(8)} ${'WAL B/insert'.padStart(13)} ${'index MB'.padStart(9)}\n`);
  for (const r of (await measureKeyOrder({ databaseUrl: resolveConfig().databaseUrl, ...o })).rounds) {
    const mb = (b: number) => (b / 1024 / 1024).toFixed(1);
    process.stdout.write(
      `${r.kind.padEnd(14)} ${r.seconds.toFixed(2).padStart(8)} ${mb(r.walBytes).padStart(8)} ${Math.round(r.walBytesPerInsert).toString().padStart(13)} ${mb(r.indexBytes).padStart(9)}\n`,
    );
  }
}
