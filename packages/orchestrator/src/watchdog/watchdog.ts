import { sql } from 'kysely';
import { DELAY_LEVELS, PROTOCOL_VERSION, type Names, type RetryDue } from '@tasker/protocol';
import type { Broker } from '@tasker/transport';
import type { Logger } from 'pino';
import { INDEX_PATHS_ONLY, type Db } from '../db/database.ts';
import { insertOutbox, type OutboxRelay, type OutgoingMessage } from '../outbox/outbox.ts';
import type { TemplateRegistry } from '../templates/registry.ts';
import { lockTasks, stepMessagesFor } from '../tasks/dispatch.ts';
import { recordTransitions, type TransitionRow } from '../tasks/transitions.ts';

/** Something that waits and will not move by itself, with why. */
export interface StuckItem {
  task_id: string;
  step_id: string | null;
  step: string | null;
  namespace: string;
  state: string;
  since: string;
  why: string;
}

interface Overdue {
  id: string;
  task_id: string;
  name: string;
  attempt: number;
  state: string;
  namespace: string;
  since: Date;
}

/**
 * Nothing waits forever unseen. Periodically (one orchestrator at a time, by advisory
 * lock) it finds:
 * - steps `enqueued` for longer than the redispatch window plus their timeout: if their
 *   namespace's queue holds no ready message, the message is not waiting there (lost, or
 *   held by a worker that hangs past its timeout), so the step is dispatched again (same
 *   attempt: duplicates are harmless, results are compare-and-set). If the queue does hold
 *   messages and nobody consumes it, that is reported instead: the steps are waiting for a
 *   worker, not lost.
 * - steps `waiting_retry` whose retry is overdue by the window: the delay message was lost;
 *   a new retry-due message is sent.
 */
export class Watchdog {
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private lastReport = new Map<string, number>();
  /** What the last pass found waiting without progress. */
  lastReported: StuckItem[] = [];

