import { sql, type Kysely } from 'kysely';

// Append-only: never edit a migration that has landed; add the next number instead.
//
// A step's row is updated at every move (enqueued, complete, waiting_retry, …). Postgres can
// keep such an update on the row's page without touching any index (a heap-only update)
// when no indexed column changes and the page has room. steps_in_flight_idx (migration 0001)
// named `state` in its predicate and `enqueued_at` as its key, so every move changed an
// indexed column: each one wrote a new entry into all three indexes of steps. Without it,
// a step's moves change no indexed column but for `waiting_for_task_id` (a step that waits
// for a child), and a fill factor of 70 leaves a fresh page room for them (issue 7: Postgres's
// CPU a step in the bench's throughput section fell by about a tenth; bench/RESULTS.md,
// session 20). The fill factor applies to pages written from now on.
//
// The watchdog, which the index served, now starts from the live tasks older than its window
// (tasks_live_idx): a step enqueued before that moment belongs to a task created before it.
// An orchestrator of the version before, during a rolling upgrade, reads steps without the
// index until it is replaced.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX steps_in_flight_idx`.execute(db);
  await sql`ALTER TABLE steps SET (fillfactor = 70)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE steps RESET (fillfactor)`.execute(db);
  await sql`CREATE INDEX steps_in_flight_idx ON steps (enqueued_at) WHERE state IN ('enqueued', 'waiting_retry')`.execute(db);
}
