import { sql, type Kysely } from 'kysely';

// Append-only: never edit a migration that has landed; add the next number instead.
//
// write_result_rows, write_result_rows_checked and create_tasks_rows write a result batch and
// a creation batch exactly as write_result_batch, write_result_batch_checked and
// create_tasks_batch (migrations 0006, 0008 and 0009) do, from rows sent as JSON arrays of
// positions instead of JSON objects of keys (issue 7). Postgres spent a fifth of its time in
// a throughput run parsing the batches' JSON into jsonb (jsonb_in, which sorts every
// object's keys) and then finding each column by key (jsonb_to_recordset): for a result
// batch of 47 step rows, 1.47-1.55 ms of a pgbench round trip with objects against
// 0.77-0.88 ms with positions, and the text is half as long. The positions are those the
// orchestrator writes (planWriteArgs in results/batch-store.ts, createTasks in
// tasks/create-tasks.ts):
//
//   result batch
//     step:       [id, from_state, from_attempt, from_deps_pending, state, attempt, deps_pending,
//                  enqueue, outcome, result, error, started_at, finished_at, retry_in_ms, waiting_for]
//     task:       [id, from_state, state, error]
//     transition: [task_id, step_id, from_state, to_state, attempt, reason, actor]
//     outbox:     [exchange, routing_key, body, properties]
//   creation batch
//     task:       [id, namespace, name, version, template_id, context, correlation_id,
//                  idempotency_key, parent_task_id, parent_step_id, requested_by]
//     step:       [id, task_id, name, position, state, attempt, max_attempts, deps_pending, dependents]
//     transition: [task_id, step_id, from_state, to_state, attempt, reason]
//     outbox:     [task_ids, exchange, routing_key, body, properties]
//
// A row may stop early: a missing position reads as NULL (`->>` past the end of an array),
// so a step row without an outcome ends after `outcome`. A JSON null reads as NULL, as it
// did from the objects (for the jsonb columns too: NULLIF(…, 'null')).
//
// The functions of 0006, 0008 and 0009 stay: an orchestrator of the version before keeps
// calling them while a rolling upgrade replaces it.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE FUNCTION write_result_rows(p_steps jsonb, p_tasks jsonb, p_transitions jsonb, p_outbox jsonb)
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
        FROM (
          -- OFFSET 0 keeps the subquery apart, so each position is read once per row, not
          -- once for every CASE that names it.
          SELECT r->>0 AS id, r->>1 AS from_state, (r->>2)::int AS from_attempt, (r->>3)::int AS from_deps_pending,
                 r->>4 AS state, (r->>5)::int AS attempt, (r->>6)::int AS deps_pending,
                 (r->>7)::boolean AS enqueue, (r->>8)::boolean AS outcome,
                 NULLIF(r->9, 'null') AS result, NULLIF(r->10, 'null') AS error,
                 (r->>11)::timestamptz AS started_at, (r->>12)::timestamptz AS finished_at,
                 (r->>13)::int AS retry_in_ms, r->>14 AS waiting_for
          FROM jsonb_array_elements(p_steps) AS e(r)
          OFFSET 0
        ) AS x
        WHERE s.id = x.id AND s.state = x.from_state AND s.attempt = x.from_attempt AND s.deps_pending = x.from_deps_pending
        RETURNING 1
      ), tk AS (
        UPDATE tasks t SET state = x.state, error = x.error, updated_at = now(), completed_at = now()
        FROM (
          SELECT r->>0 AS id, r->>1 AS from_state, r->>2 AS state, NULLIF(r->3, 'null') AS error
          FROM jsonb_array_elements(p_tasks) AS e(r)
          OFFSET 0
        ) AS x
        -- A compare-and-set on the state read, like the steps' (see write_result_batch).
        WHERE t.id = x.id AND t.state = x.from_state
        RETURNING 1
      ), tr AS (
        INSERT INTO transitions (task_id, step_id, from_state, to_state, attempt, reason, actor)
        SELECT r->>0, r->>1, r->>2, r->>3, (r->>4)::int, r->>5, r->>6
        FROM jsonb_array_elements(p_transitions) AS e(r)
      ), ob AS (
        INSERT INTO outbox (exchange, routing_key, body, properties)
        SELECT r->>0, r->>1, r->>2, NULLIF(r->3, 'null')
        FROM jsonb_array_elements(p_outbox) AS e(r)
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

    CREATE FUNCTION write_result_rows_checked(
      p_task_ids text[], p_seen_tasks text, p_seen_steps text,
      p_steps jsonb, p_tasks jsonb, p_transitions jsonb, p_outbox jsonb)
    RETURNS bigint[]
    LANGUAGE plpgsql VOLATILE
    SET enable_seqscan = off
    AS $fn$
    DECLARE
      v_same boolean;
    BEGIN
      -- The check of write_result_batch_checked (migration 0008), unchanged.
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
      RETURN write_result_rows(p_steps, p_tasks, p_transitions, p_outbox);
    END
    $fn$;
    -- Planned as create_tasks_batch is (migration 0009): one plan kept for every batch size.
    CREATE FUNCTION create_tasks_rows(p_tasks jsonb, p_steps jsonb, p_transitions jsonb, p_outbox jsonb)
    RETURNS TABLE (created jsonb, outbox bigint[])
    LANGUAGE plpgsql VOLATILE
    SET plan_cache_mode = force_generic_plan
    SET enable_seqscan = off
    AS $fn$
    BEGIN
      RETURN QUERY
      WITH ins AS (
        INSERT INTO tasks (id, namespace, name, version, template_id, state, context, correlation_id, idempotency_key,
                           parent_task_id, parent_step_id, requested_by)
        SELECT r->>0, r->>1, r->>2, r->>3, (r->>4)::bigint, 'in_progress', NULLIF(r->5, 'null'), r->>6,
               r->>7, r->>8, r->>9, r->>10
        FROM jsonb_array_elements(p_tasks) AS e(r)
        ON CONFLICT (namespace, idempotency_key) DO NOTHING
        RETURNING tasks.id, tasks.created_at
      ), st AS (
        INSERT INTO steps (id, task_id, name, position, state, attempt, max_attempts, deps_pending, dependents, enqueued_at)
        SELECT r->>0, r->>1, r->>2, (r->>3)::int, r->>4, (r->>5)::int, (r->>6)::int, (r->>7)::int,
               ARRAY(SELECT jsonb_array_elements_text(r->8)),
               CASE WHEN r->>4 = 'enqueued' THEN now() END
        FROM jsonb_array_elements(p_steps) AS e(r)
        WHERE r->>1 IN (SELECT ins.id FROM ins)
      ), tr AS (
        INSERT INTO transitions (task_id, step_id, from_state, to_state, attempt, reason)
        SELECT r->>0, r->>1, r->>2, r->>3, (r->>4)::int, r->>5
        FROM jsonb_array_elements(p_transitions) AS e(r)
        WHERE r->>0 IN (SELECT ins.id FROM ins)
      ), ob AS (
        INSERT INTO outbox (exchange, routing_key, body, properties)
        SELECT r->>1, r->>2, r->>3, NULLIF(r->4, 'null')
        FROM jsonb_array_elements(p_outbox) AS e(r)
        WHERE ARRAY(SELECT jsonb_array_elements_text(r->0)) <@ (SELECT array_agg(ins.id) FROM ins)
        RETURNING outbox.id
      )
      SELECT (SELECT jsonb_agg(jsonb_build_object('id', ins.id, 'created_at', ins.created_at)) FROM ins),
             COALESCE((SELECT array_agg(ob.id) FROM ob), '{}');
    END
    $fn$;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DROP FUNCTION create_tasks_rows(jsonb, jsonb, jsonb, jsonb);
    DROP FUNCTION write_result_rows_checked(text[], text, text, jsonb, jsonb, jsonb, jsonb);
    DROP FUNCTION write_result_rows(jsonb, jsonb, jsonb, jsonb);
  `.execute(db);
}
