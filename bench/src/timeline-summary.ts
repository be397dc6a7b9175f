// Where each step's time goes in the overhead section (`--timeline`): the orchestrator's and
// the worker's timelines (children/timeline.ts) merged on their shared clock and cut, step by
// step, into the legs of the path from one step's handler to the next one's. The section runs
// one task at a time, so the events of one step follow each other; a leg that an unrelated
// event (task creation, an outbox clean-up) would cut in two is recognised by its kind.
import { table } from './report.ts';

interface Event {
  t: bigint;
  who: 'orchestrator' | 'worker';
  name: string;
  detail: string;
}

/** A leg summary as a table: one row per leg (p50, p90), then the whole path. */
export function legsTable<K extends string>(
  title: string,
  legs: ReadonlyArray<readonly [K, string]>,
  summary: { legs: Record<K, { p50: number; p90: number }>; total: { p50: number; p90: number } },
  totalLabel: string,
): string {
  return table(
    [title, 'p50', 'p90'],
    [...legs.map(([k, label]) => [label, summary.legs[k].p50, summary.legs[k].p90]), [totalLabel, summary.total.p50, summary.total.p90]],
  );
}

/** The legs, in path order. */
export const LEGS = [
  ['worker_handler_to_publish', 'worker: handler starts → its result is published'],
  ['broker_result', 'broker: result published → orchestrator receives it'],
  ['orchestrator_decide', 'orchestrator: result received → first statement sent'],
  ['postgres', 'Postgres: first statement sent → last one answered'],
  ['orchestrator_publish', 'orchestrator: answered → next step published'],
  ['broker_step', 'broker: step published → worker receives it'],
  ['worker_receive_to_handler', 'worker: step received → handler starts'],
] as const;
export type Leg = (typeof LEGS)[number][0];

export interface TimelineSummary {
  /** Steps followed from one handler to the next. */
  steps: number;
  /** Per leg: p50 and p90, ms. */
  legs: Record<Leg, { p50: number; p90: number }>;
  /** The whole path (the sum of the legs, step by step), ms. */
  total: { p50: number; p90: number };
  /** Result-batch statements (round trips to Postgres) per step, median. */
  statements_per_step: number;
}

function parse(who: Event['who'], lines: string[]): Event[] {
  return lines.map((l) => {
    const [t, name, ...rest] = l.split(' ');
    return { t: BigInt(t!), who, name: name!, detail: rest.join(' ') };
  });
}

const ms = (a: bigint, b: bigint) => Number(b - a) / 1e6;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! * 1000) / 1000;
}

/** The orchestrator's and the worker's events, merged in the order they happened. */
function merged(orchestrator: string[], worker: string[]): Event[] {
  return [...parse('orchestrator', orchestrator), ...parse('worker', worker)].sort((a, b) => (a.t < b.t ? -1 : a.t > b.t ? 1 : 0));
}

/** An empty list of durations per leg. */
function emptyLegs<K extends string>(legs: ReadonlyArray<readonly [K, string]>): Record<K, number[]> {
  return Object.fromEntries(legs.map(([k]) => [k, [] as number[]])) as Record<K, number[]>;
}

/** p50 and p90 of each leg's durations. */
function legPercentiles<K extends string>(legs: ReadonlyArray<readonly [K, string]>, xs: Record<K, number[]>): Record<K, { p50: number; p90: number }> {
  return Object.fromEntries(legs.map(([k]) => [k, { p50: pct(xs[k], 50), p90: pct(xs[k], 90) }])) as Record<K, { p50: number; p90: number }>;
}

/**
 * A statement of a result batch, by its kind (the marker comment, children/timeline.ts): a
 * pipelined text (`BEGIN; …`, `…; COMMIT`), or the one prepared statement that writes a batch
 * planned from the orchestrator's copy of its tasks (results/batch-store.ts, writeCheckedPlan).
 */
export function isResultBatchStatement(kind: string): boolean {
  return kind === 'pipelined' || kind === 'prepared:result_write_checked_kept' || kind === 'prepared:result_write_checked';
}

/**
 * Follows each step: its handler starts (worker) → its result is published (worker) → the
 * orchestrator receives it → sends its result batch's statements (`pipelined`, or the prepared
 * `result_write_checked…`: the ones that apply results; task creation and outbox clean-ups
 * are other kinds, see isResultBatchStatement) → publishes the next
 * step → the worker receives it → its handler starts. A step whose handler was the task's
 * last (`lastStep`) has no next step, and is left out.
 */
