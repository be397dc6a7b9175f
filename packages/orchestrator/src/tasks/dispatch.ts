import { sql, type Transaction } from 'kysely';
import type { Names } from '@tasker/protocol';
import type { Database } from '../db/database.ts';
import type { OutgoingMessage, StepRef } from '../outbox/outbox.ts';
import type { TemplateRegistry } from '../templates/registry.ts';
import { buildStepMessage, packSteps, stepOutgoing } from './step-messages.ts';

/** A locked task row, as the batch processors read it. */
export interface LockedTask {
  id: string;
  state: string;
  namespace: string;
  name: string;
  version: string;
  template_id: string;
  correlation_id: string;
  context: Record<string, unknown>;
  parent_task_id: string | null;
  parent_step_id: string | null;
}

/** A LockedTask's columns, of `tasks t`. */
const LOCKED_TASK_COLUMNS = 't.id, t.state, t.namespace, t.name, t.version, t.template_id, t.correlation_id, t.context, t.parent_task_id, t.parent_step_id';

/**
 * Locks the tasks of a batch, in id order so two orchestrators never deadlock. Holding the
 * task lock serializes every change to that task's steps, which is what makes counting
 * "all steps complete" correct when several orchestrators process the same task's results.
 */
export async function lockTasks(trx: Transaction<Database>, taskIds: string[]): Promise<Map<string, LockedTask>> {
  if (taskIds.length === 0) return new Map();
  const { rows } = await sql<LockedTask>`/* prepared:lock_tasks */
    SELECT ${sql.raw(LOCKED_TASK_COLUMNS)}
    FROM tasks t WHERE t.id = ANY(${[...new Set(taskIds)].sort()}::text[]) ORDER BY t.id FOR UPDATE`.execute(trx);
  return new Map(rows.map((r) => [r.id, r]));
}

/**
 * Step messages for steps just moved to `enqueued`, each carrying its ancestors' results
 * (read in the same transaction, so results completed by this batch are included).
 */
export async function stepMessagesFor(
  trx: Transaction<Database>,
  registry: TemplateRegistry,
  n: Names,
  tasks: Map<string, LockedTask>,
  steps: Array<{ id: string; task_id: string; name: string; attempt: number }>,
): Promise<OutgoingMessage[]> {
  if (steps.length === 0) return [];
  const taskIds = [...new Set(steps.map((s) => s.task_id))];
  const { rows } = await sql<{ task_id: string; name: string; result: unknown }>`/* prepared:completed_results */
    SELECT task_id, name, result FROM steps WHERE task_id = ANY(${taskIds}::text[]) AND state = 'complete'`.execute(trx);
  const results = new Map<string, Map<string, unknown>>();
  for (const r of rows) {
    let m = results.get(r.task_id);
    if (!m) results.set(r.task_id, (m = new Map()));
    m.set(r.name, r.result);
  }
  const out: OutgoingMessage[] = [];
  for (const s of steps) {
    const task = tasks.get(s.task_id)!;
    const template = await registry.get(task.template_id);
    out.push(stepOutgoing(n, buildStepMessage(task, template, s, results.get(s.task_id) ?? new Map())));
  }
  return out;
}

/**
 * The step messages of outbox rows that keep only the steps they carry (migration 0016), built
 * again from the tables: for each step still enqueued at the referenced attempt, in a task
 * still in progress, the message as it was built when the step was enqueued (its ancestors'
 * results, the task's context, the template's handler), packed as the orchestrator packs them.
 * A step that moved on (its result came, it was cancelled, or a newer attempt has its own
 * row) needs no message and gets none. Reads without locks: a step that moves on meanwhile
 * gets a message it no longer needs, which its result batch finds stale, as any duplicate.
 */
export async function stepMessagesForRefs(
  trx: Transaction<Database>,
  registry: TemplateRegistry,
  n: Names,
  refs: readonly StepRef[],
  stepsPerMessage: number,
): Promise<OutgoingMessage[]> {
  if (refs.length === 0) return [];
  // A step may be named at several attempts (rows of several batches): each is asked for.
  const wanted = new Set(refs.map(([id, attempt]) => `${id}:${attempt}`));
  // Each step still enqueued, with its task (in progress) in the same row.
  const { rows } = await sql<LockedTask & { step_id: string; step_name: string; attempt: number }>`
    SELECT s.id AS step_id, s.name AS step_name, s.attempt, ${sql.raw(LOCKED_TASK_COLUMNS)}
    FROM steps s JOIN tasks t ON t.id = s.task_id
    WHERE s.id = ANY(${[...new Set(refs.map(([id]) => id))]}::text[]) AND s.state = 'enqueued' AND t.state = 'in_progress'`.execute(trx);
  const tasks = new Map<string, LockedTask>();
  const steps: Array<{ id: string; task_id: string; name: string; attempt: number }> = [];
  for (const { step_id, step_name, attempt, ...task } of rows) {
    if (!wanted.has(`${step_id}:${attempt}`)) continue;
    tasks.set(task.id, task);
    steps.push({ id: step_id, task_id: task.id, name: step_name, attempt });
  }
  if (steps.length === 0) return [];
  return packSteps(n, await stepMessagesFor(trx, registry, n, tasks, steps), stepsPerMessage);
}
