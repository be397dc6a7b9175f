import { sql, type Kysely } from 'kysely';

// Operator actions (who did what) and steps that wait for a child task.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE transitions ADD COLUMN actor text;

    ALTER TABLE steps ADD COLUMN waiting_for_task_id text;
    ALTER TABLE steps DROP CONSTRAINT steps_state_check;
    ALTER TABLE steps ADD CONSTRAINT steps_state_check
      CHECK (state IN ('pending', 'enqueued', 'waiting_retry', 'waiting_child', 'complete', 'error', 'cancelled'));
    CREATE INDEX steps_waiting_for_idx ON steps (waiting_for_task_id) WHERE waiting_for_task_id IS NOT NULL;
  `.execute(db);
}
