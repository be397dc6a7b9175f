// With BENCH_TIMELINE=1 (`pnpm bench --timeline`): a timeline of what happens in this process,
// on the clock every process of the machine shares (CLOCK_MONOTONIC, process.hrtime), so
// that the bench can merge the orchestrator's and the worker's and say where each step's time
// goes (timeline-summary.ts). It wraps amqplib's and pg's prototypes in this process only:
// deliveries, publishes, and each SQL statement sent and answered. Nothing of Tasker changes.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { queryAnswered } from './pg-answer.ts';

/** `<ns since an arbitrary origin> <event> <detail>`, in the order they happened. */
const events: string[] = [];
const on = process.env.BENCH_TIMELINE === '1';
const MAX_EVENTS = 200_000;

/** Records an event (when the timeline is on). */
export function ev(name: string, detail = ''): void {
  if (on && events.length < MAX_EVENTS) events.push(`${process.hrtime.bigint()} ${name} ${detail}`);
}

/** The events since the last call (or since `clearTimeline`), and forgets them. */
export function takeTimeline(): string[] {
  return events.splice(0);
}

export function clearTimeline(): void {
  events.length = 0;
}

type Proto = Record<string, (...args: unknown[]) => unknown>;

if (on) {
  const require = createRequire(import.meta.url);
  const channel = require(join(dirname(require.resolve('amqplib')), 'lib', 'channel.js')) as { Channel: { prototype: Proto }; BaseChannel: { prototype: Proto } };
  const base = channel.BaseChannel.prototype;
  const dispatch = base.dispatchMessage!;
  base.dispatchMessage = function (this: unknown, fields: unknown, message: unknown) {
    const f = (fields ?? {}) as { exchange?: string; routingKey?: string };
    ev('recv', `${f.exchange ?? ''}/${f.routingKey ?? ''}`);
    return dispatch.call(this, fields, message);
  };
  const proto = channel.Channel.prototype;
  const send = proto.sendMessage!;
  proto.sendMessage = function (this: unknown, fields: unknown, properties: unknown, content: unknown) {
    const f = fields as { exchange?: string; routingKey?: string };
    ev('pub', `${f.exchange ?? ''}/${f.routingKey ?? ''}`);
    return send.call(this, fields, properties, content);
  };
  const client = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
  const query = client.query;
  client.query = function (this: unknown, ...args: unknown[]) {
    const first = args[0];
    const text = typeof first === 'string' ? first : ((first as { text?: string } | undefined)?.text ?? '?');
    // The statement's kind: its marker comment (`pipelined`, `prepared:NAME`), else its first words.
    const kind = (/^\s*\/\* ([a-z_:]+) \*\//.exec(text)?.[1] ?? text.trim().split(/\s+/).slice(0, 2).join('_')).slice(0, 40);
    ev('sql>', kind);
    return queryAnswered(query, this, args, () => ev('sql<', kind));
  };
}
