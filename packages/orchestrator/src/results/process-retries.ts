import { sql } from 'kysely';
import { ErrorCode, type RetryDue } from '@tasker/protocol';
import { insertTransitionsAndOutbox, type OutboxRow } from '../outbox/outbox.ts';
import { lockTasks, stepMessagesFor } from '../tasks/dispatch.ts';
import { packSteps } from '../tasks/step-messages.ts';
import type { TransitionRow } from '../tasks/transitions.ts';
import type { ProcessDeps } from './process-results.ts';

/**
 * Expired retry delays: a step still waiting for exactly that retry (and whose task is still
 * live) moves to its next attempt and is dispatched. Anything else (a cancelled task, a
 * duplicate) changes nothing.
 */
export async function processRetries(
  deps: ProcessDeps,
  dues: RetryDue[],
): Promise<{ outbox: OutboxRow[]; applied: number; ignored: Array<{ due: RetryDue; code: string; reason: string }> }> {
  const ignored: Array<{ due: RetryDue; code: string; reason: string }> = [];
  const outcome = await deps.db.transaction().execute(async (trx) => {
    const tasks = await lockTasks(trx, dues.map((d) => d.task_id));
    const live = dues.filter((d) => {
      const t = tasks.get(d.task_id);
      if (!t) ignored.push({ due: d, code: ErrorCode.UNKNOWN_TASK, reason: `no task '${d.task_id}'` });
      else if (t.state !== 'in_progress') ignored.push({ due: d, code: ErrorCode.STALE_RESULT, reason: `task is ${t.state}` });
      else return true;
      return false;
    });
    if (live.length === 0) return { outbox: [] as OutboxRow[], applied: 0 };
    const { rows } = await sql<{ id: string; task_id: string; name: string; attempt: number }>`/* prepared:retry_due */
      UPDATE steps s SET state = 'enqueued', attempt = s.attempt + 1, enqueued_at = now(), next_retry_at = NULL, updated_at = now()
      FROM jsonb_to_recordset(${JSON.stringify(live.map((d) => ({ id: d.step_id, task_id: d.task_id, attempt: d.attempt })))}::jsonb)
        AS x(id text, task_id text, attempt int)
      WHERE s.id = x.id AND s.task_id = x.task_id AND s.state = 'waiting_retry' AND s.attempt = x.attempt
        AND s.attempt < s.max_attempts
      RETURNING s.id, s.task_id, s.name, s.attempt`.execute(trx);
    const moved = new Set(rows.map((r) => r.id));
    for (const d of live) {
      if (!moved.has(d.step_id)) ignored.push({ due: d, code: ErrorCode.STALE_RESULT, reason: 'step is not waiting for this retry' });
    }
    const transitions: TransitionRow[] = rows.map((r) => ({
      task_id: r.task_id,
      step_id: r.id,
      from_state: 'waiting_retry',
      to_state: 'enqueued',
      attempt: r.attempt,
      reason: 'retry delay expired',
    }));
    const messages = packSteps(deps.names, await stepMessagesFor(trx, deps.registry, deps.names, tasks, rows), deps.stepsPerMessage ?? 1);
    return { outbox: await insertTransitionsAndOutbox(trx, transitions, messages), applied: rows.length };
  });
  // Their steps moved to a new attempt: a copy held would only be found stale by the next batch.
  deps.taskCache?.drop(dues.map((d) => d.task_id));
  return { ...outcome, ignored };
}
