import { sql } from 'kysely';
import { answering, ErrorCode, type StepMessage, type StepResult } from '@tasker/protocol';
import type { Delivery } from '@tasker/transport';
import { insertTransitionsAndOutbox, type OutboxRow } from '../outbox/outbox.ts';
import { stepOutgoing } from '../tasks/step-messages.ts';
import type { TransitionRow } from '../tasks/transitions.ts';
import { processResults, type ProcessDeps } from './process-results.ts';

/** A step message the broker dead-lettered after the delivery limit. */
export interface PoisonedStep {
  message: StepMessage;
  delivery: Delivery;
  /** It came in a `steps` message with others: which of them killed the workers is not known. */
  oneOfSeveral: boolean;
}

/**
 * Step messages the broker gave up on after the delivery limit (workers kept dying on them).
 * A step that came alone fails for good with POISON_MESSAGE instead of looping forever. A
 * step of a `steps` message may only have been in bad company: each one still unanswered
 * is dispatched again alone (same attempt), so only the step that kills workers ends in
 * POISON_MESSAGE, after its own delivery limit. Returns the outbox rows to publish and the
 * tasks that ended.
 */
export async function processPoison(
  deps: ProcessDeps,
  items: PoisonedStep[],
  deliveryLimit: number,
): Promise<{ outbox: OutboxRow[]; failed: StepResult[]; alone: StepMessage[]; finished: string[] }> {
  const failed = items.filter((i) => !i.oneOfSeveral).map((i) => poisonResult(i.message, i.delivery, deliveryLimit));
  const { outbox, finished } = failed.length > 0 ? await processResults(deps, failed) : { outbox: [], finished: [] };
  const split = items.filter((i) => i.oneOfSeveral).map((i) => i.message);
  const alone = split.length > 0 ? await dispatchAlone(deps, split, deliveryLimit) : { outbox: [], messages: [] };
  return { outbox: [...outbox, ...alone.outbox], failed, alone: alone.messages, finished };
}

/** Dispatches again, each alone, the steps still waiting for a result of that very attempt. */
async function dispatchAlone(
  deps: ProcessDeps,
  messages: StepMessage[],
  deliveryLimit: number,
): Promise<{ outbox: OutboxRow[]; messages: StepMessage[] }> {
  return deps.db.transaction().execute(async (trx) => {
    const { rows } = await sql<{ id: string }>`
      SELECT s.id FROM steps s
      JOIN jsonb_to_recordset(${JSON.stringify(messages.map((m) => ({ id: m.step_id, task_id: m.task_id, attempt: m.attempt })))}::jsonb)
        AS x(id text, task_id text, attempt int)
        ON s.id = x.id AND s.task_id = x.task_id AND s.attempt = x.attempt
      WHERE s.state = 'enqueued'`.execute(trx);
    const open = new Set(rows.map((r) => r.id));
    const again = messages.filter((m) => open.has(m.step_id));
    if (again.length === 0) return { outbox: [], messages: [] };
    const now = new Date().toISOString();
    const transitions: TransitionRow[] = again.map((m) => ({
      task_id: m.task_id,
      step_id: m.step_id,
      from_state: 'enqueued',
      to_state: 'enqueued',
      attempt: m.attempt,
      reason: `dispatched again alone: the steps message carrying it was delivered ${deliveryLimit} times (delivery limit) without an answer for it`,
    }));
    const outbox = await insertTransitionsAndOutbox(
      trx,
      transitions,
      again.map((m) => stepOutgoing(deps.names, { ...m, dispatched_at: now })),
    );
    return { outbox, messages: again };
  });
}

/** The failure a poisoned step message stands for. */
function poisonResult(m: StepMessage, d: Delivery, limit: number): StepResult {
  const deaths = (d.message.properties.headers?.['x-death'] as Array<{ count?: number }> | undefined) ?? [];
  const count = deaths.reduce((n, x) => n + Number(x.count ?? 0), 0);
  const now = new Date().toISOString();
  return {
    ...answering(m),
    started_at: m.dispatched_at,
    finished_at: now,
    worker_id: 'broker',
    status: 'failure',
    error: {
      kind: 'permanent',
      code: ErrorCode.POISON_MESSAGE,
      message: `the step message was delivered ${limit} times (delivery limit) without a result: workers took it and stopped before answering${count ? ` (dead-lettered ${count}x)` : ''}`,
    },
  };
}
