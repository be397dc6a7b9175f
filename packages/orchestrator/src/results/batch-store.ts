import { sql, type Transaction } from 'kysely';
import type { Database } from '../db/database.ts';
import type { OutboxRow, OutgoingMessage } from '../outbox/outbox.ts';
import type { LockedTask } from '../tasks/dispatch.ts';
import type { BatchPlan, StepState } from './batch-plan.ts';

/**
 * Locks the tasks (in id order) and reads them and all their steps, in one round trip
 * (`lock_tasks_read_steps`, migration 0003: the read takes its snapshot after the locks).
 */
export async function lockAndReadSteps(
  trx: Transaction<Database>,
  taskIds: string[],
): Promise<{ tasks: Map<string, LockedTask>; steps: Map<string, StepState> }> {
  const ids = [...new Set(taskIds)];
  if (ids.length === 0) return { tasks: new Map(), steps: new Map() };
  const { rows } = await sql<BatchRow>`/* prepared:lock_tasks_read_steps */
    SELECT * FROM lock_tasks_read_steps(${ids}::text[])`.execute(trx);
  const tasks = new Map<string, LockedTask>();
  const steps = new Map<string, StepState>();
  for (const r of rows) {
    if (r.kind === 'task') {
      tasks.set(r.id, {
        id: r.id,
        state: r.state,
        namespace: r.namespace!,
        name: r.name,
        version: r.version!,
        template_id: r.template_id!,
        correlation_id: r.correlation_id!,
        context: r.context!,
        parent_task_id: r.parent_task_id,
        parent_step_id: r.parent_step_id,
      });
    } else {
      steps.set(r.id, {
        id: r.id,
        task_id: r.task_id,
        name: r.name,
        state: r.state,
        attempt: r.attempt!,
        max_attempts: r.max_attempts!,
        deps_pending: r.deps_pending!,
        dependents: r.dependents!,
        result: r.result,
        error: r.error,
        finished_at: r.finished_at ? new Date(r.finished_at).toISOString() : null,
      });
    }
  }
  return { tasks, steps };
}

/** A row of `lock_tasks_read_steps`: a task's columns or a step's, by `kind`. */
interface BatchRow {
  kind: 'task' | 'step';
  id: string;
  task_id: string;
  name: string;
  state: string;
  attempt: number | null;
  max_attempts: number | null;
  deps_pending: number | null;
  dependents: string[] | null;
  result: unknown;
  error: unknown;
  finished_at: Date | null;
  namespace: string | null;
  version: string | null;
  template_id: string | null;
  correlation_id: string | null;
  context: Record<string, unknown> | null;
  parent_task_id: string | null;
  parent_step_id: string | null;
}

/** The rows changed under the lock after all: the batch is rolled back and retried. */
export class PlanConflict extends Error {
  /** SQLSTATE serialization_failure, which the batch consumer retries as transient. */
  readonly code = '40001';
}

/**
 * Writes a batch's plan in one statement: every step row (compare-and-set on the values
 * the plan was made from), the tasks it finished, the audit rows and the outbox rows.
 * Returns the outbox rows to publish after commit.
 */
export async function writePlan(trx: Transaction<Database>, plan: BatchPlan, messages: OutgoingMessage[]): Promise<OutboxRow[]> {
  const steps = plan.steps.map((w) => {
    const c = w.outcome;
    return {
      id: w.id,
      from_state: w.from_state,
      from_attempt: w.from_attempt,
      from_deps_pending: w.from_deps_pending,
      state: w.state,
      attempt: w.attempt,
      deps_pending: w.deps_pending,
      enqueue: w.enqueue,
      outcome: c !== null,
      result: c && c.state === 'complete' ? (c.result ?? null) : null,
      error: c ? c.error : null,
      started_at: c?.started_at ?? null,
      finished_at: c?.finished_at ?? null,
      retry_in_ms: c?.retry_in_ms ?? null,
      waiting_for: c?.waiting_for ?? null,
    };
  });
  const outbox = messages.map((m) => ({ exchange: m.exchange, routing_key: m.routingKey, body: m.body, properties: m.properties }));
  const { rows } = await sql<{ steps: number; tasks: number; outbox: string[] }>`/* prepared:write_result_batch */
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
      FROM jsonb_to_recordset(${JSON.stringify(steps)}::jsonb) AS x(
        id text, from_state text, from_attempt int, from_deps_pending int, state text, attempt int,
        deps_pending int, enqueue boolean, outcome boolean, result jsonb, error jsonb,
        started_at timestamptz, finished_at timestamptz, retry_in_ms int, waiting_for text)
      WHERE s.id = x.id AND s.state = x.from_state AND s.attempt = x.from_attempt AND s.deps_pending = x.from_deps_pending
      RETURNING 1
    ), tk AS (
      UPDATE tasks t SET state = x.state, error = x.error, updated_at = now(), completed_at = now()
      FROM jsonb_to_recordset(${JSON.stringify(plan.tasks)}::jsonb) AS x(id text, state text, error jsonb)
      WHERE t.id = x.id AND t.state = 'in_progress'
      RETURNING 1
    ), tr AS (
      INSERT INTO transitions (task_id, step_id, from_state, to_state, attempt, reason, actor)
      SELECT task_id, step_id, from_state, to_state, attempt, reason, actor
      FROM jsonb_to_recordset(${JSON.stringify(plan.transitions)}::jsonb)
        AS x(task_id text, step_id text, from_state text, to_state text, attempt int, reason text, actor text)
    ), ob AS (
      INSERT INTO outbox (exchange, routing_key, body, properties)
      SELECT exchange, routing_key, body, properties
      FROM jsonb_to_recordset(${JSON.stringify(outbox)}::jsonb) AS x(exchange text, routing_key text, body text, properties jsonb)
      RETURNING id
    )
    SELECT (SELECT count(*) FROM su)::int AS steps, (SELECT count(*) FROM tk)::int AS tasks,
           COALESCE((SELECT array_agg(id) FROM ob), '{}') AS outbox`.execute(trx);
  const r = rows[0]!;
  if (r.steps !== steps.length || r.tasks !== plan.tasks.length) {
    throw new PlanConflict(
      `result batch: ${r.steps} of ${steps.length} step rows and ${r.tasks} of ${plan.tasks.length} task rows matched what was read under the lock`,
    );
  }
  // Ids only serve to delete the rows once the broker confirms them, so their order
  // relative to `messages` does not matter.
  return messages.map((m, i) => ({ ...m, id: String(r.outbox[i]) }));
}
