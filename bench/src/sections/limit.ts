import amqp from 'amqplib';
import pg from 'pg';
import type { QueueType } from '@tasker/protocol';
import { dropSchema } from '../cleanup.ts';
import type { Child } from '../proc.ts';
import { percentile, round } from '../util.ts';

/** Unconfirmed publishes the raw publisher keeps in flight (the orchestrator publishes batches of up to 200, two at once). */
const CONFIRM_WINDOW = 1000;
/** Roughly a step message's size. */
const BODY = Buffer.from(JSON.stringify({ pad: 'x'.repeat(640) }));

export interface TwoHopResult {
  queue_type: QueueType;
  messages: number;
  seconds: number;
  msgs_per_sec: number;
  latency_p50_ms: number;
  latency_p99_ms: number;
  timed_out: boolean;
}

/**
 * Raw RabbitMQ through two hops, the shape of one step: the bench publishes persistent
 * messages with publisher confirms to queue 1; the relay process consumes them (manual
 * acks, prefetch 50 like a worker), publishes each to queue 2 with a confirm and acks the
 * original after the confirm; the bench consumes queue 2 with manual acks (prefetch 1000,
 * like the orchestrator). Latency: one message at a time, publish → received from queue 2.
 * Every socket has TCP_NODELAY.
 */
export async function twoHop(
  amqpUrl: string,
  queueType: QueueType,
  relay: Child,
  prefix: string,
  count: number,
  latencySamples: number,
  settleMs: number,
  deadline: number,
): Promise<TwoHopResult> {
  const q1 = `${prefix}.${queueType}.hop1`;
  const q2 = `${prefix}.${queueType}.hop2`;
  // TCP_NODELAY: the limit is what the broker can do, not what Nagle's algorithm allows.
  const pubConn = await amqp.connect(amqpUrl, { noDelay: true });
  const subConn = await amqp.connect(amqpUrl, { noDelay: true });
  pubConn.on('error', () => undefined);
  subConn.on('error', () => undefined);
  try {
    const admin = await pubConn.createChannel();
    for (const q of [q1, q2]) await admin.assertQueue(q, { durable: true, arguments: { 'x-queue-type': queueType } });
    await relay.request('relay', { from: q1, to: q2 });

    const sub = await subConn.createChannel();
    await sub.prefetch(1000);
    let received = 0;
    let lastAt = 0;
    let waiter: { target: number; resolve: () => void } | null = null;
    await sub.consume(q2, (msg) => {
      if (!msg) return;
      sub.ack(msg);
      received++;
      lastAt = performance.now();
      if (waiter && received >= waiter.target) {
        const w = waiter;
        waiter = null;
        w.resolve();
      }
    });
    const until = (target: number) =>
      received >= target
        ? Promise.resolve(true)
        : new Promise<boolean>((resolve) => {
            const timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
            waiter = {
              target,
              resolve: () => {
                clearTimeout(timer);
                resolve(true);
              },
            };
          });

    const pub = await pubConn.createConfirmChannel();
    const publish = (): Promise<void> =>
      new Promise((resolve, reject) => {
        pub.publish('', q1, BODY, { persistent: true, contentType: 'application/octet-stream' }, (err: unknown) =>
          err ? reject(new Error('nacked')) : resolve(),
        );
      });

    // Latency: one at a time, after the same load unmeasured for settleMs (at least 10
    // messages), as the per-step overhead is measured (options.ts, settleMs).
    const latencies: number[] = [];
    let timedOut = false;
    const settleUntil = performance.now() + settleMs;
    for (let i = 0, measuring = false; latencies.length < latencySamples; i++) {
      const t0 = performance.now();
      const target = received + 1;
      void publish();
      if (!(await until(target))) {
        timedOut = true;
        break;
      }
      if (measuring) latencies.push(performance.now() - t0);
      else measuring = i >= 9 && performance.now() >= settleUntil;
    }

    // Throughput: as fast as confirms allow, CONFIRM_WINDOW unconfirmed at most.
    const base = received;
    const t0 = performance.now();
    let inflight = 0;
    let wake: (() => void) | null = null;
    for (let i = 0; i < count && !timedOut; i++) {
      if (Date.now() >= deadline) {
        timedOut = true;
        break;
      }
      while (inflight >= CONFIRM_WINDOW) await new Promise<void>((r) => (wake = r));
      inflight++;
      const ok = pub.publish('', q1, BODY, { persistent: true, contentType: 'application/octet-stream' }, () => {
        inflight--;
        const w = wake;
        wake = null;
        w?.();
      });
      if (!ok) await new Promise<void>((r) => pub.once('drain', () => r()));
    }
    const all = await until(base + count);
    const seconds = ((all ? lastAt : performance.now()) - t0) / 1000;
    await relay.request('unrelay');
    for (const q of [q1, q2]) await admin.deleteQueue(q).catch(() => undefined);
    return {
      queue_type: queueType,
      messages: received - base,
      seconds: round(seconds, 3),
      msgs_per_sec: round((received - base) / seconds, 1),
      latency_p50_ms: round(percentile(latencies, 50), 3),
      latency_p99_ms: round(percentile(latencies, 99), 3),
      timed_out: timedOut || !all,
    };
  } finally {
    await pubConn.close().catch(() => undefined);
    await subConn.close().catch(() => undefined);
  }
}

