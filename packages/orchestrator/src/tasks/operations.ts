import { sql, type Transaction } from 'kysely';
import { ErrorCode, PROTOCOL_VERSION, TaskerError, type ControlMessage, type Names } from '@tasker/protocol';
import type { Database, Db } from '../db/database.ts';
import { insertOutbox, type OutboxRow, type OutgoingMessage } from '../outbox/outbox.ts';
import { planBatch, type StepState } from '../results/batch-plan.ts';
import { lockAndReadSteps, writePlan } from '../results/batch-store.ts';
import { childOutcomeMessages, planMessages } from '../results/process-results.ts';
import type { TemplateRegistry } from '../templates/registry.ts';
import { lockTasks, stepMessagesFor, type LockedTask } from './dispatch.ts';
import { recordTransitions, type TransitionRow } from './transitions.ts';

/**
 * Operator actions on tasks and steps. Each is one transaction under the task locks, every
 * transition it makes is recorded with who (`actor`) and why (`reason`), and it returns the
 * outbox rows to publish after commit.
 */
export interface OperationDeps {
  db: Db;
  registry: TemplateRegistry;
  names: Names;
}

export interface Actor {
  name: string;
  reason: string;
}

const invalid = (message: string) => new TaskerError(ErrorCode.INVALID_STATE, message);

/** The task a step belongs to, or UNKNOWN_STEP. */
async function taskOfStep(db: Db | Transaction<Database>, stepId: string): Promise<string> {
  const row = await db.selectFrom('steps').select('task_id').where('id', '=', stepId).executeTakeFirst();
  if (!row) throw new TaskerError(ErrorCode.UNKNOWN_STEP, `no step '${stepId}'`);
  return row.task_id;
}

/**
 * Cancels a task in progress and, recursively, the tasks it created that are still in
 * progress: their pending, enqueued, waiting steps are cancelled; running handlers get their
 * signal aborted through the control broadcast; results that arrive later change nothing.
 */
export async function cancelTask(deps: OperationDeps, taskId: string, actor: Actor): Promise<{ outbox: OutboxRow[]; namespace: string }> {
  return deps.db.transaction().execute(async (trx) => {
    const { rows: family } = await sql<{ id: string }>`
      WITH RECURSIVE fam AS (
        SELECT id FROM tasks WHERE id = ${taskId}
        UNION SELECT t.id FROM tasks t JOIN fam ON t.parent_task_id = fam.id
      ) SELECT id FROM fam`.execute(trx);
    if (family.length === 0) throw new TaskerError(ErrorCode.UNKNOWN_TASK, `no task '${taskId}'`);
    const tasks = await lockTasks(trx, family.map((f) => f.id));
    const root = tasks.get(taskId)!;
    if (root.state !== 'in_progress') throw invalid(`task ${taskId} is ${root.state}; only a task in progress can be cancelled`);
    const live = [...tasks.values()].filter((t) => t.state === 'in_progress');
    const ids = live.map((t) => t.id);
    await sql`UPDATE tasks SET state = 'cancelled', updated_at = now(), completed_at = now(),
                error = ${JSON.stringify({ code: 'CANCELLED', message: actor.reason, by: actor.name })}::jsonb
              WHERE id = ANY(${ids}::text[]) AND state = 'in_progress'`.execute(trx);
    const { rows: steps } = await sql<{ id: string; task_id: string; state: string; attempt: number }>`
      WITH old AS (
        SELECT id, task_id, state, attempt FROM steps
        WHERE task_id = ANY(${ids}::text[]) AND state IN ('pending', 'enqueued', 'waiting_retry', 'waiting_child')
      )
      UPDATE steps s SET state = 'cancelled', updated_at = now(), next_retry_at = NULL
      FROM old WHERE s.id = old.id
      RETURNING old.id, old.task_id, old.state, old.attempt`.execute(trx);
    const transitions: TransitionRow[] = [];
    for (const t of live) {
      const why = t.id === taskId ? actor.reason : `parent task ${t.parent_task_id} was cancelled: ${actor.reason}`;
      transitions.push({ task_id: t.id, step_id: null, from_state: 'in_progress', to_state: 'cancelled', attempt: null, reason: why, actor: actor.name });
      t.state = 'cancelled';
    }
    for (const s of steps) {
      transitions.push({ task_id: s.task_id, step_id: s.id, from_state: s.state, to_state: 'cancelled', attempt: s.attempt || null, reason: 'task cancelled', actor: actor.name });
    }
    await recordTransitions(trx, transitions);
    const control: ControlMessage = { protocol_version: PROTOCOL_VERSION, message_type: 'cancel', task_ids: ids, reason: actor.reason };
    const messages: OutgoingMessage[] = [
      { exchange: deps.names.controlExchange, routingKey: '', body: JSON.stringify(control), properties: { type: 'cancel', persistent: false, contentType: 'application/json' } },
      // A step waiting for the cancelled task (outside this family) fails with CHILD_TASK_CANCELLED.
      ...(await childOutcomeMessages(trx, deps.names, [root])),
    ];
    return { outbox: await insertOutbox(trx, messages), namespace: root.namespace };
  });
}

