import { sql, type Kysely } from 'kysely';
import { KEPT_PLANS, jsonLiteral, pipelinedTransaction, preparedQuery, type Database, type Db, type PipelinedTransaction } from '../db/database.ts';
import { outboxPositions, outboxRow, type OutboxRow, type OutgoingMessage } from '../outbox/outbox.ts';
import type { LockedTask } from '../tasks/dispatch.ts';
import type { BatchPlan, StepState } from './batch-plan.ts';
import type { CacheCheck } from './task-cache.ts';

/**
 * A result batch's transaction in two round trips instead of four (issue 7, per-step
 * overhead): `BEGIN` travels with the lock-and-read and `COMMIT` with the write
 * (PipelinedTransaction). Other statements of the batch (the rare reads of waits and child
 * tasks) run on `tx.db`, the same connection. A callback that ends without writing, or
 * throws, rolls the transaction back.
 */
export async function batchTransaction<T>(db: Db, fn: (tx: BatchTransaction) => Promise<T>): Promise<T> {
  return pipelinedTransaction(db, (tx) => fn(new BatchTransaction(tx)));
}

/** Result batches of at most this many tasks run on plans kept for the connection (KEPT_PLANS). */
export const KEPT_PLAN_TASKS = 8;

export class BatchTransaction {
  constructor(private readonly tx: PipelinedTransaction) {}

  /** The batch's connection, for statements between the read and the write. */
  get db(): Kysely<Database> {
    return this.tx.db;
  }

  /**
   * Begins, locks the tasks (in id order) and reads them and all their steps, in one round
   * trip (`lock_tasks_read_steps`, migration 0003: the read takes its snapshot after the locks).
   *
   * A small batch (at most KEPT_PLAN_TASKS tasks: one task at a time, the latency case) runs
   * on plans kept for the connection (KEPT_PLANS). A big one is planned for its size: on kept
   * plans Postgres's CPU per step in the throughput run rose by a tenth.
   */
  async lockAndReadSteps(taskIds: string[]): Promise<{ tasks: Map<string, LockedTask>; steps: Map<string, StepState> }> {
    const ids = [...new Set(taskIds)];
    const plans = ids.length <= KEPT_PLAN_TASKS ? `${KEPT_PLANS} ` : '';
    return toMaps(
      await this.tx.begin<BatchRow>(`${plans}SELECT * FROM lock_tasks_read_steps(ARRAY(SELECT jsonb_array_elements_text(${jsonLiteral(ids)})))`),
    );
  }

  /**
   * Writes the plan and commits, in one round trip (`write_result_rows`, migration 0011): every
   * step row (compare-and-set on the values the plan was made from), the tasks it finished,
   * the audit rows and the outbox rows. A row changed under the lock after all raises
   * serialization_failure, which the batch consumer retries. Returns the outbox rows to
   * publish now that they are committed.
   */
  async writePlanAndCommit(plan: BatchPlan, messages: OutgoingMessage[]): Promise<OutboxRow[]> {
    const args = planWriteArgs(plan, messages).map(jsonLiteral).join(', ');
    const rows = await this.tx.commit<{ outbox: string[] }>(`SELECT write_result_rows(${args}) AS outbox;`);
    return withOutboxIds(messages, rows[0]!.outbox);
  }
}

/**
 * A result batch planned from the tasks as the TaskCache held them, written in one round trip
 * by one prepared statement, which is its own transaction (migrations 0008, 0011 and 0014):
 * the write locks the tasks and compares every one of their rows with `check` before it
 * writes. A batch of at most KEPT_PLAN_TASKS tasks runs on plans kept for the connection
 * (`write_result_rows_checked_kept`, whose own settings are KEPT_PLANS'); a bigger one is
 * planned for its size. Returns the outbox rows to publish, or null if the tasks changed
 * since the cache had them: then nothing was written, and the caller reads them under the
 * lock and plans again.
 *
 * `db` must not be inside a transaction block: the statement commits as it ends.
 */
export async function writeCheckedPlan(db: Kysely<Database>, check: CacheCheck, plan: BatchPlan, messages: OutgoingMessage[]): Promise<OutboxRow[] | null> {
  const kept = check.taskIds.length <= KEPT_PLAN_TASKS;
  const rows = await preparedQuery<{ outbox: string[] | null }>(db, kept ? CHECKED_WRITE_KEPT : CHECKED_WRITE, checkedWriteArgs(check, plan, messages));
  const ids = rows[0]!.outbox;
  return ids === null ? null : withOutboxIds(messages, ids);
}