export function summarizeTimeline(orchestrator: string[], worker: string[], lastStep: string): TimelineSummary {
  const events = merged(orchestrator, worker);
  const legs = emptyLegs(LEGS);
  const totals: number[] = [];
  const statements: number[] = [];
  let c: { handler: bigint; step: string; wpub?: bigint; orecv?: bigint; sql0?: bigint; sqlN?: bigint; n: number; opub?: bigint; wrecv?: bigint } | null = null;
  for (const e of events) {
    if (e.who === 'worker' && e.name === 'handler') {
      if (c && c.wpub && c.orecv && c.sql0 && c.sqlN && c.opub && c.wrecv && c.step !== lastStep) {
        const parts: Array<[Leg, number]> = [
          ['worker_handler_to_publish', ms(c.handler, c.wpub)],
          ['broker_result', ms(c.wpub, c.orecv)],
          ['orchestrator_decide', ms(c.orecv, c.sql0)],
          ['postgres', ms(c.sql0, c.sqlN)],
          ['orchestrator_publish', ms(c.sqlN, c.opub)],
          ['broker_step', ms(c.opub, c.wrecv)],
          ['worker_receive_to_handler', ms(c.wrecv, e.t)],
        ];
        for (const [k, v] of parts) legs[k].push(v);
        totals.push(ms(c.handler, e.t));
        statements.push(c.n);
      }
      c = { handler: e.t, step: e.detail, n: 0 };
      continue;
    }
    if (!c) continue;
    if (e.who === 'worker' && e.name === 'pub' && e.detail.includes('.results/') && !c.wpub) c.wpub = e.t;
    else if (e.who === 'orchestrator' && e.name === 'recv' && e.detail.includes('.results/') && c.wpub && !c.orecv) c.orecv = e.t;
    else if (e.who === 'orchestrator' && e.name === 'sql>' && isResultBatchStatement(e.detail) && c.orecv && !c.opub) {
      c.sql0 ??= e.t;
      c.n++;
    } else if (e.who === 'orchestrator' && e.name === 'sql<' && isResultBatchStatement(e.detail) && c.sql0 && !c.opub) c.sqlN = e.t;
    else if (e.who === 'orchestrator' && e.name === 'pub' && e.detail.includes('.steps/') && c.sqlN && !c.opub) c.opub = e.t;
    else if (e.who === 'worker' && e.name === 'recv' && e.detail.includes('.steps/') && c.opub && !c.wrecv) c.wrecv = e.t;
  }
  return {
    steps: totals.length,
    legs: legPercentiles(LEGS, legs),
    total: { p50: pct(totals, 50), p90: pct(totals, 90) },
    statements_per_step: pct(statements, 50),
  };
}

/** The legs of a task's start, in path order: from the bench's request to the first step's handler. */
export const CREATION_LEGS = [
  ['http_to_statement', 'orchestrator: request sent → creation statement sent (HTTP, checks, plan)'],
  ['postgres', 'Postgres: creation statement sent → answered'],
  ['orchestrator_publish', 'orchestrator: answered → first step published'],
  ['broker_step', 'broker: step published → worker receives it'],
  ['worker_receive_to_handler', 'worker: step received → handler starts'],
] as const;
export type CreationLeg = (typeof CREATION_LEGS)[number][0];

export interface CreationSummary {
  /** Tasks followed from the request to their first handler. */
  tasks: number;
  legs: Record<CreationLeg, { p50: number; p90: number }>;
  total: { p50: number; p90: number };
}

/**
 * Follows each task from the bench's request (`sentMs`: its times on the same clock as the
 * events, bench/src/util.ts nowMs) to its first step's handler: the orchestrator's creation
 * statement (`prepared:tasks_create_batch`) sent and answered → the first step published →
 * the worker receives it → its handler starts. Requests must be one at a time (the overhead
 * section's); a request whose events are not all found before the next request is left out.
 */
export function summarizeCreation(sentMs: number[], orchestrator: string[], worker: string[]): CreationSummary {
  const events = merged(orchestrator, worker);
  const sends = [...sentMs].sort((a, b) => a - b).map((ms) => BigInt(Math.round(ms * 1e6)));
  const legs = emptyLegs(CREATION_LEGS);
  const totals: number[] = [];
  let i = 0;
  for (let k = 0; k < sends.length; k++) {
    const sent = sends[k]!;
    const until = sends[k + 1];
    while (i < events.length && events[i]!.t < sent) i++;
    let sql0: bigint | undefined, sqlN: bigint | undefined, pub: bigint | undefined, recv: bigint | undefined, handler: bigint | undefined;
    for (let j = i; j < events.length && (until === undefined || events[j]!.t < until) && handler === undefined; j++) {
      const e = events[j]!;
      const create = e.detail === 'prepared:tasks_create_batch';
      if (e.who === 'orchestrator' && e.name === 'sql>' && create && sql0 === undefined) sql0 = e.t;
      else if (e.who === 'orchestrator' && e.name === 'sql<' && create && sql0 !== undefined && sqlN === undefined) sqlN = e.t;
      else if (e.who === 'orchestrator' && e.name === 'pub' && e.detail.includes('.steps/') && sqlN !== undefined && pub === undefined) pub = e.t;
      else if (e.who === 'worker' && e.name === 'recv' && e.detail.includes('.steps/') && pub !== undefined && recv === undefined) recv = e.t;
      else if (e.who === 'worker' && e.name === 'handler' && recv !== undefined) handler = e.t;
    }
    if (sql0 === undefined || sqlN === undefined || pub === undefined || recv === undefined || handler === undefined) continue;
    legs.http_to_statement.push(ms(sent, sql0));
    legs.postgres.push(ms(sql0, sqlN));
    legs.orchestrator_publish.push(ms(sqlN, pub));
    legs.broker_step.push(ms(pub, recv));
    legs.worker_receive_to_handler.push(ms(recv, handler));
    totals.push(ms(sent, handler));
  }
  return {
    tasks: totals.length,
    legs: legPercentiles(CREATION_LEGS, legs),
    total: { p50: pct(totals, 50), p90: pct(totals, 90) },
  };
}
