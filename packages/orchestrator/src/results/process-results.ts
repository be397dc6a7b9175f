import { sql, type Kysely } from 'kysely';
import {
  answering,
  ErrorCode,
  Limits,
  PROTOCOL_VERSION,
  delayRoutingKey,
  jsonByteLength,
  jsonValueProblem,
  replaceNul,
  retryDelayMs,
  DELAY_LEVELS,
  type Names,
  type RetryDue,
  type RetryPolicy,
  type StepError,
  type StepResult,
} from '@tasker/protocol';
import type { Logger } from 'pino';
import type { Database, Db } from '../db/database.ts';
import type { OutboxRow, OutgoingMessage } from '../outbox/outbox.ts';
import type { TemplateRegistry } from '../templates/registry.ts';
import type { LockedTask } from '../tasks/dispatch.ts';
import { buildStepMessage, packSteps, stepOutgoing } from '../tasks/step-messages.ts';
import { planBatch, type BatchPlan, type Change, type StepState } from './batch-plan.ts';
import { batchTransaction, writeCheckedPlan } from './batch-store.ts';
import type { TaskCache } from './task-cache.ts';

export interface ProcessDeps {
  db: Db;
  registry: TemplateRegistry;
  names: Names;
  logger: Logger;
  /** Most steps in one message (`TASKER_STEPS_PER_MESSAGE`). @defaultValue 1 */
  stepsPerMessage?: number;
  /** This orchestrator's copy of its live tasks, for one-round-trip batches. @defaultValue none: every batch reads */
  taskCache?: TaskCache | null;
}

/** Why a result changed nothing; logged, never thrown (a duplicate is normal under at-least-once). */
export interface IgnoredResult {
  result: StepResult;
  code: string;
  reason: string;
}

/** What a batch of results did, once committed. */
export interface ResultsOutcome {
  /** Rows to publish now (committed with the batch). */
  outbox: OutboxRow[];
  applied: number;
  ignored: IgnoredResult[];
  /** Ids of the tasks the batch ended (complete or error). */
  finished: string[];
}

/** What deciding a result needs of its step (read under the task lock). */
type StepRow = Pick<StepState, 'id' | 'task_id' | 'name' | 'state' | 'attempt' | 'max_attempts'>;

/**
 * Applies a batch of step results in one transaction: compare-and-set step transitions,
 * readiness of dependents, retries, task completion, the audit, and the outbox rows for
 * every message this implies. Returns the rows to publish after commit.
 *
 * Two round trips (issue 7; see batch-store.ts): BEGIN with the lock-and-read of the tasks
 * and their steps, then, the batch worked out in memory (batch-plan.ts), the write with
 * COMMIT. Only results that wait for a child task, and finished tasks that a parent step
 * waits for, read more in between. One round trip when `deps.taskCache` holds every task of
 * the batch (what this orchestrator's last batch for them left): the plan is made from that
 * copy, and one prepared statement, its own transaction, checks the copy under the lock and
 * writes (writeCheckedPlan); a copy found stale costs that round trip, and the batch goes
 * the two-round-trip way.
 */
export async function processResults(
  deps: ProcessDeps,
  results: StepResult[],
): Promise<ResultsOutcome> {
  const { taskCache: cache } = deps;
  const ids = results.map((r) => r.task_id);
  if (!cache) return (await readAndApply(deps, results, ids)).out;
  cache.enter(ids);
  try {
    return await applyCachedOrRead(deps, cache, results, ids);
  } finally {
    cache.leave(ids);
  }
}

async function applyCachedOrRead(
  deps: ProcessDeps,
  cache: TaskCache,
  results: StepResult[],
  ids: string[],
): Promise<ResultsOutcome> {
  const { db } = deps;
  // One round trip when this orchestrator holds the batch's tasks (TaskCache). A result that
  // waits for a child task reads the child in between, so such a batch reads as below.
  const held = results.some((r) => r.status === 'waiting') ? null : cache.take(ids);
  if (held) {
    // Outside any transaction block: the write is one statement, its own transaction.
    const write = (plan: BatchPlan, messages: OutgoingMessage[]) => writeCheckedPlan(db, held.check, plan, messages);
    const out = await applyResults(deps, db, results, held, true, write).catch((err: unknown) => {
      cache.drop(ids);
      throw err;
    });
    if (out) {
      cache.keep(held.tasks, held.steps.values());
      return out;
    }
    // The tasks changed since (another orchestrator or an operator), or a result did not fit
    // what the cache held: nothing was written; read them under the lock as below.
    cache.stale(ids);
  }

  const { out, read } = await readAndApply(deps, results, ids).catch((err: unknown) => {
    cache.drop(ids);
    throw err;
  });
  if (out.applied > 0) cache.keep(read.tasks, read.steps.values());
  return out;
}

