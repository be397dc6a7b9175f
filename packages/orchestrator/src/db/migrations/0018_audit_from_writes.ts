import { sql, type Kysely } from 'kysely';

// Append-only: never edit a migration that has landed; add the next number instead.
//
// The audit rows of a result batch and of a creation batch are written from the rows the
// batch writes, instead of crossing to Postgres as rows of their own (issue 7). A diamond
// task has 14 audit rows; each crossed as a JSON array of the task id, the step id, both
// states, the attempt and the reason, about a third of a batch's bytes, to say again what
// the step and task rows of the same statement already say. Now:
//
// - write_result_rows: a step row may carry the reason of its move at position 15 and the
//   operator who made it at 16; a task row its reason at position 4. Each updated row with a
//   reason writes one audit row: the step's task, the step, the state compared and the state
//   written, the attempt written (NULL for 0, a step never dispatched), the reason. The rows
//   of p_transitions are written first, as before (an operator's reopening of a failed task,
//   which the batch's rows do not say), then those of the steps in the order of p_steps, then
//   those of the tasks.
// - create_tasks_rows: with p_transitions NULL, the function writes the audit of each task it
//   creates itself: the task created (in_progress), each step created (pending) and each
//   step created enqueued (pending → enqueued, attempt 1, "no dependencies"), in the order
//   of the steps' positions. With an array, it writes the array, as before.
//
// Rolling upgrade: an orchestrator of the version before sends rows without reasons and its
// audit in p_transitions, and both functions write it as before.
//
// `down` restores the functions of migration 0016; run it only with the code of that version,
// which sends its audit rows itself.

type Audit = 'given' | 'derived';

const RESULT_OUTBOX_INSERT = `        INSERT INTO outbox (exchange, routing_key, body, properties, step_refs)
        SELECT r->>0, r->>1, r->>2, NULLIF(r->3, 'null'), NULLIF(r->4, 'null')
        FROM jsonb_array_elements(p_outbox) AS e(r)`;

const CREATION_OUTBOX_INSERT = `        INSERT INTO outbox (exchange, routing_key, body, properties, step_refs)
        SELECT r->>1, r->>2, r->>3, NULLIF(r->4, 'null'), NULLIF(r->5, 'null')
        FROM jsonb_array_elements(p_outbox) AS e(r)`;

/** write_result_rows as migration 0016 wrote it (`given`), or writing the audit of its rows too (`derived`). */
function writeResultRows(audit: Audit): string {
  const derived = audit === 'derived';
  return `
    CREATE OR REPLACE FUNCTION write_result_rows(p_steps jsonb, p_tasks jsonb, p_transitions jsonb, p_outbox jsonb)
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
                 (r->>13)::int AS retry_in_ms, r->>14 AS waiting_for${derived ? `,
                 r->>15 AS reason, r->>16 AS actor, e.ord
          FROM jsonb_array_elements(p_steps) WITH ORDINALITY AS e(r, ord)` : `
          FROM jsonb_array_elements(p_steps) AS e(r)`}
          OFFSET 0
        ) AS x
        WHERE s.id = x.id AND s.state = x.from_state AND s.attempt = x.from_attempt AND s.deps_pending = x.from_deps_pending
        RETURNING ${derived ? 's.task_id, s.id, x.from_state, x.state, x.attempt, x.reason, x.actor, x.ord' : '1'}
      ), tk AS (
        UPDATE tasks t SET state = x.state, error = x.error, updated_at = now(), completed_at = now()
        FROM (
          SELECT r->>0 AS id, r->>1 AS from_state, r->>2 AS state, NULLIF(r->3, 'null') AS error${derived ? `, r->>4 AS reason, e.ord
          FROM jsonb_array_elements(p_tasks) WITH ORDINALITY AS e(r, ord)` : `
          FROM jsonb_array_elements(p_tasks) AS e(r)`}
          OFFSET 0
        ) AS x
        -- A compare-and-set on the state read, like the steps' (see write_result_batch).
        WHERE t.id = x.id AND t.state = x.from_state
        RETURNING ${derived ? 't.id, x.from_state, x.state, x.reason, x.ord' : '1'}
      ), tr AS (
        INSERT INTO transitions (task_id, step_id, from_state, to_state, attempt, reason, actor)${derived ? `
        SELECT a.task_id, a.step_id, a.from_state, a.to_state, a.attempt, a.reason, a.actor
        FROM (
          SELECT r->>0 AS task_id, r->>1 AS step_id, r->>2 AS from_state, r->>3 AS to_state, (r->>4)::int AS attempt,
                 r->>5 AS reason, r->>6 AS actor, 1 AS part, e.ord
          FROM jsonb_array_elements(p_transitions) WITH ORDINALITY AS e(r, ord)
          UNION ALL
          SELECT su.task_id, su.id, su.from_state, su.state, NULLIF(su.attempt, 0), su.reason, su.actor, 2, su.ord
          FROM su WHERE su.reason IS NOT NULL
          UNION ALL
          SELECT tk.id, NULL, tk.from_state, tk.state, NULL, tk.reason, NULL, 3, tk.ord
          FROM tk WHERE tk.reason IS NOT NULL
        ) AS a
        ORDER BY a.part, a.ord` : `
        SELECT r->>0, r->>1, r->>2, r->>3, (r->>4)::int, r->>5, r->>6
        FROM jsonb_array_elements(p_transitions) AS e(r)`}
      ), ob AS (
${RESULT_OUTBOX_INSERT}
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
    $fn$;`;
}

