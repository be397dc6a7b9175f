import { sql, type Kysely, type Transaction } from 'kysely';
import type { AmqpOptions as Options, Broker } from '@tasker/transport';
import type { Logger } from 'pino';
import { preparedQuery, type Database, type Db } from '../db/database.ts';
import { recordTransitions, type TransitionRow } from '../tasks/transitions.ts';

/** A step a step message carries: its id and the attempt the message is for. */
export type StepRef = [stepId: string, attempt: number];

/** A message a state change implies, written in the same transaction as the change. */
export interface OutgoingMessage {
  exchange: string;
  routingKey: string;
  body: string;
  properties: Options.Publish;
  /**
   * Set on step messages: the steps the message carries. The writers of result and creation
   * batches (`planWriteArgs`, `createTasks`) put these in the outbox row instead of the body
   * (migration 0016), and a sweeper builds the message again from the steps' rows; the other
   * writers (`insertOutbox`, `insertTransitionsAndOutbox`) keep the body.
   */
  stepRefs?: StepRef[];
}

export interface OutboxRow extends OutgoingMessage {
  id: string;
}

/**
 * The message with the id of its outbox row. An object literal: a spread followed by more
 * properties (`{ ...m, id }`) cost V8 2-5 µs an object on the bench's machines (issue 7).
 */
export function outboxRow(m: OutgoingMessage, id: string): OutboxRow {
  return { exchange: m.exchange, routingKey: m.routingKey, body: m.body, properties: m.properties, id };
}

/**
 * An outbox row's values by position, as write_result_rows and create_tasks_rows read them
 * (migrations 0011 and 0016): [exchange, routing_key, body, properties], or, for a step
 * message, no body and the steps it carries after the properties.
 */
export function outboxPositions(m: OutgoingMessage): unknown[] {
  return m.stepRefs ? [m.exchange, m.routingKey, null, m.properties ?? null, m.stepRefs] : [m.exchange, m.routingKey, m.body, m.properties ?? null];
}

/** Inserts messages into the outbox inside the caller's transaction. */
export async function insertOutbox(trx: Kysely<Database>, messages: OutgoingMessage[]): Promise<OutboxRow[]> {
  if (messages.length === 0) return [];
  const payload = JSON.stringify(
    messages.map((m) => ({ exchange: m.exchange, routing_key: m.routingKey, body: m.body, properties: m.properties })),
  );
  const { rows } = await sql<{ id: string }>`/* prepared:outbox_insert */
    INSERT INTO outbox (exchange, routing_key, body, properties)
    SELECT exchange, routing_key, body, properties
    FROM jsonb_to_recordset(${payload}::jsonb) AS x(exchange text, routing_key text, body text, properties jsonb)
    RETURNING id`.execute(trx);
  // Ids only serve to delete the whole batch once every message is confirmed, so their
  // order relative to `messages` does not matter.
  return messages.map((m, i) => outboxRow(m, rows[i]!.id));
}

/**
 * The audit rows and the outbox rows of a batch in one statement (one round trip instead of
 * two on the hot path): both inserts run as data-modifying CTEs.
 */
export async function insertTransitionsAndOutbox(
  trx: Transaction<Database>,
  transitions: TransitionRow[],
  messages: OutgoingMessage[],
): Promise<OutboxRow[]> {
  if (messages.length === 0) {
    await recordTransitions(trx, transitions);
    return [];
  }
  const payload = JSON.stringify(
    messages.map((m) => ({ exchange: m.exchange, routing_key: m.routingKey, body: m.body, properties: m.properties })),
  );
  const { rows } = await sql<{ id: string }>`/* prepared:transitions_outbox_insert */
    WITH tr AS (
      INSERT INTO transitions (task_id, step_id, from_state, to_state, attempt, reason, actor)
      SELECT task_id, step_id, from_state, to_state, attempt, reason, actor
      FROM jsonb_to_recordset(${JSON.stringify(transitions)}::jsonb)
        AS x(task_id text, step_id text, from_state text, to_state text, attempt int, reason text, actor text)
    )
    INSERT INTO outbox (exchange, routing_key, body, properties)
    SELECT exchange, routing_key, body, properties
    FROM jsonb_to_recordset(${payload}::jsonb) AS x(exchange text, routing_key text, body text, properties jsonb)
    RETURNING id`.execute(trx);
  return messages.map((m, i) => outboxRow(m, rows[i]!.id));
}

