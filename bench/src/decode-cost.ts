/**
 * What decoding one message costs in one process, microseconds per message: JSON parsing,
 * the depth and NUL walk, and the zod schema, for a step message and a step result as the
 * throughput section sends them and with a context of a few kilobytes. Beside each schema,
 * the same schema with its JSON-valued fields checked by zod's own `z.json()`, which the
 * protocol used before `jsonValue` (packages/protocol/src/json-value.ts), and the schema as
 * `decodeMessage` runs it, compiled by zod (`compiledSchema`, the protocol's own).
 *
 *   npx tsx bench/src/decode-cost.ts [--rounds N]
 *
 * CPU only, one core: no broker, no database. Figures move with the machine; compare rows
 * of one run.
 */
import { z } from 'zod';
import { StepMessage, StepResult, compiledSchema, decodeMessage, jsonValueProblem } from '@tasker/protocol';
import { table } from './report.ts';

const at = process.argv.indexOf('--rounds');
const rounds = at > 0 ? Number(process.argv[at + 1]) : 20_000;
if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds takes a whole number of at least 1');

const items = Array.from({ length: 20 }, (_, i) => ({ sku: `sku-${i}`, qty: i, price: 9.99, tags: ['gift', 'fragile'], backorder: false }));
const context = { order_id: 'ord_8842', customer: { id: 'cus_17', email: 'buyer@example.com', address: { line1: '1 Main St', city: 'Springfield', zip: '12345' } }, items };

function stepMessage(input: Record<string, unknown>, dependencyResults: Record<string, unknown>) {
  return {
    protocol_version: 1,
    message_type: 'step',
    task_id: 'tsk_V1StGXR8Z5jdHi6BmyT',
    namespace: 'bench',
    task_name: 'diamond',
    task_version: '1.0.0',
    correlation_id: 'cor_V1StGXR8Z5jdHi6BmyT',
    step_id: 'stp_V1StGXR8Z5jdHi6BmyT',
    step_name: 'd',
    attempt: 1,
    max_attempts: 3,
    timeout_ms: 30_000,
    handler: { callable: 'bench.noop', method: null, initialization: {} },
    input,
    dependency_results: dependencyResults,
    idempotency_key: 'stp_V1StGXR8Z5jdHi6BmyT:1',
    dispatched_at: new Date().toISOString(),
  };
}

function stepResult(result: unknown) {
  const now = new Date().toISOString();
  return {
    protocol_version: 1,
    message_type: 'step_result',
    task_id: 'tsk_V1StGXR8Z5jdHi6BmyT',
    step_id: 'stp_V1StGXR8Z5jdHi6BmyT',
    namespace: 'bench',
    step_name: 'd',
    attempt: 1,
    started_at: now,
    finished_at: now,
    worker_id: 'wrk_1',
    status: 'success',
    result,
  };
}

// The schemas as they were with zod's z.json() in every JSON-valued field.
const zJsonObject = z.record(z.string(), z.json());
const StepMessageZodJson = StepMessage.extend({
  handler: StepMessage.shape.handler.extend({ initialization: zJsonObject }),
  input: zJsonObject,
  dependency_results: zJsonObject,
});
const StepResultZodJson = z.object({ ...StepResult.options[0].shape, result: z.json() });

const cases = [
  { what: 'step message, the bench\'s (no context)', schema: StepMessage, before: StepMessageZodJson, body: stepMessage({ n: 1 }, { b: null, c: null }) },
  { what: 'step message: an order of 20 lines, 3 results', schema: StepMessage, before: StepMessageZodJson, body: stepMessage(context, { a: { items }, b: { total: 199.8, items }, c: { ok: true } }) },
  { what: 'step result, the bench\'s (null)', schema: StepResult, before: StepResultZodJson, body: stepResult(null) },
  { what: 'step result: 20 lines', schema: StepResult, before: StepResultZodJson, body: stepResult({ items }) },
];

function perCall(f: () => unknown): number {
  for (let i = 0; i < Math.min(rounds, 2_000); i++) f();
  const start = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) f();
  return Number(process.hrtime.bigint() - start) / rounds / 1000;
}

const rows = cases.map((c) => {
  const text = JSON.stringify(c.body);
  const parsed: unknown = JSON.parse(text);
  const compiled = compiledSchema(c.schema as z.ZodType);
  if (!c.schema.safeParse(parsed).success || !c.before.safeParse(parsed).success) throw new Error(`${c.what}: the sample does not match its schema`);
  return [
    c.what,
    String(text.length),
    perCall(() => JSON.parse(text)).toFixed(2),
    perCall(() => jsonValueProblem(parsed)).toFixed(2),
    perCall(() => c.before.safeParse(parsed)).toFixed(2),
    perCall(() => c.schema.safeParse(parsed)).toFixed(2),
    perCall(() => compiled.safeParse(parsed)).toFixed(2),
    perCall(() => decodeMessage(c.schema, text, 'message')).toFixed(2),
  ];
});

console.log(`decoding cost, µs per message (${rounds} rounds each, one process; Node ${process.version})`);
console.log(table(['message', 'bytes', 'JSON.parse', 'depth/NUL walk', 'schema with z.json()', 'schema', 'schema compiled', 'decodeMessage (all)'], rows));
