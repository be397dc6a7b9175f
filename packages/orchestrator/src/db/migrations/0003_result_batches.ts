import { sql, type Kysely } from 'kysely';

// Append-only: never edit a migration that has landed; add the next number instead.
//
// One round trip to lock a batch's tasks and read their steps (issue 7: a result batch was
// nine statements one after the other). Locking and reading cannot be one plain statement:
// under READ COMMITTED a statement reads the snapshot taken when it started, before it
// waited for the locks, so it could miss changes committed by whoever held them. A VOLATILE
// PL/pgSQL function takes a fresh snapshot for each statement it runs, so its read comes
// after the lock wait, as two statements would, without the second round trip.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE FUNCTION lock_tasks_read_steps(p_task_ids text[]) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE AS $fn$
    BEGIN
      -- In id order, so two orchestrators locking overlapping batches never deadlock.
      PERFORM 1 FROM tasks WHERE id = ANY(p_task_ids) ORDER BY id FOR UPDATE;
      RETURN jsonb_build_object(
        'tasks', COALESCE((
          SELECT jsonb_agg(jsonb_build_object(
            'id', t.id, 'state', t.state, 'namespace', t.namespace, 'name', t.name, 'version', t.version,
            'template_id', t.template_id::text, 'correlation_id', t.correlation_id, 'context', t.context,
            'parent_task_id', t.parent_task_id, 'parent_step_id', t.parent_step_id))
          FROM tasks t WHERE t.id = ANY(p_task_ids)), '[]'::jsonb),
        'steps', COALESCE((
          SELECT jsonb_agg(jsonb_build_object(
            'id', s.id, 'task_id', s.task_id, 'name', s.name, 'state', s.state, 'attempt', s.attempt,
            'max_attempts', s.max_attempts, 'deps_pending', s.deps_pending, 'dependents', s.dependents,
            'result', CASE WHEN s.state = 'complete' THEN s.result END,
            'error', CASE WHEN s.state = 'error' THEN s.error END,
            'finished_at', s.finished_at))
          FROM steps s WHERE s.task_id = ANY(p_task_ids)), '[]'::jsonb));
    END
    $fn$;
  `.execute(db);
}
