/**
 * What a chaos run proves, read from the orchestrators' audit (tasks, steps, transitions)
 * and from the handlers' own records (chaos_executions), after every task is terminal or
 * the time bound passed.
 *
 * Invariants (any failure makes the run fail):
 * - every task created reached `complete`; none is lost (still in progress, or answered by
 *   the API but absent from the database);
 * - every step has exactly one transition into `complete` (duplicate completions: 0), and
 *   every task exactly one;
 * - no attempt beyond max_attempts: not in steps, not in transitions, not in the handlers'
 *   records;
 * - no step dispatched and then forgotten (left enqueued, waiting_retry, pending or any other
 *   non-final state);
 * - every completed attempt was executed by a handler that recorded a success for exactly
 *   that step and attempt (a completion never comes from nowhere);
 * - no step was enqueued before all its dependencies had completed;
 * - each step's transitions form one chain (each one starts from the state the previous one
 *   ended in) that ends in the step's current state: nobody changed a step behind the
 *   audit's back, and no two actors moved it from the same state.
 * Counted, not failed: duplicate handler executions (the same step and attempt run twice,
 * which at-least-once delivery allows), retries, timeouts, re-dispatches.
 */
import type pg from 'pg';

export interface CheckContext {
  db: pg.Client;
  /** The orchestrators' schema. */
  schema: string;
  /** The handlers' schema (chaos_executions). */
  executionsSchema: string;
  /** Task ids the API returned when the tasks were created. */
  createdTaskIds: string[];
  /** Tasks the load asked for. */
  requested: number;
}

export interface Violation {
  invariant: string;
  task_id: string | null;
  step_id: string | null;
  detail: string;
}

export interface Figures {
  tasks: number;
  completed: number;
  lost: number;
  tasks_in_error: number;
  duplicate_completions: number;
  duplicate_handler_executions: number;
  /** (step, attempt) pairs executed more than once. */
  duplicate_execution_pairs: number;
  attempts_over_max: number;
  forgotten_steps: number;
  completions_without_execution: number;
  dependency_order_violations: number;
  audit_chain_breaks: number;
  steps: number;
  handler_executions: number;
  executions_by_fate: Record<string, number>;
  retries: number;
  timeouts: number;
  record_failures: number;
  redispatches: number;
  highest_attempt: number;
  outbox_left: number;
}

export interface CheckResult {
  figures: Figures;
  violations: Violation[];
  /** Step completion times (epoch ms, ascending), for the recovery figures. */
  completionTimes: number[];
}