/** The batch's transaction in two round trips: BEGIN with the lock-and-read, then the write with COMMIT. */
async function readAndApply(
  deps: ProcessDeps,
  results: StepResult[],
  ids: string[],
): Promise<{ out: ResultsOutcome; read: { tasks: Map<string, LockedTask>; steps: Map<string, StepState> } }> {
  return batchTransaction(deps.db, async (tx) => {
    const read = await tx.lockAndReadSteps(ids);
    const out = await applyResults(deps, tx.db, results, read, false, (plan, messages) => tx.writePlanAndCommit(plan, messages));
    return { out: out!, read };
  });
}

/**
 * Decides each result against its step, plans the batch and writes it (`write`, which
 * commits). The tasks and steps are as read under the lock, or as the TaskCache held them
 * (`fromCache`): then a result that would change nothing, or a write that finds the tasks
 * changed, answers null, so that the batch is read and decided again from the database
 * rather than from a copy that may be stale. `tasks` and `steps` end as the batch left them.
 */
async function applyResults(
  deps: ProcessDeps,
  trx: Kysely<Database>,
  results: StepResult[],
  { tasks, steps }: { tasks: Map<string, LockedTask>; steps: Map<string, StepState> },
  fromCache: boolean,
  write: (plan: BatchPlan, messages: OutgoingMessage[]) => Promise<OutboxRow[] | null>,
): Promise<ResultsOutcome | null> {
  const { registry, names: n } = deps;
  const ignored: IgnoredResult[] = [];
  const changes: Change[] = [];
  const waits: Array<{ r: Extract<StepResult, { status: 'waiting' }>; step: StepRow }> = [];
  const seen = new Set<string>();
  for (const r of results) {
    const step = steps.get(r.step_id);
    const task = tasks.get(r.task_id);
    const ignore = (code: string, reason: string) => ignored.push({ result: r, code, reason });
    if (!task) { ignore(ErrorCode.UNKNOWN_TASK, `no task '${r.task_id}'`); continue; }
    if (!step || step.task_id !== r.task_id) { ignore(ErrorCode.UNKNOWN_STEP, `task '${r.task_id}' has no step '${r.step_id}'`); continue; }
    if (r.namespace !== task.namespace) {
      ignore(ErrorCode.INVALID_MESSAGE, `result says namespace '${r.namespace}' but the task is in '${task.namespace}'`);
      continue;
    }
    if (seen.has(r.step_id)) { ignore(ErrorCode.STALE_RESULT, 'duplicate result in the same batch'); continue; }
    // A child task's outcome answers a step waiting for it; a worker's result answers a dispatched step.
    const expected = r.child_outcome ? 'waiting_child' : 'enqueued';
    if (step.state !== expected || step.attempt !== r.attempt) {
      ignore(ErrorCode.STALE_RESULT, `step is ${step.state} at attempt ${step.attempt}; result is for attempt ${r.attempt}${r.child_outcome ? ' (child outcome)' : ''}`);
      continue;
    }
    seen.add(r.step_id);
    if (r.status === 'waiting') {
      waits.push({ r, step });
      continue;
    }
    const template = await registry.get(task.template_id);
    const policy = template.steps.find((d) => d.name === step.name)?.retry;
    if (!policy) { ignore(ErrorCode.UNKNOWN_STEP, `step '${step.name}' is not in the task's template`); continue; }
    changes.push(decide(r, step, policy));
  }
  // Only the database says a result changes nothing.
  if (fromCache && (ignored.length > 0 || waits.length > 0)) return null;
  changes.push(...(await decideWaits(trx, waits, (r, code, reason) => ignored.push({ result: r, code, reason }))));

  if (changes.length === 0) return { outbox: [], applied: 0, ignored, finished: [] };

  const plan = planBatch(tasks, steps, changes);
  const messages: OutgoingMessage[] = [];

  // Retries wait in the delay queues, then come back to an orchestrator as RetryDue.
  for (const c of changes.filter((c) => c.state === 'waiting_retry')) {
    const task = tasks.get(c.task_id)!;
    const due: RetryDue = {
      protocol_version: PROTOCOL_VERSION,
      message_type: 'retry_due',
      task_id: c.task_id,
      step_id: c.id,
      attempt: c.attempt,
      delay_ms: c.retry_in_ms ?? 0,
    };
    messages.push({
      exchange: c.retry_in_ms ? n.delayLevel(DELAY_LEVELS - 1) : n.delayDueExchange,
      routingKey: delayRoutingKey(c.retry_in_ms ?? 0, task.namespace),
      body: JSON.stringify(due),
      properties: { type: 'retry_due', persistent: true, contentType: 'application/json' },
    });
  }

  messages.push(...(await planMessages(trx, registry, n, tasks, plan)));
  const outbox = await write(plan, packSteps(n, messages, deps.stepsPerMessage ?? 1));
  return outbox === null ? null : { outbox, applied: changes.length, ignored, finished: plan.finished.map((t) => t.id) };
}