/** How long confirmed outbox rows wait to be deleted together. */
const DELETE_DELAY_MS = 20;

/**
 * Publishes outbox rows with publisher confirms and deletes the confirmed ones. The process
 * that committed the rows publishes them right away; the sweeper publishes rows a crashed
 * process left behind (older than `staleMs`), so a committed state change always gets its
 * messages out: at least once, and duplicates are harmless (results are compare-and-set).
 * A row of a step message may keep only the steps it carries (migration 0016); the sweeper
 * builds such messages again from the tables (`stepMessages`).
 */
export class OutboxRelay {
  private timer: NodeJS.Timeout | null = null;
  private sweeping = false;
  private stopped = false;

  constructor(
    private readonly db: Db,
    private readonly broker: Broker,
    private readonly logger: Logger,
    private readonly options: {
      sweepMs: number;
      staleMs: number;
      /**
       * Messages to this exchange are published with this `user_id` (the connection's user,
       * which RabbitMQ validates): the orchestrator's child-task outcomes on the results
       * exchange, so the result-origin check knows they came from an orchestrator.
       */
      stampUserId?: { exchange: string; userId: string };
      /**
       * Builds again the messages of rows that keep only the steps they carry (step
       * messages, migration 0016), for the sweeper.
       */
      stepMessages: (trx: Transaction<Database>, refs: StepRef[]) => Promise<OutgoingMessage[]>;
    },
  ) {}

  private propertiesOf(r: OutgoingMessage): Options.Publish {
    const stamp = this.options.stampUserId;
    return stamp && r.exchange === stamp.exchange ? { ...r.properties, userId: stamp.userId } : r.properties;
  }

  /** Publishes rows just committed; rows that fail stay for the sweeper. */
  async publish(rows: OutboxRow[]): Promise<void> {
    if (rows.length === 0) return;
    const outcomes = await Promise.allSettled(
      rows.map((r) => this.broker.publish(r.exchange, r.routingKey, Buffer.from(r.body), this.propertiesOf(r))),
    );
    const failed = outcomes.filter((o) => o.status === 'rejected') as PromiseRejectedResult[];
    if (failed.length > 0) {
      // Keep every row of the batch: the sweeper publishes them again, and a duplicate of a
      // message that did go out is harmless (results are compare-and-set).
      this.logger.warn(
        { failed: failed.length, of: rows.length, err: (failed[0]!.reason as Error)?.message },
        'outbox publish failed; the sweeper will retry',
      );
      return;
    }
    // Confirmed rows are deleted together, a few milliseconds later, in one statement for
    // many batches: one commit less per batch on the hot path. Until then a crash only
    // means the sweeper sends them again (harmless duplicates).
    this.confirmed.push(...rows.map((r) => r.id));
    if (!this.deleteTimer) this.deleteTimer = setTimeout(() => void this.flushDeletes(), DELETE_DELAY_MS);
  }

  private confirmed: string[] = [];
  private deleteTimer: NodeJS.Timeout | null = null;