export async function runChecks(c: CheckContext): Promise<CheckResult> {
  const S = `"${c.schema}"`;
  const E = `"${c.executionsSchema}"`;
  const q = async <R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> =>
    (await c.db.query<R>(text, values)).rows;
  const violations: Violation[] = [];
  const add = (invariant: string, rows: Array<{ task_id: string | null; step_id: string | null; detail: string }>) => {
    for (const r of rows) violations.push({ invariant, ...r });
  };

  // Tasks -------------------------------------------------------------------------------
  const taskStates = await q<{ state: string; n: number }>(`SELECT state, count(*)::int AS n FROM ${S}.tasks GROUP BY state`);
  const byState = Object.fromEntries(taskStates.map((r) => [r.state, r.n]));
  const tasks = taskStates.reduce((n, r) => n + r.n, 0);
  const notComplete = await q<{ id: string; state: string; error: unknown }>(
    `SELECT id, state, error FROM ${S}.tasks WHERE state <> 'complete' ORDER BY created_at`,
  );
  add(
    'every task reached complete',
    notComplete.map((t) => ({ task_id: t.id, step_id: null, detail: `task is ${t.state}${t.error ? `: ${JSON.stringify(t.error)}` : ''}` })),
  );
  const missing = await q<{ id: string }>(
    `SELECT x.id FROM unnest($1::text[]) AS x(id) WHERE NOT EXISTS (SELECT 1 FROM ${S}.tasks t WHERE t.id = x.id)`,
    [c.createdTaskIds],
  );
  add(
    'every task created is in the database',
    missing.map((m) => ({ task_id: m.id, step_id: null, detail: 'the API returned this task id, but the database has no such task' })),
  );
  if (c.createdTaskIds.length < c.requested) {
    add('every task requested was created', [
      { task_id: null, step_id: null, detail: `${c.requested - c.createdTaskIds.length} of ${c.requested} task creations never succeeded` },
    ]);
  }
  const lost = (byState['in_progress'] ?? 0) + missing.length;

  // Exactly one completion -----------------------------------------------------------------
  const completions = await q<{ id: string; task_id: string; state: string; n: number }>(
    `WITH c AS (SELECT step_id, count(*)::int AS n FROM ${S}.transitions
                WHERE step_id IS NOT NULL AND to_state = 'complete' GROUP BY step_id)
     SELECT s.id, s.task_id, s.state, COALESCE(c.n, 0) AS n
     FROM ${S}.steps s LEFT JOIN c ON c.step_id = s.id WHERE COALESCE(c.n, 0) <> 1`,
  );
  add(
    'every step has exactly one transition into complete',
    completions.map((s) => ({ task_id: s.task_id, step_id: s.id, detail: `${s.n} transitions into complete (step is ${s.state})` })),
  );
  const taskCompletions = await q<{ task_id: string; n: number }>(
    `SELECT task_id, count(*)::int AS n FROM ${S}.transitions
     WHERE step_id IS NULL AND to_state = 'complete' GROUP BY task_id HAVING count(*) > 1`,
  );
  add(
    'every task has at most one transition into complete',
    taskCompletions.map((t) => ({ task_id: t.task_id, step_id: null, detail: `${t.n} transitions into complete` })),
  );
  const duplicateCompletions =
    completions.filter((s) => s.n > 1).reduce((n, s) => n + s.n - 1, 0) + taskCompletions.reduce((n, t) => n + t.n - 1, 0);

  // Attempts within max_attempts -------------------------------------------------------------
  const overMax = await q<{ step_id: string; task_id: string; attempt: number; max_attempts: number; source: string }>(
    `SELECT id AS step_id, task_id, attempt, max_attempts, 'steps' AS source FROM ${S}.steps WHERE attempt > max_attempts
     UNION ALL
     SELECT t.step_id, t.task_id, t.attempt, s.max_attempts, 'transitions' FROM ${S}.transitions t
       JOIN ${S}.steps s ON s.id = t.step_id WHERE t.attempt > s.max_attempts
     UNION ALL
     SELECT e.step_id, e.task_id, e.attempt, s.max_attempts, 'chaos_executions' FROM ${E}.chaos_executions e
       JOIN ${S}.steps s ON s.id = e.step_id WHERE e.attempt > s.max_attempts OR e.attempt > e.max_attempts`,
  );
  add(
    'attempts never exceed max_attempts',
    overMax.map((r) => ({ task_id: r.task_id, step_id: r.step_id, detail: `attempt ${r.attempt} > max_attempts ${r.max_attempts} (${r.source})` })),
  );
  const attemptsOverMax = new Set(overMax.map((r) => `${r.step_id}:${r.attempt}`)).size;

  // Nothing forgotten ----------------------------------------------------------------------------
  const forgotten = await q<{ id: string; task_id: string; state: string; attempt: number; since: Date }>(
    `SELECT s.id, s.task_id, s.state, s.attempt, s.updated_at AS since FROM ${S}.steps s JOIN ${S}.tasks t ON t.id = s.task_id
     WHERE (s.state NOT IN ('pending', 'complete', 'error', 'cancelled'))
        OR (s.state = 'pending' AND t.state NOT IN ('error', 'cancelled'))`,
  );
  add(
    'no step dispatched and then forgotten',
    forgotten.map((s) => ({
      task_id: s.task_id,
      step_id: s.id,
      detail: `left ${s.state} at attempt ${s.attempt} since ${new Date(s.since).toISOString()}`,
    })),
  );

  // Completions come from a recorded handler success -------------------------------------------
  const unexplained = await q<{ id: string; task_id: string; attempt: number }>(
    `SELECT s.id, s.task_id, s.attempt FROM ${S}.steps s
     WHERE s.state = 'complete' AND NOT EXISTS (
       SELECT 1 FROM ${E}.chaos_executions e WHERE e.step_id = s.id AND e.attempt = s.attempt AND e.fate = 'success')`,
  );
  add(
    'every completion was executed and recorded by a handler',
    unexplained.map((s) => ({
      task_id: s.task_id,
      step_id: s.id,
      detail: `complete at attempt ${s.attempt}, but no handler recorded a success for that attempt`,
    })),
  );

  // Dependencies first --------------------------------------------------------------------------
  const order = await q<{ task_id: string; step_id: string; dependency: string; enqueued_at: Date; dep_completed_at: Date | null }>(
    `WITH en AS (SELECT step_id, min(at) AS at FROM ${S}.transitions
                 WHERE step_id IS NOT NULL AND to_state = 'enqueued' GROUP BY step_id),
          co AS (SELECT step_id, min(at) AS at FROM ${S}.transitions
                 WHERE step_id IS NOT NULL AND to_state = 'complete' GROUP BY step_id)
     SELECT p.task_id, d.child AS step_id, p.id AS dependency, en.at AS enqueued_at, co.at AS dep_completed_at
     FROM ${S}.steps p CROSS JOIN LATERAL unnest(p.dependents) AS d(child)
     JOIN en ON en.step_id = d.child LEFT JOIN co ON co.step_id = p.id
     WHERE co.at IS NULL OR co.at > en.at`,
  );
  add(
    'no step is enqueued before its dependencies completed',
    order.map((o) => ({
      task_id: o.task_id,
      step_id: o.step_id,
      detail: `enqueued at ${new Date(o.enqueued_at).toISOString()}, dependency ${o.dependency} completed ${
        o.dep_completed_at ? `at ${new Date(o.dep_completed_at).toISOString()}` : 'never'
      }`,
    })),
  );

  // The audit is one chain per step, ending in the step's state ----------------------------------
  const chain = await q<{ task_id: string; step_id: string; id: string; from_state: string | null; to_state: string; prev_to: string | null; attempt: number | null }>(
    `SELECT task_id, step_id, id, from_state, to_state, attempt, prev_to FROM (
       SELECT task_id, step_id, id, from_state, to_state, attempt,
              lag(to_state) OVER (PARTITION BY step_id ORDER BY id) AS prev_to,
              row_number() OVER (PARTITION BY step_id ORDER BY id) AS k
       FROM ${S}.transitions WHERE step_id IS NOT NULL) x
     WHERE (k = 1 AND from_state IS NOT NULL) OR (k > 1 AND from_state IS DISTINCT FROM prev_to)`,
  );
  add(
    'each step\'s transitions form one chain',
    chain.map((r) => ({
      task_id: r.task_id,
      step_id: r.step_id,
      detail: `transition ${r.id} goes ${r.from_state ?? '∅'} → ${r.to_state} (attempt ${r.attempt}) but the previous one ended in ${r.prev_to ?? '∅'}`,
    })),
  );
  const lastState = await q<{ task_id: string; step_id: string; state: string; attempt: number; last_to: string | null; last_attempt: number | null }>(
    `SELECT s.task_id, s.id AS step_id, s.state, s.attempt, l.to_state AS last_to, l.attempt AS last_attempt
     FROM ${S}.steps s LEFT JOIN LATERAL (
       SELECT to_state, attempt FROM ${S}.transitions t WHERE t.step_id = s.id ORDER BY id DESC LIMIT 1) l ON true
     WHERE l.to_state IS DISTINCT FROM s.state OR (s.attempt > 0 AND l.attempt IS DISTINCT FROM s.attempt)`,
  );
  add(
    'each step\'s transitions form one chain',
    lastState.map((r) => ({
      task_id: r.task_id,
      step_id: r.step_id,
      detail: `step is ${r.state} at attempt ${r.attempt} but its last transition is to ${r.last_to ?? '(none)'} at attempt ${r.last_attempt}`,
    })),
  );

  // Counted figures ------------------------------------------------------------------------------
  const dupes = await q<{ pairs: number; extra: number }>(
    `SELECT count(*)::int AS pairs, COALESCE(sum(n - 1), 0)::int AS extra FROM (
       SELECT step_id, attempt, count(*) AS n FROM ${E}.chaos_executions GROUP BY step_id, attempt HAVING count(*) > 1) d`,
  );
  const fates = await q<{ fate: string; n: number }>(`SELECT fate, count(*)::int AS n FROM ${E}.chaos_executions GROUP BY fate`);
  const stats = await q<{ steps: number; highest: number }>(`SELECT count(*)::int AS steps, COALESCE(max(attempt), 0)::int AS highest FROM ${S}.steps`);
  const trans = await q<{ retries: number; timeouts: number; record_failures: number; redispatches: number }>(
    `SELECT count(*) FILTER (WHERE to_state = 'waiting_retry' AND from_state = 'enqueued')::int AS retries,
            count(*) FILTER (WHERE to_state = 'waiting_retry' AND reason LIKE '%HANDLER_TIMEOUT%')::int AS timeouts,
            count(*) FILTER (WHERE to_state = 'waiting_retry' AND reason LIKE '%CHAOS_RECORD_FAILED%')::int AS record_failures,
            count(*) FILTER (WHERE from_state = 'enqueued' AND to_state = 'enqueued')::int AS redispatches
     FROM ${S}.transitions WHERE step_id IS NOT NULL`,
  );
  const outbox = await q<{ n: number }>(`SELECT count(*)::int AS n FROM ${S}.outbox`);
  const times = await q<{ ms: string }>(
    `SELECT (extract(epoch FROM at) * 1000)::bigint::text AS ms FROM ${S}.transitions
     WHERE step_id IS NOT NULL AND to_state = 'complete' ORDER BY at`,
  );

  const count = (invariant: string) => new Set(violations.filter((v) => v.invariant === invariant).map((v) => v.step_id ?? v.task_id)).size;
  const figures: Figures = {
    tasks,
    completed: byState['complete'] ?? 0,
    lost,
    tasks_in_error: byState['error'] ?? 0,
    duplicate_completions: duplicateCompletions,
    duplicate_handler_executions: dupes[0]?.extra ?? 0,
    duplicate_execution_pairs: dupes[0]?.pairs ?? 0,
    attempts_over_max: attemptsOverMax,
    forgotten_steps: forgotten.length,
    completions_without_execution: unexplained.length,
    dependency_order_violations: order.length,
    audit_chain_breaks: count("each step's transitions form one chain"),
    steps: stats[0]?.steps ?? 0,
    handler_executions: fates.reduce((n, f) => n + f.n, 0),
    executions_by_fate: Object.fromEntries(fates.map((f) => [f.fate, f.n])),
    retries: trans[0]?.retries ?? 0,
    timeouts: trans[0]?.timeouts ?? 0,
    record_failures: trans[0]?.record_failures ?? 0,
    redispatches: trans[0]?.redispatches ?? 0,
    highest_attempt: stats[0]?.highest ?? 0,
    outbox_left: outbox[0]?.n ?? 0,
  };
  return { figures, violations, completionTimes: times.map((t) => Number(t.ms)) };
}