/**
 * The messages a plan implies besides retries: a step message for each step it released
 * (carrying every ancestor's result, the plan's included), and the outcome of each task it
 * finished for the step that waits for it, if any. Shared by result batches and operator
 * actions, which plan the same way (batch-plan.ts).
 */
export async function planMessages(
  trx: Kysely<Database>,
  registry: TemplateRegistry,
  n: Names,
  tasks: Map<string, LockedTask>,
  plan: BatchPlan,
): Promise<OutgoingMessage[]> {
  // The batch's steps by task (looking each task's steps up in the whole batch for every
  // released step made this quadratic in the batch size).
  const stepsOf = plan.stepsByTask;
  const messages: OutgoingMessage[] = [];
  for (const s of plan.released) {
    const task = tasks.get(s.task_id)!;
    const template = await registry.get(task.template_id);
    messages.push(stepOutgoing(n, buildStepMessage(task, template, s, completedResults(stepsOf.get(s.task_id) ?? []))));
  }
  const children = plan.finished.filter((t) => t.parent_step_id);
  if (children.length > 0) {
    const errors = new Map(plan.tasks.map((w) => [w.id, w.error]));
    const outcomes = new Map(children.map((t) => [t.id, outcomeOf({ ...t, error: errors.get(t.id) ?? null }, finalResults(stepsOf.get(t.id) ?? []))]));
    messages.push(...(await childOutcomeMessages(trx, n, children, outcomes)));
  }
  return messages;
}

/** Results of a task's complete steps, by step name. */
function completedResults(steps: StepState[]): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const s of steps) if (s.state === 'complete') out.set(s.name, s.result);
  return out;
}

/** Results of a task's final steps (those nothing depends on), by step name. */
function finalResults(steps: StepState[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of steps) if (s.dependents.length === 0 && s.state === 'complete') out[s.name] = s.result;
  return out;
}

function decide(r: Exclude<StepResult, { status: 'waiting' }>, step: StepRow, policy: RetryPolicy): Change {
  const c = decideOutcome(r, step, policy);
  // A redelivered attempt (its worker died) is the same attempt: it is not counted again,
  // but the audit says how many deliveries it took.
  if (r.delivery_count && r.delivery_count > 1) c.reason += ` (delivery ${r.delivery_count} of attempt ${r.attempt})`;
  return c;
}

