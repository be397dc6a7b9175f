import { sql, type Kysely } from 'kysely';

// Append-only: never edit a migration that has landed; add the next number instead.
//
// A step message's outbox row keeps which steps it carries instead of the message (issue 7).
// The row exists so that a committed change gets its messages out even if the orchestrator
// dies before the broker confirms them; the orchestrator publishes the message it holds and
// deletes the row once confirmed. For a step message everything in it can be read again from
// the tables (the task, its template, the results of the step's ancestors), so the row now
// holds `step_refs`, a JSON array of [step id, attempt], and no body. The sweeper, which
// publishes rows a dead orchestrator left behind, builds the messages again from the rows of
// the steps still enqueued at that attempt (outbox/outbox.ts, tasks/dispatch.ts); a step that
// moved on needs no message. Writing the bodies had every step message cross to Postgres
// twice in size (a JSON string inside the batch's JSON), be parsed, compressed and written to
// the WAL, only to be deleted milliseconds later.
//
// write_result_rows (migration 0011) and create_tasks_rows (0011) take an outbox row's step
// references at the position after its properties (result batch: 4, creation batch: 5); a
// row without them is written as before, with its body. Step messages are written that way by
// result batches, creation batches and an operator's manual completion (which writes as a
// result batch does); other messages (child-task outcomes, retries, the watchdog's re-sends,
// an operator's retry or cancel) keep their bodies.
//
// Rolling upgrade: an orchestrator of the version before writes and publishes as before, but
// its sweeper cannot publish a row without a body (it fails that sweep and tries again); the
// rows wait for a sweeper of this version. Downgrading needs an outbox without such rows.

const RESULT_OUTBOX_INSERT = `        INSERT INTO outbox (exchange, routing_key, body, properties, step_refs)
        SELECT r->>0, r->>1, r->>2, NULLIF(r->3, 'null'), NULLIF(r->4, 'null')
        FROM jsonb_array_elements(p_outbox) AS e(r)`;

const RESULT_OUTBOX_INSERT_0011 = `        INSERT INTO outbox (exchange, routing_key, body, properties)
        SELECT r->>0, r->>1, r->>2, NULLIF(r->3, 'null')
        FROM jsonb_array_elements(p_outbox) AS e(r)`;

const CREATION_OUTBOX_INSERT = `        INSERT INTO outbox (exchange, routing_key, body, properties, step_refs)
        SELECT r->>1, r->>2, r->>3, NULLIF(r->4, 'null'), NULLIF(r->5, 'null')
        FROM jsonb_array_elements(p_outbox) AS e(r)`;

const CREATION_OUTBOX_INSERT_0011 = `        INSERT INTO outbox (exchange, routing_key, body, properties)
        SELECT r->>1, r->>2, r->>3, NULLIF(r->4, 'null')
        FROM jsonb_array_elements(p_outbox) AS e(r)`;

/** write_result_rows as migration 0011 wrote it, with the given outbox insert. */
function writeResultRows(resultOutboxInsert: string): string {
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
${resultOutboxInsert}
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

/** create_tasks_rows as migration 0011 wrote it, with the given outbox insert. */
function createTasksRows(creationOutboxInsert: string): string {
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
        WHERE r->>1 IN (SELECT ins.id FROM ins)
      ), tr AS (
        INSERT INTO transitions (task_id, step_id, from_state, to_state, attempt, reason)
        SELECT r->>0, r->>1, r->>2, r->>3, (r->>4)::int, r->>5
        FROM jsonb_array_elements(p_transitions) AS e(r)
        WHERE r->>0 IN (SELECT ins.id FROM ins)
      ), ob AS (
${creationOutboxInsert}
        WHERE ARRAY(SELECT jsonb_array_elements_text(r->0)) <@ (SELECT array_agg(ins.id) FROM ins)
        RETURNING outbox.id
      )
      SELECT (SELECT jsonb_agg(jsonb_build_object('id', ins.id, 'created_at', ins.created_at)) FROM ins),
             COALESCE((SELECT array_agg(ob.id) FROM ob), '{}');
    END
    $fn$;`;
}

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE outbox
      ALTER COLUMN body DROP NOT NULL,
      ADD COLUMN step_refs jsonb,
      ADD CONSTRAINT outbox_body_or_step_refs CHECK (body IS NOT NULL OR step_refs IS NOT NULL)
  `.execute(db);
  await sql.raw(writeResultRows(RESULT_OUTBOX_INSERT)).execute(db);
  await sql.raw(createTasksRows(CREATION_OUTBOX_INSERT)).execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DO $$
    BEGIN
      IF EXISTS (SELECT 1 FROM outbox WHERE body IS NULL) THEN
        RAISE EXCEPTION 'outbox rows without a body are waiting to be published: let a sweeper of this version publish them first';
      END IF;
    END
    $$
  `.execute(db);
  await sql.raw(writeResultRows(RESULT_OUTBOX_INSERT_0011)).execute(db);
  await sql.raw(createTasksRows(CREATION_OUTBOX_INSERT_0011)).execute(db);
  await sql`
    ALTER TABLE outbox
      DROP CONSTRAINT outbox_body_or_step_refs,
      DROP COLUMN step_refs,
      ALTER COLUMN body SET NOT NULL
  `.execute(db);
}
