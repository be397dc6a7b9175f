import { sql, type Kysely } from 'kysely';

// Append-only: never edit a migration that has landed; add the next number instead.
//
// The audit (transitions) keeps one index instead of two. Its rows are only ever read by
// task, in order (`GET /v1/tasks/:id`: task_id, then id), through transitions_task_idx;
// the primary key on id alone was read by nothing, yet every audit row paid for an entry
// in it, and the audit is the most written table: about 3.5 rows a step. The primary key
// is now (task_id, id), the index that is read, and transitions_task_idx goes: one index
// entry less for every audit row. Unique all the same, since id is.
//
// Adding the key builds its index under an ACCESS EXCLUSIVE lock on transitions while it
// runs (writes of every kind wait; on a large installation, run it in a quiet moment).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE transitions DROP CONSTRAINT transitions_pkey;
    ALTER TABLE transitions ADD CONSTRAINT transitions_pkey PRIMARY KEY (task_id, id);
    DROP INDEX transitions_task_idx;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE INDEX transitions_task_idx ON transitions (task_id, id);
    ALTER TABLE transitions DROP CONSTRAINT transitions_pkey;
    ALTER TABLE transitions ADD CONSTRAINT transitions_pkey PRIMARY KEY (id);
  `.execute(db);
}
