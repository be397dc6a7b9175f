import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { StepMessage, StepResult, TaskRequest, compiledSchema, decodeValue, isJsonValue, jsonObject, jsonValue, jsonValueProblem, Limits, notJson } from '../src/index.ts';
import * as examples from './examples.ts';

/** `depth` arrays, each holding the next: `[[[…]]]`. */
function nested(depth: number): unknown {
  let v: unknown = 'leaf';
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

class Money {
  constructor(readonly cents: number) {}
}

const sparse: unknown[] = [1];
sparse[2] = 3;

/** Values on both sides of the line, for comparing with zod's own z.json(). */
const samples: Array<[string, unknown]> = [
  ['null', null],
  ['a string', 'ä\n"'],
  ['zero and negative zero', [0, -0]],
  ['a fraction', 0.1],
  ['booleans', [true, false]],
  ['an empty object and array', { a: {}, b: [] }],
  ['a nested document', { order: { id: 'o-1', items: [{ sku: 'a', qty: 2, tags: ['x'] }], paid: false, note: null } }],
  ['an object without a prototype', Object.assign(Object.create(null) as object, { a: 1 })],
  ['undefined', undefined],
  ['NaN', Number.NaN],
  ['Infinity inside an array', [1, Number.POSITIVE_INFINITY]],
  ['undefined as a value of an object', { a: undefined }],
  ['a sparse array', sparse],
  ['a bigint', 10n],
  ['a function', () => 1],
  ['a symbol', Symbol('s')],
  ['a Date', new Date(0)],
  ['a Map', new Map([['a', 1]])],
  ['a class instance', new Money(100)],
];

describe('jsonValue', () => {
  it.each(samples)('accepts and refuses what z.json() does: %s', (_name, value) => {
    expect(jsonValue.safeParse(value).success).toBe(z.json().safeParse(value).success);
  });

  it('gives back the value itself, not a copy', () => {
    const value = { a: [1, { b: 'c' }] };
    const parsed = jsonValue.parse(value);
    expect(parsed).toBe(value);
  });

  it('names where a value stops being JSON, and why', () => {
    expect(notJson({ items: [{ price: 1 }, { price: Number.POSITIVE_INFINITY }] })).toBe('at items.1.price: Infinity is not a finite number');
    expect(notJson({ at: new Date(0) })).toBe('at at: a Date is not a plain object (send a date as an ISO 8601 string)');
    expect(notJson([10n])).toBe('at 0: a bigint is not a JSON number (send it as a string)');
    expect(notJson({ a: undefined })).toBe('at a: undefined is not a JSON value');
    expect(notJson(new Money(1))).toBe('a Money is not a plain object');
    expect(notJson({ f: () => 1 })).toBe('at f: a function is not a JSON value');
    expect(notJson({ ok: [1, 'two', null] })).toBeNull();
  });

  it('puts the reason in the schema error, at the field', () => {
    const r = z.object({ result: jsonValue }).safeParse({ result: { total: Number.NaN } });
    expect(r.success).toBe(false);
    expect(r.error!.issues).toEqual([expect.objectContaining({ path: ['result'], message: 'must be JSON: at total: NaN is not a finite number' })]);
  });

  it('allows the nesting every message allows, and no deeper', () => {
    // The same bound as jsonValueProblem, which every message is checked with before its schema.
    const max = Limits.maxJsonDepth;
    expect(isJsonValue(nested(max))).toBe(true);
    expect(jsonValueProblem(nested(max))).toBeNull();
    expect(isJsonValue(nested(max + 1))).toBe(false);
    expect(jsonValueProblem(nested(max + 1))).not.toBeNull();
    expect(notJson(nested(max + 1))).toBe(`at ${Array(max).fill('0').join('.')}: nested deeper than ${max} levels`);
  });

  it('ends on an object that contains itself, refusing it', () => {
    const loop: Record<string, unknown> = { a: 1 };
    loop['self'] = loop;
    expect(jsonValue.safeParse(loop).success).toBe(false);
    expect(notJson(loop)).toMatch(/^at self\.self\.self.*: nested deeper than 64 levels$/);
  });

  it('checks every value of a JSON object, and that it is an object', () => {
    expect(jsonObject.safeParse({ a: 1, b: { c: [null] } }).success).toBe(true);
    expect(jsonObject.safeParse([1]).success).toBe(false);
    const r = jsonObject.safeParse({ a: 1, b: { c: Number.NaN } });
    expect(r.error!.issues).toEqual([expect.objectContaining({ path: ['b'], message: 'must be JSON: at c: NaN is not a finite number' })]);
  });
});

describe('JSON-valued fields of messages', () => {
  const step = {
    protocol_version: 1,
    message_type: 'step',
    task_id: 'tsk_1',
    namespace: 'payments',
    task_name: 'refund',
    task_version: '1.0.0',
    correlation_id: 'c-1',
    step_id: 'stp_1',
    step_name: 'charge',
    attempt: 1,
    max_attempts: 3,
    timeout_ms: null,
    handler: { callable: 'Charge', method: null, initialization: { currency: 'EUR' } },
    input: { amount: 10, items: [{ sku: 'a' }] },
    dependency_results: { validate: { ok: true }, fetch: null },
    idempotency_key: 'stp_1:1',
    dispatched_at: '2026-11-28T10:00:00.000Z',
  };

  it('a step message keeps its context and its dependencies results as sent', () => {
    const decoded = decodeValue(StepMessage, JSON.parse(JSON.stringify(step)), 'step message');
    expect(decoded.ok && decoded.value.input).toEqual(step.input);
    expect(decoded.ok && decoded.value.dependency_results).toEqual(step.dependency_results);
  });

  it('a step message whose context is not JSON is refused, naming the field and the place in it', () => {
    const decoded = decodeValue(StepMessage, { ...step, input: { amount: Number.POSITIVE_INFINITY } }, 'step message');
    expect(decoded.ok).toBe(false);
    expect(!decoded.ok && decoded.error.message).toContain('input.amount: must be JSON: Infinity is not a finite number');
  });

  it('a result whose value is missing is refused: a success carries a result, null at least', () => {
    const result = {
      protocol_version: 1, message_type: 'step_result', task_id: 'tsk_1', step_id: 'stp_1', namespace: 'payments', step_name: 'charge',
      attempt: 1, started_at: '2026-11-28T10:00:00.000Z', finished_at: '2026-11-28T10:00:00.010Z', status: 'success',
    };
    expect(StepResult.safeParse({ ...result, result: null }).success).toBe(true);
    expect(StepResult.safeParse({ ...result, result: { ok: [1] } }).success).toBe(true);
    expect(StepResult.safeParse(result).success).toBe(false);
  });
});

describe('compiledSchema', () => {
  const cases: Array<[string, z.ZodType, Record<string, unknown>]> = [
    ['step message', StepMessage, examples.stepMessage],
    ['step result, success', StepResult, examples.stepResultSuccess],
    ['step result, failure', StepResult, examples.stepResultFailure],
    ['task request', TaskRequest, examples.taskRequest],
  ];
  /** Each example broken in ways a sender gets wrong: a field missing, of the wrong type, an unknown version, a context that is not JSON. */
  const broken = (m: Record<string, unknown>): Array<Record<string, unknown>> => [
    { ...m, task_id: undefined },
    { ...m, attempt: '1' },
    { ...m, namespace: 'Not-A-Namespace' },
    { ...m, status: 'maybe' },
    { ...m, input: { total: Number.NaN } },
    { ...m, context: [1] },
    { ...m, result: undefined },
    { ...m, extra: 1 },
  ];

  it.each(cases)('gives what the schema gives, value and errors alike: %s', (_name, schema, example) => {
    const fast = compiledSchema(schema);
    expect(fast).not.toBe(schema);
    expect(compiledSchema(schema)).toBe(fast); // compiled once
    for (const input of [example, ...broken(example)]) {
      const a = schema.safeParse(input);
      const b = fast.safeParse(input);
      expect(b.success).toBe(a.success);
      if (a.success) expect(b.data).toEqual(a.data);
      else expect(b.error!.issues).toEqual(a.error!.issues);
    }
  });
});