export interface CasResult {
  rows: number;
  batch: number;
  concurrency: number;
  seconds: number;
  updates_per_sec: number;
  commits_per_sec: number;
  /** One-row compare-and-set, autocommit, one at a time: the cost of one durable commit. */
  single_commit_p50_ms: number;
  single_commit_p99_ms: number;
}

/**
 * Postgres batched compare-and-set: `UPDATE … FROM unnest(ids, attempts) WHERE id = x.id
 * AND state = 'enqueued' AND attempt = x.attempt RETURNING id`, `batch` rows per statement,
 * each its own durable commit, `concurrency` connections (the orchestrator runs two batches
 * at once).
 */
export async function pgCas(databaseUrl: string, schema: string, rows: number, singleSamples: number, batch = 200, concurrency = 2): Promise<CasResult> {
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  const poolOpts = { connectionString: databaseUrl, max: concurrency, options: `-c search_path=${schema}` };
  const p = new pg.Pool(poolOpts);
  try {
    await admin.query(`CREATE SCHEMA "${schema}"`);
    await admin.query(`CREATE TABLE "${schema}".cas (id text PRIMARY KEY, state text NOT NULL, attempt int NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`);
    await admin.query(
      `INSERT INTO "${schema}".cas (id, state, attempt) SELECT 'stp_' || lpad(g::text, 20, '0'), 'enqueued', 1 FROM generate_series(1, $1) g`,
      [rows + singleSamples],
    );
    await admin.query(`ANALYZE "${schema}".cas`);
    const ids = Array.from({ length: rows }, (_, i) => `stp_${String(i + 1).padStart(20, '0')}`);
    const batches: string[][] = [];
    for (let i = 0; i < ids.length; i += batch) batches.push(ids.slice(i, i + batch));
    const sql = `UPDATE cas c SET state = 'complete', updated_at = now()
                 FROM unnest($1::text[], $2::int[]) AS x(id, attempt)
                 WHERE c.id = x.id AND c.state = 'enqueued' AND c.attempt = x.attempt RETURNING c.id`;
    let next = 0;
    let updated = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        const client = await p.connect();
        try {
          while (next < batches.length) {
            const b = batches[next++]!;
            const r = await client.query(sql, [b, b.map(() => 1)]);
            updated += r.rowCount ?? 0;
          }
        } finally {
          client.release();
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const singles: number[] = [];
    const c = await p.connect();
    try {
      for (let i = 0; i < singleSamples; i++) {
        const id = `stp_${String(rows + i + 1).padStart(20, '0')}`;
        const s0 = performance.now();
        await c.query(`UPDATE cas SET state = 'complete' WHERE id = $1 AND state = 'enqueued' AND attempt = 1`, [id]);
        singles.push(performance.now() - s0);
      }
    } finally {
      c.release();
    }
    return {
      rows: updated,
      batch,
      concurrency,
      seconds: round(seconds, 3),
      updates_per_sec: round(updated / seconds, 1),
      commits_per_sec: round(batches.length / seconds, 1),
      single_commit_p50_ms: round(percentile(singles, 50), 3),
      single_commit_p99_ms: round(percentile(singles, 99), 3),
    };
  } finally {
    await p.end().catch(() => undefined);
    await admin.end().catch(() => undefined);
    await dropSchema(databaseUrl, schema).catch(() => undefined);
  }
}
