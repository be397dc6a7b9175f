import { sql, type Transaction } from 'kysely';
import type { Database } from '../db/database.ts';

export interface TransitionRow {
  task_id: string;
  step_id: string | null;
  from_state: string | null;
  to_state: string;
  attempt: number | null;
  reason: string;
  /** Who did it, for operator actions; absent for the engine. */
  actor?: string | null;
}

/** Appends audit rows (one statement for the whole batch). */
export async function recordTransitions(trx: Transaction<Database>, rows: TransitionRow[]): Promise<void> {
  if (rows.length === 0) return;
  await sql`/* prepared:transitions_insert */
    INSERT INTO transitions (task_id, step_id, from_state, to_state, attempt, reason, actor)
    SELECT task_id, step_id, from_state, to_state, attempt, reason, actor
    FROM jsonb_to_recordset(${JSON.stringify(rows)}::jsonb)
      AS x(task_id text, step_id text, from_state text, to_state text, attempt int, reason text, actor text)`.execute(trx);
}
