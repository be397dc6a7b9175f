// Measurements taken inside a child without touching the code under test: CPU time and
// event-loop utilization over a window, and (opt-in) the wall time of every SQL statement
// and of every publisher confirm, by wrapping pg's and amqplib's prototypes in this
// process only.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { queryAnswered } from './pg-answer.ts';
import { onRequest } from './ipc.ts';
import { clearTimeline, takeTimeline } from './timeline.ts';

interface Timing {
  count: number;
  totalMs: number;
  maxMs: number;
  samples: number[];
}

const timings = new Map<string, Timing>();
const MAX_SAMPLES = 20_000;

function record(key: string, ms: number): void {
  let t = timings.get(key);
  if (!t) timings.set(key, (t = { count: 0, totalMs: 0, maxMs: 0, samples: [] }));
  t.count++;
  t.totalMs += ms;
  if (ms > t.maxMs) t.maxMs = ms;
  if (t.samples.length < MAX_SAMPLES) t.samples.push(ms);
}

/**
 * A statement's identity: its text without parameters, whitespace collapsed, cut short.
 * Values written into the text (dollar-quoted JSON of the result batch's pipelined
 * statements) are left out, so that the same statement counts as one.
 */
function fingerprint(text: string): string {
  const shape = text.replace(/\$(j\d*)\$[\s\S]*?\$\1\$/g, '$$$1$$…');
  return shape.replace(/\s+/g, ' ').trim().slice(0, 110);
}

/** Times every query of every pg client in this process (kysely uses pg.Client underneath). */
export function installSqlTrace(): void {
  const proto = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
  const original = proto.query;
  proto.query = function (this: unknown, ...args: unknown[]) {
    const first = args[0];
    const text = typeof first === 'string' ? first : ((first as { text?: string } | undefined)?.text ?? '?');
    const t0 = performance.now();
    return queryAnswered(original, this, args, (ok) => record(`${ok ? 'sql' : 'sql(failed)'} ${fingerprint(text)}`, performance.now() - t0));
  };
}

/** Times every confirmed publish (publish → broker confirm) in this process. */
export function installAmqpTrace(): void {
  const require = createRequire(import.meta.url);
  const main = require.resolve('amqplib');
  const model = require(join(dirname(main), 'lib', 'channel_model.js')) as {
    ConfirmChannel: { prototype: { publish: (...args: unknown[]) => boolean } };
  };
  const proto = model.ConfirmChannel.prototype;
  const original = proto.publish;
  proto.publish = function (this: unknown, exchange: unknown, routingKey: unknown, content: unknown, options: unknown, cb?: unknown) {
    const t0 = performance.now();
    const wrapped =
      typeof cb === 'function'
        ? (err: unknown, ok: unknown) => {
            record('amqp publish→confirm', performance.now() - t0);
            (cb as (e: unknown, o: unknown) => void)(err, ok);
          }
        : cb;
    return original.call(this, exchange, routingKey, content, options, wrapped);
  };
}

let markCpu = process.cpuUsage();
let markElu = performance.eventLoopUtilization();
let markAt = performance.now();

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** `mark` starts a window; `stats` reports CPU, event-loop utilization and timings since. */
export function serveStats(): void {
  onRequest('mark', () => {
    markCpu = process.cpuUsage();
    markElu = performance.eventLoopUtilization();
    markAt = performance.now();
    timings.clear();
    clearTimeline();
    return null;
  });
  onRequest('timeline', () => takeTimeline());
  onRequest('stats', () => {
    const cpu = process.cpuUsage(markCpu);
    const elu = performance.eventLoopUtilization(markElu);
    const wallMs = performance.now() - markAt;
    const rows = [...timings.entries()]
      .map(([key, t]) => {
        const s = [...t.samples].sort((a, b) => a - b);
        return { key, count: t.count, total_ms: round(t.totalMs), mean_ms: round(t.totalMs / t.count), p50_ms: round(pct(s, 50)), p99_ms: round(pct(s, 99)), max_ms: round(t.maxMs) };
      })
      .sort((a, b) => b.total_ms - a.total_ms);
    return {
      wall_ms: round(wallMs),
      cpu_user_ms: round(cpu.user / 1000),
      cpu_system_ms: round(cpu.system / 1000),
      cpu_pct_of_one_core: round(((cpu.user + cpu.system) / 1000 / wallMs) * 100),
      event_loop_utilization: round(elu.utilization),
      timings: rows,
    };
  });
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
