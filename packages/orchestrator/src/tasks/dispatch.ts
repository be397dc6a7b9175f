import { sql, type Transaction } from 'kysely';
import type { Names } from '@tasker/protocol';
import type { Database } from '../db/database.ts';
import type { OutgoingMessage } from '../outbox/outbox.ts';
import type { TemplateRegistry } from '../templates/registry.ts';
import { buildStepMessage } from './step-messages.ts';
import { stepOutgoing } from './step-messages.ts';

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

/**
 * Locks the tasks of a batch, in id order so two orchestrators never deadlock. Holding the
 * task lock serializes every change to that task's steps, which is what makes counting
 * "all steps complete" correct when several orchestrators process the same task's results.
 */
export async function lockTasks(trx: Transaction<Database>, taskIds: string[]): Promise<Map<string, LockedTask>> {
  if (taskIds.length === 0) return new Map();
  const { rows } = await sql<LockedTask>`/* prepared:lock_tasks */
    SELECT id, state, namespace, name, version, template_id, correlation_id, context, parent_task_id, parent_step_id
    FROM tasks WHERE id = ANY(${[...new Set(taskIds)].sort()}::text[]) ORDER BY id FOR UPDATE`.execute(trx);
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