/** writeCheckedPlan's seven parameters: the check's three, then write_result_rows's four as JSON. */
export function checkedWriteArgs(check: CacheCheck, plan: BatchPlan, messages: OutgoingMessage[]): unknown[] {
  return [check.taskIds, check.tasks, check.steps, ...planWriteArgs(plan, messages).map((a) => JSON.stringify(a))];
}

const CHECKED_WRITE_KEPT = `/* prepared:result_write_checked_kept */
  SELECT write_result_rows_checked_kept($1::text[], $2, $3, $4::jsonb, $5::jsonb, $6::jsonb, $7::jsonb) AS outbox`;
const CHECKED_WRITE = `/* prepared:result_write_checked */
  SELECT write_result_rows_checked($1::text[], $2, $3, $4::jsonb, $5::jsonb, $6::jsonb, $7::jsonb) AS outbox`;

/**
 * The same read as `BatchTransaction.lockAndReadSteps` (lock the tasks in id order, then read
 * them and all their steps), inside an ordinary transaction: for operator actions, which
 * decide and write the way a result batch does.
 */
export async function lockAndReadSteps(trx: Kysely<Database>, taskIds: string[]): Promise<{ tasks: Map<string, LockedTask>; steps: Map<string, StepState> }> {
  const { rows } = await sql<BatchRow>`SELECT * FROM lock_tasks_read_steps(${[...new Set(taskIds)]}::text[])`.execute(trx);
  return toMaps(rows);
}

/** The same write as `BatchTransaction.writePlanAndCommit`, inside an ordinary transaction (which the caller commits). */
export async function writePlan(trx: Kysely<Database>, plan: BatchPlan, messages: OutgoingMessage[]): Promise<OutboxRow[]> {
  const [steps, tasks, transitions, outbox] = planWriteArgs(plan, messages).map((a) => JSON.stringify(a));
  const { rows } = await sql<{ outbox: string[] }>`
    SELECT write_result_rows(${steps}::jsonb, ${tasks}::jsonb, ${transitions}::jsonb, ${outbox}::jsonb) AS outbox`.execute(trx);
  return withOutboxIds(messages, rows[0]!.outbox);
}

/**
 * write_result_rows's four arguments: the step rows, the task rows, the audit rows, the outbox
 * rows, each row a JSON array of its values by position (migration 0011 names them): Postgres
 * reads positions at half the cost of keys. A step or task row that moved carries its reason
 * (and a step row its operator, if any) after its values, and Postgres writes its audit row
 * from it (migration 0018); the audit rows passed are only those the rows do not say. A step
 * row without an outcome or a reason stops after `outcome`, and an audit row without an actor
 * after `reason`; what is missing reads as NULL. An outbox row of a step message has no body
 * and its step references after its properties (migration 0016).
 */
function planWriteArgs(plan: BatchPlan, messages: OutgoingMessage[]): unknown[][] {
  const steps = plan.steps.map((w) => {
    const c = w.outcome;
    const row: unknown[] = [w.id, w.from_state, w.from_attempt, w.from_deps_pending, w.state, w.attempt, w.deps_pending, w.enqueue, c !== null];
    if (c !== null) {
      row.push(c.state === 'complete' ? (c.result ?? null) : null, c.error ?? null, c.started_at ?? null, c.finished_at ?? null, c.retry_in_ms ?? null, c.waiting_for ?? null);
    } else if (w.reason !== null) {
      row.push(null, null, null, null, null, null);
    }
    if (w.reason !== null) {
      row.push(w.reason);
      if (w.actor !== undefined) row.push(w.actor);
    }
    return row;
  });
  const tasks = plan.tasks.map((t) => [t.id, t.from_state, t.state, t.error ?? null, t.reason]);
  const transitions = plan.audit.map((t) => {
    const row: unknown[] = [t.task_id, t.step_id, t.from_state, t.to_state, t.attempt, t.reason];
    if (t.actor != null) row.push(t.actor);
    return row;
  });
  return [steps, tasks, transitions, messages.map(outboxPositions)];
}

/**
 * The messages with the ids of their committed outbox rows. Ids only serve to delete the
 * rows once the broker confirms them, so their order relative to `messages` does not matter.
 */
function withOutboxIds(messages: OutgoingMessage[], ids: string[]): OutboxRow[] {
  return messages.map((m, i) => outboxRow(m, String(ids[i])));
}

function toMaps(rows: BatchRow[]): { tasks: Map<string, LockedTask>; steps: Map<string, StepState> } {
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