/** The rows behind one violation, for the report: the task, its steps, its transitions, the step's executions. */
export async function evidenceFor(
  c: CheckContext,
  v: Violation,
): Promise<{ task: unknown; steps: unknown[]; transitions: unknown[]; executions: unknown[] }> {
  const S = `"${c.schema}"`;
  const E = `"${c.executionsSchema}"`;
  let taskId = v.task_id;
  if (!taskId && v.step_id) {
    taskId = (await c.db.query<{ task_id: string }>(`SELECT task_id FROM ${S}.steps WHERE id = $1`, [v.step_id])).rows[0]?.task_id ?? null;
  }
  if (!taskId) return { task: null, steps: [], transitions: [], executions: [] };
  const task = (await c.db.query(`SELECT id, name, state, error, created_at, completed_at FROM ${S}.tasks WHERE id = $1`, [taskId])).rows[0] ?? null;
  const steps = (
    await c.db.query(
      `SELECT id, name, state, attempt, max_attempts, deps_pending, enqueued_at, finished_at, next_retry_at, error
       FROM ${S}.steps WHERE task_id = $1 ORDER BY position`,
      [taskId],
    )
  ).rows;
  const transitions = (
    await c.db.query(
      `SELECT id, step_id, from_state, to_state, attempt, reason, at FROM ${S}.transitions
       WHERE task_id = $1 ${v.step_id ? 'AND (step_id = $2 OR step_id IS NULL)' : ''} ORDER BY id`,
      v.step_id ? [taskId, v.step_id] : [taskId],
    )
  ).rows;
  const executions = (
    await c.db.query(
      `SELECT step_id, step_name, attempt, pid, worker, fate, started_at, recorded_at FROM ${E}.chaos_executions
       WHERE task_id = $1 ${v.step_id ? 'AND step_id = $2' : ''} ORDER BY recorded_at`,
      v.step_id ? [taskId, v.step_id] : [taskId],
    )
  ).rows;
  return { task, steps, transitions, executions };
}