/**
 * Shared by retry, resolve and complete: lock the step's task and read it with its steps
 * (as a result batch does), check the step's state.
 */
async function withStep<T>(
  deps: OperationDeps,
  stepId: string,
  allowed: string[],
  what: string,
  body: (trx: Transaction<Database>, task: LockedTask, read: { tasks: Map<string, LockedTask>; steps: Map<string, StepState> }, step: StepState) => Promise<T>,
): Promise<T> {
  return deps.db.transaction().execute(async (trx) => {
    const taskId = await taskOfStep(trx, stepId);
    const read = await lockAndReadSteps(trx, [taskId]);
    const task = read.tasks.get(taskId)!;
    const step = read.steps.get(stepId)!;
    if (!allowed.includes(step.state)) {
      throw invalid(`step ${step.name} (${stepId}) is ${step.state}; ${what} needs a step that is ${allowed.join(' or ')}`);
    }
    if (task.state === 'complete' || task.state === 'cancelled') throw invalid(`task ${taskId} is ${task.state}; ${what} needs a live or failed task`);
    return body(trx, task, read, step);
  });
}

/** A failed task resumes when an operator acts on one of its steps. */
async function reopenTask(trx: Transaction<Database>, task: LockedTask, actor: Actor, transitions: TransitionRow[]): Promise<void> {
  if (task.state !== 'error') return;
  await sql`UPDATE tasks SET state = 'in_progress', error = NULL, completed_at = NULL, updated_at = now()
            WHERE id = ${task.id} AND state = 'error'`.execute(trx);
  transitions.push({ task_id: task.id, step_id: null, from_state: 'error', to_state: 'in_progress', attempt: null, reason: actor.reason, actor: actor.name });
  task.state = 'in_progress';
}

/**
 * Retries a failed step: a new attempt with a fresh budget of the step's `max_attempts`;
 * the task resumes from there.
 */
export async function retryStep(deps: OperationDeps, stepId: string, actor: Actor): Promise<{ outbox: OutboxRow[]; taskId: string }> {
  return withStep(deps, stepId, ['error'], 'retry', async (trx, task, { tasks }, step) => {
    const transitions: TransitionRow[] = [];
    await reopenTask(trx, task, actor, transitions);
    const template = await deps.registry.get(task.template_id);
    const budget = template.steps.find((s) => s.name === step.name)?.retry.maxAttempts ?? 1;
    const attempt = step.attempt + 1;
    await sql`UPDATE steps SET state = 'enqueued', attempt = ${attempt}, max_attempts = ${step.attempt + budget},
                error = NULL, enqueued_at = now(), updated_at = now()
              WHERE id = ${stepId} AND state = 'error'`.execute(trx);
    transitions.push({ task_id: task.id, step_id: stepId, from_state: 'error', to_state: 'enqueued', attempt, reason: `retried by an operator: ${actor.reason}`, actor: actor.name });
    await recordTransitions(trx, transitions);
    const messages = await stepMessagesFor(trx, deps.registry, deps.names, tasks, [{ id: stepId, task_id: task.id, name: step.name, attempt }]);
    return { outbox: await insertOutbox(trx, messages), taskId: task.id };
  });
}

/**
 * Completes a step by hand: `resolve` (a failed step, no result: its dependents proceed)
 * or `complete` (any unfinished step, with the result its dependents will read).
 */
export async function completeStepManually(
  deps: OperationDeps,
  stepId: string,
  actor: Actor,
  mode: { kind: 'resolve' } | { kind: 'complete'; result: unknown },
): Promise<{ outbox: OutboxRow[]; taskId: string }> {
  const allowed = mode.kind === 'resolve' ? ['error'] : ['error', 'pending', 'enqueued', 'waiting_retry', 'waiting_child'];
  return withStep(deps, stepId, allowed, mode.kind, async (trx, task, { tasks, steps }, step) => {
    const transitions: TransitionRow[] = [];
    await reopenTask(trx, task, actor, transitions);
    // Readiness of the dependents and the task's end are planned as for a worker's result
    // (batch-plan.ts); the step keeps when it started and the error of its last attempt, if any.
    const { started_at, error } = await trx.selectFrom('steps').select(['started_at', 'error']).where('id', '=', stepId).executeTakeFirstOrThrow();
    const by = `${mode.kind === 'resolve' ? 'resolved' : 'completed with a result'} by an operator: ${actor.reason}`;
    const plan = planBatch(tasks, steps, [
      {
        id: stepId,
        task_id: task.id,
        attempt: step.attempt,
        from_state: step.state,
        state: 'complete',
        waiting_for: null,
        result: mode.kind === 'complete' ? mode.result : null,
        error,
        started_at: started_at ? new Date(started_at).toISOString() : null,
        finished_at: new Date().toISOString(),
        retry_in_ms: null,
        reason: by,
      },
    ]);
    // The step's audit row (written from its row, migration 0018) names the operator.
    plan.steps.find((w) => w.id === stepId)!.actor = actor.name;
    const messages = await planMessages(trx, deps.registry, deps.names, tasks, plan);
    const outbox = await writePlan(trx, { ...plan, audit: transitions }, messages);
    return { outbox, taskId: task.id };
  });
}