  constructor(
    private readonly deps: { db: Db; broker: Broker; registry: TemplateRegistry; names: Names; logger: Logger; relay: OutboxRelay },
    private readonly options: { intervalMs: number; redispatchAfterMs: number },
  ) {}

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      this.run()
        .catch((err: Error) => this.deps.logger.warn({ err: err.message }, 'watchdog pass failed'))
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(tick, this.options.intervalMs);
        });
    };
    this.timer = setTimeout(tick, this.options.intervalMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /** One pass; returns what it re-sent and what it reported. */
  async run(): Promise<{ redispatched: number; retriesResent: number; reported: StuckItem[] }> {
    const { db, names: n, logger } = this.deps;
    const windowSecs = this.options.redispatchAfterMs / 1000;
    const reported: StuckItem[] = [];
    const outcome = await db.transaction().execute(async (trx) => {
      const { rows: lock } = await sql<{ ok: boolean }>`SELECT pg_try_advisory_xact_lock(hashtext('tasker.watchdog')) AS ok`.execute(trx);
      if (!lock[0]!.ok) return { redispatched: 0, retriesResent: 0, outbox: [] };
      // Driven by the live tasks created before the window (tasks_live_idx): a step enqueued
      // before it belongs to a task created before it, and a step waits for a retry only after
      // it was dispatched, so its enqueued_at is set and before its next_retry_at. In a steady
      // state of short tasks that is few tasks, each read with its steps by task_id. Steps
      // have no index of their own for this (migration 0015: their moves stay heap-only),
      // and the join is kept to those index paths: statistics taken while the tables were small
      // once led the planner to join every live task to a whole index (bench, 2,600 live
      // tasks: 2.2 s and 69,000 buffers a pass, every 10 s).
      await sql.raw(INDEX_PATHS_ONLY).execute(trx);
      const { rows: overdue } = await sql<Overdue>`
        WITH old AS MATERIALIZED (
          SELECT t.id, t.namespace FROM tasks t
          WHERE t.state = 'in_progress' AND t.created_at < now() - make_interval(secs => ${windowSecs})
        )
        SELECT s.id, s.task_id, s.name, s.attempt, s.state, o.namespace,
               COALESCE(CASE WHEN s.state = 'enqueued' THEN s.enqueued_at ELSE s.next_retry_at END, s.updated_at) AS since
        FROM old o JOIN steps s ON s.task_id = o.id
        WHERE s.state IN ('enqueued', 'waiting_retry') AND s.enqueued_at < now() - make_interval(secs => ${windowSecs})
          AND (s.state = 'enqueued' OR s.next_retry_at < now() - make_interval(secs => ${windowSecs}))
        ORDER BY since LIMIT 1000`.execute(trx);
      if (overdue.length === 0) return { redispatched: 0, retriesResent: 0, outbox: [] };

      const tasks = await lockTasks(trx, overdue.map((o) => o.task_id));
      const queueState = new Map<string, { ready: number; consumers: number } | null>();
      for (const ns of new Set(overdue.map((o) => o.namespace))) {
        queueState.set(ns, await this.queueState(n.stepQueue(ns)));
      }
      const redispatch: Overdue[] = [];
      const resendRetry: Overdue[] = [];
      for (const o of overdue) {
        const template = await this.deps.registry.get(tasks.get(o.task_id)!.template_id);
        const timeoutMs = template.steps.find((s) => s.name === o.name)?.timeoutMs ?? 0;
        const age = Date.now() - new Date(o.since).getTime();
        if (o.state === 'waiting_retry') {
          resendRetry.push(o);
          continue;
        }
        if (age < this.options.redispatchAfterMs + timeoutMs) continue;
        const q = queueState.get(o.namespace);
        if (q && q.ready > 0) {
          reported.push({
            task_id: o.task_id,
            step_id: o.id,
            step: o.name,
            namespace: o.namespace,
            state: o.state,
            since: new Date(o.since).toISOString(),
            why:
              q.consumers === 0
                ? `no worker consumes ${n.stepQueue(o.namespace)} (${q.ready} steps waiting there)`
                : `waiting behind ${q.ready} ready messages in ${n.stepQueue(o.namespace)} (${q.consumers} consumers)`,
          });
          continue;
        }
        redispatch.push(o);
      }
      const transitions: TransitionRow[] = [];
      const messages: OutgoingMessage[] = [];
      if (redispatch.length > 0) {
        const { rows } = await sql<{ id: string; task_id: string; name: string; attempt: number }>`
          UPDATE steps SET enqueued_at = now(), updated_at = now()
          WHERE id = ANY(${redispatch.map((r) => r.id)}::text[]) AND state = 'enqueued'
          RETURNING id, task_id, name, attempt`.execute(trx);
        for (const r of rows) {
          transitions.push({
            task_id: r.task_id,
            step_id: r.id,
            from_state: 'enqueued',
            to_state: 'enqueued',
            attempt: r.attempt,
            reason: `dispatched again: no result within ${this.options.redispatchAfterMs} ms and no message waiting in its queue`,
          });
        }
        messages.push(...(await stepMessagesFor(trx, this.deps.registry, n, tasks, rows)));
      }
      for (const r of resendRetry) {
        const due: RetryDue = { protocol_version: PROTOCOL_VERSION, message_type: 'retry_due', task_id: r.task_id, step_id: r.id, attempt: r.attempt, delay_ms: 0 };
        messages.push({
          exchange: n.delayDueExchange,
          routingKey: `${'0.'.repeat(DELAY_LEVELS)}${r.namespace}`,
          body: JSON.stringify(due),
          properties: { type: 'retry_due', persistent: true, contentType: 'application/json' },
        });
        transitions.push({ task_id: r.task_id, step_id: r.id, from_state: 'waiting_retry', to_state: 'waiting_retry', attempt: r.attempt, reason: 'retry overdue: retry-due message sent again' });
      }
      await recordTransitions(trx, transitions);
      return { redispatched: redispatch.length, retriesResent: resendRetry.length, outbox: await insertOutbox(trx, messages) };
    });
    this.lastReported = reported;
    await this.deps.relay.publish(outcome.outbox);
    if (outcome.redispatched + outcome.retriesResent > 0) {
      logger.warn({ redispatched: outcome.redispatched, retriesResent: outcome.retriesResent }, 'watchdog re-sent messages for steps without progress');
    }
    for (const r of reported) {
      const key = `${r.namespace}:${r.why}`;
      if ((this.lastReport.get(key) ?? 0) < Date.now() - 60_000) {
        this.lastReport.set(key, Date.now());
        logger.warn({ namespace: r.namespace, taskId: r.task_id, step: r.step }, `steps cannot progress: ${r.why}`);
      }
    }
    return { redispatched: outcome.redispatched, retriesResent: outcome.retriesResent, reported };
  }

  private async queueState(queue: string): Promise<{ ready: number; consumers: number } | null> {
    if (!this.deps.broker.connected) return null;
    const r = await this.deps.broker.queueStats(queue).catch(() => null);
    return r ? { ready: r.messageCount, consumers: r.consumerCount } : null;
  }
}

/** Tasks that are live but have nothing in flight and cannot finish, with why (for operators). */
export async function findStuckTasks(db: Db, olderThanMs: number): Promise<StuckItem[]> {
  const { rows } = await sql<{ task_id: string; namespace: string; updated_at: Date; states: string }>`
    SELECT t.id AS task_id, t.namespace, t.updated_at,
           string_agg(s.name || '=' || s.state, ', ' ORDER BY s.position) AS states
    FROM tasks t JOIN steps s ON s.task_id = t.id
    WHERE t.state = 'in_progress' AND t.updated_at < now() - make_interval(secs => ${olderThanMs / 1000})
    GROUP BY t.id
    HAVING count(*) FILTER (WHERE s.state IN ('enqueued', 'waiting_retry', 'waiting_child')) = 0`.execute(db);
  return rows.map((r) => ({
    task_id: r.task_id,
    step_id: null,
    step: null,
    namespace: r.namespace,
    state: 'in_progress',
    since: new Date(r.updated_at).toISOString(),
    why: `no step is in flight and the task is not finished (${r.states})`,
  }));
}