function decideOutcome(r: Exclude<StepResult, { status: 'waiting' }>, step: StepRow, policy: RetryPolicy): Change {
  if (r.status === 'success') {
    const size = jsonByteLength(r.result);
    const bad = jsonValueProblem(r.result);
    const problem =
      size > Limits.maxResultBytes
        ? { code: ErrorCode.PAYLOAD_TOO_LARGE, message: `result is ${size} bytes; the limit is ${Limits.maxResultBytes} bytes` }
        : bad
          ? { code: ErrorCode.INVALID_MESSAGE, message: `result ${bad.path} ${bad.message}` }
          : null;
    if (!problem) return change(r, step, 'complete', r.result ?? null, null, null, 'result: success');
    const error = { kind: 'permanent', ...problem, attempt: r.attempt };
    return change(r, step, 'error', null, error, null, `result refused: ${problem.code}`);
  }
  // Error texts are kept whatever they hold: a NUL (which PostgreSQL cannot store) becomes U+FFFD.
  const e: StepError = replaceNul(r.error);
  const error = { kind: e.kind, code: e.code, message: e.message, attempt: r.attempt, ...(e.details !== undefined ? { details: e.details } : {}) };
  if (e.kind === 'permanent' || r.child_outcome) {
    return change(r, step, 'error', null, error, null, `permanent error ${e.code}: ${e.message}`);
  }
  if (r.attempt >= step.max_attempts) {
    const reason = `retryable error ${e.code} on the last attempt (${r.attempt} of ${step.max_attempts}): ${e.message}`;
    return change(r, step, 'error', null, { ...error, retries_exhausted: true }, null, reason);
  }
  // Each step's own policy decides the delay; a handler's retry-after is capped by it.
  const delay = retryDelayMs(policy, r.attempt, e.retry_after_ms ?? null);
  const reason = `retryable error ${e.code} (attempt ${r.attempt} of ${step.max_attempts}); retry in ${delay} ms: ${e.message}`;
  return change(r, step, 'waiting_retry', null, error, delay, reason);
}

/**
 * What a result does to its step, as one object literal: a spread followed by more
 * properties (`{ ...base, state }`) cost V8 2-5 µs an object on the bench's machines (issue 7).
 */
function change(
  r: Exclude<StepResult, { status: 'waiting' }>,
  step: StepRow,
  state: Change['state'],
  result: unknown,
  error: unknown,
  retry_in_ms: number | null,
  reason: string,
): Change {
  return {
    id: step.id,
    task_id: step.task_id,
    attempt: r.attempt,
    from_state: r.child_outcome ? 'waiting_child' : 'enqueued',
    state,
    waiting_for: null,
    result,
    error,
    started_at: r.started_at,
    finished_at: r.finished_at,
    retry_in_ms,
    reason,
  };
}

/**
 * A handler asked its step to wait for a task it created. If that task has finished
 * already, the step takes its outcome now; otherwise it waits (`waiting_child`) and the
 * child's outcome arrives as a result when the child finishes (see childOutcomeMessages).
 */
async function decideWaits(
  trx: Kysely<Database>,
  waits: Array<{ r: Extract<StepResult, { status: 'waiting' }>; step: StepRow }>,
  ignore: (r: StepResult, code: string, reason: string) => void,
): Promise<Change[]> {
  if (waits.length === 0) return [];
  const outcomes = await childOutcomes(trx, waits.map((w) => w.r.wait_for.task_id));
  const changes: Change[] = [];
  for (const { r, step } of waits) {
    const child = outcomes.get(r.wait_for.task_id);
    const base = { id: step.id, task_id: step.task_id, attempt: r.attempt, from_state: 'enqueued' as const, started_at: r.started_at, finished_at: r.finished_at, retry_in_ms: null };
    if (!child) {
      ignore(r, ErrorCode.UNKNOWN_TASK, `step asked to wait for task '${r.wait_for.task_id}', which does not exist`);
      changes.push({ ...base, state: 'error', waiting_for: null, result: null, error: { kind: 'permanent', code: ErrorCode.UNKNOWN_TASK, message: `the task to wait for ('${r.wait_for.task_id}') does not exist`, attempt: r.attempt }, reason: `wait refused: no task '${r.wait_for.task_id}'` });
      continue;
    }
    if (child.state === 'in_progress') {
      changes.push({ ...base, state: 'waiting_child', waiting_for: child.id, result: null, error: null, reason: `waiting for task ${child.id} (${child.namespace}.${child.name})` });
    } else if (child.state === 'complete') {
      changes.push({ ...base, state: 'complete', waiting_for: child.id, result: child.result, error: null, reason: `task ${child.id} it waited for was already complete` });
    } else {
      changes.push({ ...base, state: 'error', waiting_for: child.id, result: null, error: child.error, reason: `task ${child.id} it waited for had already ended in ${child.state}` });
    }
  }
  return changes;
}