/** create_tasks_rows as migration 0016 wrote it (`given`), or writing the audit of what it creates when p_transitions is NULL (`derived`). */
function createTasksRows(audit: Audit): string {
  const derived = audit === 'derived';
  return `
    CREATE OR REPLACE FUNCTION create_tasks_rows(p_tasks jsonb, p_steps jsonb, p_transitions jsonb, p_outbox jsonb)
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
        WHERE r->>1 IN (SELECT ins.id FROM ins)${derived ? `
        RETURNING steps.task_id, steps.id, steps.position, steps.state` : ''}
      ), tr AS (
        INSERT INTO transitions (task_id, step_id, from_state, to_state, attempt, reason)
        SELECT r->>0, r->>1, r->>2, r->>3, (r->>4)::int, r->>5
        FROM jsonb_array_elements(p_transitions) AS e(r)
        WHERE r->>0 IN (SELECT ins.id FROM ins)
      ),${derived ? ` created_audit AS (
        INSERT INTO transitions (task_id, step_id, from_state, to_state, attempt, reason)
        SELECT a.task_id, a.step_id, a.from_state, a.to_state, a.attempt, a.reason
        FROM (
          SELECT ins.id AS task_id, NULL::text AS step_id, NULL::text AS from_state, 'in_progress' AS to_state,
                 NULL::int AS attempt, 'task created' AS reason, -1 AS position, 0 AS sub
          FROM ins
          UNION ALL
          SELECT st.task_id, st.id, NULL, 'pending', NULL, 'task created', st.position, 0 FROM st
          UNION ALL
          SELECT st.task_id, st.id, 'pending', 'enqueued', 1, 'no dependencies', st.position, 1 FROM st WHERE st.state = 'enqueued'
        ) AS a
        WHERE p_transitions IS NULL
        ORDER BY a.task_id, a.position, a.sub
      ),` : ''} ob AS (
${CREATION_OUTBOX_INSERT}
        WHERE ARRAY(SELECT jsonb_array_elements_text(r->0)) <@ (SELECT array_agg(ins.id) FROM ins)
        RETURNING outbox.id
      )
      SELECT (SELECT jsonb_agg(jsonb_build_object('id', ins.id, 'created_at', ins.created_at)) FROM ins),
             COALESCE((SELECT array_agg(ob.id) FROM ob), '{}');
    END
    $fn$;`;
}

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql.raw(writeResultRows('derived')).execute(db);
  await sql.raw(createTasksRows('derived')).execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql.raw(writeResultRows('given')).execute(db);
  await sql.raw(createTasksRows('given')).execute(db);
}
