import { sql, type Kysely } from 'kysely';

// Append-only: never edit a migration that has landed; add the next number instead.
//
// write_result_batch writes a result batch's plan (the statement batch-store.ts sent until
// now, unchanged): every step row as a compare-and-set on the values the plan was made from,
// the tasks it finished, the audit rows and the outbox rows. It raises serialization_failure
// (40001, which the batch consumer retries) when a row changed under the lock after all, so
// that the caller can send COMMIT in the same round trip (issue 7, per-step overhead).
// How it is planned is the caller's choice (see BatchTransaction in batch-store.ts); every
// table it writes is found by primary key from the batch's rows whatever the statistics say.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE FUNCTION write_result_batch(p_steps jsonb, p_tasks jsonb, p_transitions jsonb, p_outbox jsonb)
    RETURNS bigint[]
    LANGUAGE plpgsql VOLATILE
    AS $fn$
    DECLARE
      v_steps int;
      v_tasks int;
      v_outbox bigint[];
    BEGIN
      WITH su AS (
        UPDATE steps s SET
          state = x.state,
          attempt = x.attempt,
          deps_pending = x.deps_pending,
          result = CASE WHEN x.outcome THEN x.result ELSE s.result END,
          error = CASE WHEN x.outcome THEN x.error ELSE s.error END,
          started_at = CASE WHEN x.outcome THEN x.started_at ELSE s.started_at END,
          finished_at = CASE WHEN x.outcome THEN x.finished_at ELSE s.finished_at END,
          next_retry_at = CASE
            WHEN NOT x.outcome THEN s.next_retry_at
            WHEN x.retry_in_ms IS NOT NULL THEN now() + make_interval(secs => x.retry_in_ms / 1000.0) END,
          waiting_for_task_id = CASE WHEN x.outcome THEN COALESCE(x.waiting_for, s.waiting_for_task_id) ELSE s.waiting_for_task_id END,
          enqueued_at = CASE WHEN x.enqueue THEN now() ELSE s.enqueued_at END,
          updated_at = now()
        FROM jsonb_to_recordset(p_steps) AS x(
          id text, from_state text, from_attempt int, from_deps_pending int, state text, attempt int,
          deps_pending int, enqueue boolean, outcome boolean, result jsonb, error jsonb,
          started_at timestamptz, finished_at timestamptz, retry_in_ms int, waiting_for text)
        WHERE s.id = x.id AND s.state = x.from_state AND s.attempt = x.from_attempt AND s.deps_pending = x.from_deps_pending
        RETURNING 1
      ), tk AS (
        UPDATE tasks t SET state = x.state, error = x.error, updated_at = now(), completed_at = now()
        FROM jsonb_to_recordset(p_tasks) AS x(id text, from_state text, state text, error jsonb)
        -- A compare-and-set on the state read, like the steps' (not a constant: a plan kept
        -- from a small table would find every live task through tasks_live_idx instead).
        WHERE t.id = x.id AND t.state = x.from_state
        RETURNING 1
      ), tr AS (
        INSERT INTO transitions (task_id, step_id, from_state, to_state, attempt, reason, actor)
        SELECT task_id, step_id, from_state, to_state, attempt, reason, actor
        FROM jsonb_to_recordset(p_transitions)
          AS x(task_id text, step_id text, from_state text, to_state text, attempt int, reason text, actor text)
      ), ob AS (
        INSERT INTO outbox (exchange, routing_key, body, properties)
        SELECT exchange, routing_key, body, properties
        FROM jsonb_to_recordset(p_outbox) AS x(exchange text, routing_key text, body text, properties jsonb)
        RETURNING id
      )
      SELECT (SELECT count(*) FROM su), (SELECT count(*) FROM tk), COALESCE((SELECT array_agg(id) FROM ob), '{}')
      INTO v_steps, v_tasks, v_outbox;
      IF v_steps <> jsonb_array_length(p_steps) OR v_tasks <> jsonb_array_length(p_tasks) THEN
        RAISE EXCEPTION USING
          ERRCODE = 'serialization_failure',
          MESSAGE = format('result batch: %s of %s step rows and %s of %s task rows matched what was read under the lock',
                           v_steps, jsonb_array_length(p_steps), v_tasks, jsonb_array_length(p_tasks));
      END IF;
      RETURN v_outbox;
    END
    $fn$;
  `.execute(db);
}