interface ChildOutcome {
  id: string;
  namespace: string;
  name: string;
  state: string;
  /** For a complete task: its id and name, and the results of its final steps (those nothing depends on) by step name. */
  result: unknown;
  /** For a failed or cancelled task: the error the waiting step takes. */
  error: unknown;
}

/** What a finished task hands to a step that waits for it. */
async function childOutcomes(trx: Kysely<Database>, ids: string[]): Promise<Map<string, ChildOutcome>> {
  if (ids.length === 0) return new Map();
  const { rows } = await sql<{ id: string; namespace: string; name: string; state: string; error: unknown; finals: Record<string, unknown> | null }>`
    SELECT t.id, t.namespace, t.name, t.state, t.error,
           (SELECT jsonb_object_agg(s.name, s.result) FROM steps s WHERE s.task_id = t.id AND s.dependents = '{}') AS finals
    FROM tasks t WHERE t.id = ANY(${ids}::text[])`.execute(trx);
  return new Map(rows.map((t) => [t.id, outcomeOf(t, t.finals ?? {})]));
}

/** A finished task's outcome, from its row and the results of its final steps. */
function outcomeOf(
  t: { id: string; namespace: string; name: string; state: string; error: unknown },
  finals: Record<string, unknown>,
): ChildOutcome {
  return {
    id: t.id,
    namespace: t.namespace,
    name: t.name,
    state: t.state,
    result: { task_id: t.id, namespace: t.namespace, name: t.name, results: finals },
    error: {
      kind: 'permanent',
      code: t.state === 'cancelled' ? 'CHILD_TASK_CANCELLED' : 'CHILD_TASK_FAILED',
      message: `task ${t.id} (${t.namespace}.${t.name}) ended in ${t.state}`,
      details: (t.error ?? null) as never,
    },
  };
}

/**
 * When tasks created by a step finish, their outcome goes to that step as a result
 * (`child_outcome`), through the results queue like any result: the step applies it only
 * if it is waiting for that task (compare-and-set), so a child nobody waits for changes
 * nothing. Sent for every finished child, since the parent's "waiting" result may still be
 * in flight; whichever comes second finds the other's effect.
 */
export async function childOutcomeMessages(
  trx: Kysely<Database>,
  n: Names,
  finished: LockedTask[],
  /** Their outcomes when the caller has them (else read from the database). */
  known?: Map<string, ChildOutcome>,
): Promise<OutgoingMessage[]> {
  const children = finished.filter((t) => t.parent_step_id);
  if (children.length === 0) return [];
  const { rows: parents } = await sql<{ step_id: string; task_id: string; step_name: string; attempt: number; namespace: string }>`
    SELECT s.id AS step_id, s.task_id, s.name AS step_name, s.attempt, t.namespace FROM steps s JOIN tasks t ON t.id = s.task_id
    WHERE s.id = ANY(${children.map((c) => c.parent_step_id!)}::text[])`.execute(trx);
  const byId = new Map(parents.map((p) => [p.step_id, p]));
  const outcomes = known ?? (await childOutcomes(trx, children.map((c) => c.id)));
  const now = new Date().toISOString();
  const out: OutgoingMessage[] = [];
  for (const c of children) {
    const p = byId.get(c.parent_step_id!);
    const o = outcomes.get(c.id);
    if (!p || !o || p.task_id !== c.parent_task_id) continue;
    const base = {
      ...answering(p),
      started_at: now,
      finished_at: now,
      worker_id: `tasker:child:${c.id}`,
      child_outcome: true,
    };
    const result: StepResult =
      o.state === 'complete'
        ? { ...base, status: 'success', result: o.result as never }
        : { ...base, status: 'failure', error: o.error as StepError };
    out.push({
      exchange: n.resultsExchange,
      routingKey: p.namespace,
      body: JSON.stringify(result),
      properties: { type: 'step_result', persistent: true, contentType: 'application/json', messageId: `${p.step_id}:${p.attempt}:child` },
    });
  }
  return out;
}
