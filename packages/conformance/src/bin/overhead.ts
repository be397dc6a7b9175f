#!/usr/bin/env node
/**
 * Per-step overhead of a worker, without the orchestrator: step messages are published
 * straight to the namespace's queue (on a prefix of their own, removed afterwards) and the
 * time until each result reaches the results exchange is measured. The handler is the
 * conformance worker's `conformance_succeed`, which does nothing, so what is measured is the
 * worker: decode, dispatch to the handler (and, for the exec bridge, the JSON-lines round
 * trip to the child), result encoding, confirmed publish, ack.
 *
 *   tsx packages/conformance/src/bin/overhead.ts [--steps 300] -- <conformance worker command...>
 *
 * Prints the sequential latency (one step in flight: median, p95) and the throughput with
 * 200 steps in flight. A measurement, not a test.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import amqp from 'amqplib';
import { coreTopology, names, namespaceTopology } from '@tasker/protocol';
import { WorkerProcess } from '../worker-process.ts';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { steps: { type: 'string' } } });
const steps = Number(values.steps ?? 300);
if (positionals.length === 0) {
  console.error('usage: overhead [--steps N] -- <conformance worker command...>');
  process.exit(2);
}
const url = process.env['TASKER_AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';
const n = names(`overhead${randomBytes(4).toString('hex')}`);
const ns = 'overhead';
const topology = [coreTopology(n), namespaceTopology(n, ns)];

const conn = await amqp.connect(url);
const ch = await conn.createConfirmChannel();
for (const t of topology) {
  for (const e of t.exchanges) await ch.assertExchange(e.name, e.type, { durable: true });
  for (const q of t.queues) await ch.assertQueue(q.name, { durable: true, arguments: q.arguments });
  for (const b of t.bindings) {
    if (b.kind === 'queue') await ch.bindQueue(b.destination, b.source, b.pattern);
    else await ch.bindExchange(b.destination, b.source, b.pattern);
  }
}
const arrived = new Map<string, number>();
const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
await ch.bindQueue(queue, n.resultsExchange, ns);
await ch.consume(queue, (m) => {
  if (!m) return;
  const r = JSON.parse(m.content.toString()) as { step_id: string };
  arrived.set(r.step_id, performance.now());
}, { noAck: true });

const worker = new WorkerProcess(positionals, { ...process.env, TASKER_AMQP_URL: url, TASKER_AMQP_PREFIX: n.prefix, TASKER_NAMESPACE: ns, TASKER_LOG_LEVEL: 'warn' }, null);
worker.start();
const ready = Date.now() + 60_000;
while ((await ch.checkQueue(n.stepQueue(ns))).consumerCount === 0) {
  if (Date.now() > ready || !worker.running) throw new Error(`the worker did not consume:\n${worker.tail.join('\n')}`);
  await sleep(50);
}

let seq = 0;
function publish(): { id: string; at: number } {
  const id = `stp_${++seq}`;
  const msg = {
    protocol_version: 1, message_type: 'step', task_id: 'tsk_overhead', namespace: ns, task_name: 'overhead', task_version: '1.0.0',
    correlation_id: 'corr', step_id: id, step_name: 'succeed', attempt: 1, max_attempts: 1, timeout_ms: null,
    handler: { callable: 'conformance_succeed', method: null, initialization: {} }, input: { value: 'x' }, dependency_results: {},
    idempotency_key: `${id}:1`, dispatched_at: new Date().toISOString(),
  };
  const at = performance.now();
  ch.publish(n.stepsExchange, ns, Buffer.from(JSON.stringify(msg)), { persistent: true, contentType: 'application/json' });
  return { id, at };
}
async function until(ids: string[]): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!ids.every((id) => arrived.has(id))) {
    if (Date.now() > deadline) throw new Error('results missing after 60 s');
    await sleep(0.2);
  }
}

// Warm-up, then one step at a time.
for (let i = 0; i < 20; i++) await until([publish().id]);
const latencies: number[] = [];
for (let i = 0; i < steps; i++) {
  const { id, at } = publish();
  await until([id]);
  latencies.push(arrived.get(id)! - at);
}
latencies.sort((a, b) => a - b);
const q = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!;

// Throughput: 200 in flight.
const t0 = performance.now();
const batch = Array.from({ length: 200 }, () => publish().id);
await until(batch);
const perSecond = 200 / ((performance.now() - t0) / 1000);

console.log(
  `${positionals.join(' ')}\n  sequential: median ${q(0.5).toFixed(2)} ms, p95 ${q(0.95).toFixed(2)} ms over ${steps} steps; ` +
    `200 in flight: ${perSecond.toFixed(0)} steps/s`,
);
worker.signal('SIGTERM');
await Promise.race([worker.exited(), sleep(15_000)]);
await worker.killGroup();
for (const t of topology) {
  for (const qq of t.queues) await ch.deleteQueue(qq.name);
  for (const e of t.exchanges) await ch.deleteExchange(e.name);
}
await conn.close();
