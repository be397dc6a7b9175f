import { sql, type Kysely } from 'kysely';

// Append-only: never edit a migration that has landed; add the next number instead.
//
// write_result_batch_checked lets a result batch run in one round trip (BEGIN, the write and
// COMMIT in one query) when the orchestrator still holds what its last batch for these tasks
// read or wrote (issue 7, per-step overhead; see TaskCache). It locks the tasks in id order,
// as lock_tasks_read_steps does, and compares them with what the caller made its plan from:
// each task's id and state, and the id, state, attempt and pending-dependency count of every
// step of those tasks (the same set, no more, no fewer). Those values decide a result; the
// others a plan reads (results, errors) change only with them. If all match, it writes the
// plan exactly as write_result_batch does and returns the outbox ids; if anything differs
// (another orchestrator or an operator changed a task since), it writes nothing and returns
// NULL, and the caller reads the tasks under the lock and plans again.
//
// The caller sends each side as one text, in id order: 'id state' per task and
// 'id state attempt deps_pending' per step, joined by commas (ids of letters, digits, '_' and
// '-' only; the caller reads the database instead for any other). One string comparison per
// side cost Postgres a half of comparing row by row (35 tasks of 4 steps: 0.75 against
// 1.46 ms a batch, with the round trip). Like lock_tasks_read_steps (migration 0004), it plans
// without sequential scans: a batch's rows are always few, found by key, whatever statistics
// that lag behind a fast-growing table say.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE FUNCTION write_result_batch_checked(
      p_task_ids text[], p_seen_tasks text, p_seen_steps text,
      p_steps jsonb, p_tasks jsonb, p_transitions jsonb, p_outbox jsonb)
    RETURNS bigint[]
    LANGUAGE plpgsql VOLATILE
    SET enable_seqscan = off
    AS $fn$
    DECLARE
      v_same boolean;
    BEGIN
      -- In id order, so two orchestrators locking overlapping batches never deadlock.
      SELECT string_agg(t.id || ' ' || t.state, ',' ORDER BY t.id) IS NOT DISTINCT FROM p_seen_tasks INTO v_same
        FROM (SELECT t0.id, t0.state FROM tasks t0 WHERE t0.id = ANY(p_task_ids) ORDER BY t0.id FOR UPDATE) t;
      IF v_same THEN
        SELECT string_agg(s.id || ' ' || s.state || ' ' || s.attempt || ' ' || s.deps_pending, ',' ORDER BY s.id)
                 IS NOT DISTINCT FROM p_seen_steps INTO v_same
          FROM steps s WHERE s.task_id = ANY(p_task_ids);
      END IF;
      IF NOT v_same THEN
        RETURN NULL;
      END IF;
      RETURN write_result_batch(p_steps, p_tasks, p_transitions, p_outbox);
    END
    $fn$;
  `.execute(db);
}
