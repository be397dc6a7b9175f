import { sql, type Kysely } from 'kysely';

// Append-only: never edit a migration that has landed; add the next number instead.
//
// lock_tasks_read_steps reads a result batch's tasks and steps by id. Its plans are made
// for each call, from statistics that lag behind tables growing fast (a fresh
// installation, a burst): the planner then expected thousands of steps per task id and
// scanned the whole table (bench, classic queues: 371 of 1,600 calls, 12 million rows
// filtered out over two throughput runs). A batch touches at most a few hundred rows, so
// the index is always the right path: the function plans without sequential scans.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER FUNCTION lock_tasks_read_steps(text[]) SET enable_seqscan = off`.execute(db);
}