  /** Deletes the rows whose messages the broker confirmed. */
  async flushDeletes(): Promise<void> {
    if (this.deleteTimer) clearTimeout(this.deleteTimer);
    this.deleteTimer = null;
    const ids = this.confirmed.splice(0);
    if (ids.length === 0) return;
    await preparedQuery(this.db, '/* prepared:outbox_delete */ DELETE FROM outbox WHERE id = ANY($1::bigint[])', [ids]).catch((err: Error) => {
      // The messages went out; leaving the rows only means a harmless duplicate later.
      this.logger.warn({ err: err.message }, 'outbox cleanup failed');
    });
  }

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      this.sweep()
        .catch((err: Error) => this.logger.warn({ err: err.message }, 'outbox sweep failed'))
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(tick, this.options.sweepMs);
        });
    };
    this.timer = setTimeout(tick, this.options.sweepMs);
  }

  /** Publishes left-behind rows, a batch at a time; rows locked by another sweeper are skipped. */
  async sweep(): Promise<number> {
    if (this.sweeping || !this.broker.connected) return 0;
    this.sweeping = true;
    let total = 0;
    let published = 0;
    try {
      for (;;) {
        const { selected, sent } = await this.db.transaction().execute(async (trx) => {
          const { rows } = await sql<{
            id: string;
            exchange: string;
            routing_key: string;
            body: string | null;
            properties: Options.Publish;
            step_refs: unknown;
          }>`
            SELECT id, exchange, routing_key, body, properties, step_refs FROM outbox
            WHERE created_at < now() - make_interval(secs => ${this.options.staleMs / 1000})
            ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED`.execute(trx);
          const messages: OutgoingMessage[] = [];
          const done: string[] = [];
          const byRefs: Array<{ id: string; refs: StepRef[] }> = [];
          for (const r of rows) {
            if (r.body !== null) {
              messages.push({ exchange: r.exchange, routingKey: r.routing_key, body: r.body, properties: r.properties });
              done.push(r.id);
              continue;
            }
            const refs = readStepRefs(r.step_refs);
            if (refs) byRefs.push({ id: r.id, refs });
            else this.logger.error({ outboxId: r.id, stepRefs: r.step_refs }, 'outbox row has no body and no readable step references; it stays until repaired');
          }
          // Step messages kept as the steps they carry: built again from the steps still waiting for them.
          if (byRefs.length > 0) messages.push(...(await this.rebuild(trx, byRefs, done)));
          await Promise.all(messages.map((m) => this.broker.publish(m.exchange, m.routingKey, Buffer.from(m.body), this.propertiesOf(m))));
          published += messages.length;
          if (done.length > 0) await sql`DELETE FROM outbox WHERE id = ANY(${done}::bigint[])`.execute(trx);
          return { selected: rows.length, sent: done.length };
        });
        total += sent;
        // Rows that cannot be sent stay where they are: stop when a pass moved nothing.
        if (selected < 500 || sent === 0 || this.stopped) break;
      }
      // Rows of steps that all moved on publish nothing; a packed row may become several messages.
      if (total > 0) this.logger.info({ rows: total, messages: published }, 'outbox sweep published left-behind messages');
      return total;
    } finally {
      this.sweeping = false;
    }
  }

  /**
   * The messages of rows that keep only the steps they carry, and the ids of those rows
   * (into `done`). The rows are built together; if that fails, each on its own, so that one
   * row that cannot be built (logged, left in the outbox) does not hold back the others.
   */
  private async rebuild(trx: Transaction<Database>, rows: Array<{ id: string; refs: StepRef[] }>, done: string[]): Promise<OutgoingMessage[]> {
    const attempt = async (part: Array<{ id: string; refs: StepRef[] }>): Promise<OutgoingMessage[] | Error> => {
      // A savepoint, so that a failed statement leaves the sweep's transaction usable.
      await sql`SAVEPOINT outbox_rebuild`.execute(trx);
      try {
        const messages = await this.options.stepMessages(trx, part.flatMap((r) => r.refs));
        await sql`RELEASE SAVEPOINT outbox_rebuild`.execute(trx);
        return messages;
      } catch (err) {
        await sql`ROLLBACK TO SAVEPOINT outbox_rebuild`.execute(trx);
        return err as Error;
      }
    };
    const all = await attempt(rows);
    if (!(all instanceof Error)) {
      done.push(...rows.map((r) => r.id));
      return all;
    }
    const out: OutgoingMessage[] = [];
    for (const r of rows) {
      const one = rows.length === 1 ? all : await attempt([r]);
      if (one instanceof Error) {
        this.logger.error({ outboxId: r.id, err: one.message }, 'the step messages of an outbox row could not be built again; it stays for the next sweep');
        continue;
      }
      out.push(...one);
      done.push(r.id);
    }
    return out;
  }

  /** Stops the sweeper and deletes what is confirmed already. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.flushDeletes();
  }
}

/** An outbox row's step references as written (migration 0016): [step id, attempt] pairs, or null if they are not that. */
function readStepRefs(value: unknown): StepRef[] | null {
  if (!Array.isArray(value) || value.length === 0) return null;
  for (const ref of value) {
    if (!Array.isArray(ref) || ref.length !== 2 || typeof ref[0] !== 'string' || !Number.isInteger(ref[1])) return null;
  }
  return value as StepRef[];
}
