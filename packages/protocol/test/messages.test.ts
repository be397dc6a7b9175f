import { describe, expect, it } from 'vitest';
import {
  canStepTransition,
  canTaskTransition,
  decodeMessage,
  decodeOneOrMany,
  encodeBatch,
  STEP_RESULTS_SHAPE,
  StepResults,
  ErrorCode,
  Limits,
  RetryDue,
  STEP_TRANSITIONS,
  StepMessage,
  StepResult,
  StepState,
  TASK_TRANSITIONS,
  TaskReply,
  TaskRequest,
  TaskState,
  TERMINAL_STEP_STATES,
  TERMINAL_TASK_STATES,
  type Decoded,
  type TaskerError,
} from '../src/index.ts';
import * as examples from './examples.ts';

function failed<T>(d: Decoded<T>): TaskerError {
  if (d.ok) throw new Error(`expected a decoding failure, got ${JSON.stringify(d.value)}`);
  return d.error;
}

const body = (value: unknown) => JSON.stringify(value);

describe('decodeMessage refusals', () => {
  it('refuses a body that is not JSON, naming what it decoded', () => {
    const e = failed(decodeMessage(StepMessage, 'step please', 'step message'));
    expect(e.code).toBe(ErrorCode.INVALID_MESSAGE);
    expect(e.message).toContain('step message is not valid JSON');
  });

  it('refuses truncated JSON', () => {
    const text = body(examples.stepMessage);
    const e = failed(decodeMessage(StepMessage, Buffer.from(text.slice(0, text.length - 10)), 'step message'));
    expect(e.code).toBe(ErrorCode.INVALID_MESSAGE);
    expect(e.message).toContain('not valid JSON');
  });

  it('refuses an empty body', () => {
    expect(failed(decodeMessage(StepMessage, Buffer.alloc(0), 'step message')).code).toBe(ErrorCode.INVALID_MESSAGE);
  });

  it.each([
    ['a JSON array', body([examples.stepMessage])],
    ['JSON null', 'null'],
    ['a JSON string', '"step"'],
    ['a JSON number', '1'],
  ])('refuses %s as not an object', (_what, text) => {
    const e = failed(decodeMessage(StepMessage, text, 'step message'));
    expect(e.code).toBe(ErrorCode.INVALID_MESSAGE);
    expect(e.message).toContain('must be a JSON object');
  });

  it('refuses an unknown protocol_version with UNSUPPORTED_PROTOCOL_VERSION, before checking the schema', () => {
    // A version-2 message may have any shape: the version must be the reason given.
    const e = failed(decodeMessage(StepMessage, body({ protocol_version: 2, something: 'new' }), 'step message'));
    expect(e.code).toBe(ErrorCode.UNSUPPORTED_PROTOCOL_VERSION);
    expect(e.message).toContain('protocol_version 2');
    expect(e.message).toContain('supported: 1');
  });

  it('refuses protocol_version 0 as unsupported', () => {
    const e = failed(decodeMessage(StepResult, body({ ...examples.stepResultSuccess, protocol_version: 0 }), 'result'));
    expect(e.code).toBe(ErrorCode.UNSUPPORTED_PROTOCOL_VERSION);
  });

  it('refuses a message without protocol_version as invalid', () => {
    const { protocol_version: _, ...rest } = examples.stepMessage;
    const e = failed(decodeMessage(StepMessage, body(rest), 'step message'));
    expect(e.code).toBe(ErrorCode.INVALID_MESSAGE);
    expect(e.issues.map((i) => i.path)).toEqual(['protocol_version']);
  });

  it('lists every failing field path, nested ones included', () => {
    const { task_id: _t, step_name: _s, ...rest } = examples.stepMessage;
    const broken = {
      ...rest,
      attempt: 0,
      namespace: 'Payments.EU',
      handler: { ...examples.stepMessage.handler, callable: '' },
      dispatched_at: 'yesterday',
    };
    const e = failed(decodeMessage(StepMessage, body(broken), 'step message'));
    expect(e.code).toBe(ErrorCode.INVALID_MESSAGE);
    expect(e.issues.map((i) => i.path).sort()).toEqual(
      ['attempt', 'dispatched_at', 'handler.callable', 'namespace', 'step_name', 'task_id'].sort(),
    );
    for (const path of ['task_id', 'step_name', 'handler.callable', 'dispatched_at']) {
      expect(e.message).toContain(`${path}: `);
    }
    expect(e.toJSON().issues).toEqual(e.issues);
  });

  it('refuses a result whose error kind is neither permanent nor retryable, pointing at the field', () => {
    const bad = { ...examples.stepResultFailure, error: { ...examples.stepResultFailure.error, kind: 'maybe' } };
    const e = failed(decodeMessage(StepResult, body(bad), 'step result'));
    expect(e.issues.map((i) => i.path)).toEqual(['error.kind']);
  });

  it('refuses a success result without its result field', () => {
    const { result: _, ...rest } = examples.stepResultSuccess;
    const e = failed(decodeMessage(StepResult, body(rest), 'step result'));
    expect(e.code).toBe(ErrorCode.INVALID_MESSAGE);
    expect(e.issues.map((i) => i.path)).toContain('result');
  });

  it('refuses a body over the message size limit with PAYLOAD_TOO_LARGE, before parsing it', () => {
    const big = Buffer.alloc(Limits.maxMessageBytes + 1, 0x20); // all spaces: not even JSON
    const e = failed(decodeMessage(StepMessage, big, 'step message'));
    expect(e.code).toBe(ErrorCode.PAYLOAD_TOO_LARGE);
    expect(e.message).toContain(`${Limits.maxMessageBytes + 1} bytes`);
  });

  it('measures string bodies in bytes, not characters', () => {
    // 3 bytes per character in UTF-8: fewer characters than the limit, more bytes.
    const text = '€'.repeat(Math.floor(Limits.maxMessageBytes / 3) + 1);
    expect(text.length).toBeLessThan(Limits.maxMessageBytes);
    expect(failed(decodeMessage(StepMessage, text, 'step message')).code).toBe(ErrorCode.PAYLOAD_TOO_LARGE);
  });

  it('accepts a valid message of exactly the size limit', () => {
    const text = body({ ...examples.retryDue });
    const padded = text + ' '.repeat(Limits.maxMessageBytes - Buffer.byteLength(text));
    expect(Buffer.byteLength(padded)).toBe(Limits.maxMessageBytes);
    expect(decodeMessage(RetryDue, padded, 'retry').ok).toBe(true);
  });
});

describe('decodeMessage on valid messages', () => {
  it.each([
    ['a step message', StepMessage, examples.stepMessage],
    ['a success result', StepResult, examples.stepResultSuccess],
    ['a failure result', StepResult, examples.stepResultFailure],
    ['a task request', TaskRequest, examples.taskRequest],
    ['a successful task reply', TaskReply, examples.taskReplyOk],
    ['a refused task reply', TaskReply, examples.taskReplyError],
    ['a retry-due message', RetryDue, examples.retryDue],
  ] as const)('decodes %s to the value sent', (_what, schema, value) => {
    const d = decodeMessage(schema, Buffer.from(body(value)), 'message');
    if (!d.ok) throw d.error;
    expect(d.value).toEqual(value);
  });

  it('decodes a minimal task request with only the required fields', () => {
    const minimal = { protocol_version: 1, message_type: 'task_request', namespace: 'payments', name: 'x', context: {} };
    expect(decodeMessage(TaskRequest, body(minimal), 'task request').ok).toBe(true);
  });

  it('refuses a message of another type', () => {
    const e = failed(decodeMessage(StepMessage, body(examples.taskRequest), 'step message'));
    expect(e.code).toBe(ErrorCode.INVALID_MESSAGE);
    expect(e.issues.map((i) => i.path)).toContain('message_type');
  });
});

describe('step state machine', () => {
  const allowed: [StepState, StepState][] = [
    ['pending', 'enqueued'],
    ['pending', 'cancelled'],
    ['enqueued', 'complete'],
    ['enqueued', 'waiting_retry'],
    ['enqueued', 'error'],
    ['enqueued', 'cancelled'],
    ['waiting_retry', 'enqueued'],
    ['waiting_retry', 'cancelled'],
    ['enqueued', 'waiting_child'],
    ['waiting_child', 'complete'],
    ['waiting_child', 'error'],
    ['waiting_child', 'cancelled'],
  ];

  it('lets only an operator retry or resolve a failed step', () => {
    expect(canStepTransition('error', 'enqueued')).toBe(false);
    expect(canStepTransition('error', 'enqueued', 'operator')).toBe(true);
    expect(canStepTransition('error', 'complete', 'operator')).toBe(true);
    expect(canStepTransition('cancelled', 'enqueued', 'operator')).toBe(false);
    expect(canStepTransition('complete', 'enqueued', 'operator')).toBe(false);
  });

  it.each(allowed)('allows %s -> %s', (from, to) => {
    expect(canStepTransition(from, to)).toBe(true);
  });

  it('allows no other edge', () => {
    const states = Object.values(StepState);
    const forbidden = states.flatMap((from) =>
      states.filter((to) => !allowed.some(([f, t]) => f === from && t === to)).map((to) => [from, to] as const),
    );
    expect(forbidden).toContainEqual(['pending', 'complete']);
    expect(forbidden).toContainEqual(['waiting_retry', 'complete']);
    expect(forbidden).toContainEqual(['enqueued', 'pending']);
    for (const [from, to] of forbidden) expect(canStepTransition(from, to), `${from} -> ${to}`).toBe(false);
  });

  it('has no edge out of a terminal state', () => {
    expect([...TERMINAL_STEP_STATES].sort()).toEqual(['cancelled', 'complete', 'error']);
    for (const s of TERMINAL_STEP_STATES) {
      expect(STEP_TRANSITIONS[s]).toEqual([]);
      for (const to of Object.values(StepState)) expect(canStepTransition(s, to)).toBe(false);
    }
  });

  it('calls terminal exactly the states without outgoing edges', () => {
    const dead = Object.values(StepState).filter((s) => STEP_TRANSITIONS[s].length === 0);
    expect(dead.sort()).toEqual([...TERMINAL_STEP_STATES].sort());
  });
});

describe('task state machine', () => {
  it.each(['complete', 'error', 'cancelled'] as const)('allows in_progress -> %s', (to) => {
    expect(canTaskTransition('in_progress', to)).toBe(true);
  });

  it('does not allow staying in or going back to in_progress, except by an operator from error', () => {
    expect(canTaskTransition('in_progress', 'in_progress')).toBe(false);
    expect(canTaskTransition('error', 'in_progress')).toBe(false);
    expect(canTaskTransition('error', 'in_progress', 'operator')).toBe(true);
    expect(canTaskTransition('cancelled', 'in_progress', 'operator')).toBe(false);
  });

  it('has no edge out of a terminal state', () => {
    expect([...TERMINAL_TASK_STATES].sort()).toEqual(['cancelled', 'complete', 'error']);
    for (const s of TERMINAL_TASK_STATES) {
      expect(TASK_TRANSITIONS[s]).toEqual([]);
      for (const to of Object.values(TaskState)) expect(canTaskTransition(s, to), `${s} -> ${to}`).toBe(false);
    }
  });
});

describe('step_results: several results in one message', () => {
  const batch = (results: unknown, extra: Record<string, unknown> = {}) =>
    body({ protocol_version: 1, message_type: 'step_results', results, ...extra });
  const decode = (b: string) => decodeOneOrMany(StepResult, STEP_RESULTS_SHAPE, b, 'step result');

  it('a plain step_result decodes as one part whose body is the message', () => {
    const text = body(examples.stepResultSuccess);
    const d = decode(text);
    expect(d.ok && d.value.map((p) => [p.decoded.ok, p.body])).toEqual([[true, text]]);
  });

  it('each result of a step_results message decodes on its own: a bad one fails alone, naming its place and field', () => {
    const { step_name: _gone, ...broken } = examples.stepResultFailure;
    const d = decode(batch([examples.stepResultSuccess, broken, examples.stepResultFailure]));
    if (!d.ok) throw d.error;
    expect(d.value.map((p) => p.decoded.ok)).toEqual([true, false, true]);
    expect(failed(d.value[1]!.decoded).message).toMatch(/^step result 2 of 3 in a step_results message does not match its schema: step_name: /);
    // The failing part's own JSON, to park it without its siblings.
    expect(JSON.parse(d.value[1]!.body)).toEqual(broken);
    expect(StepResults.safeParse(JSON.parse(batch([examples.stepResultSuccess, examples.stepResultFailure]))).success).toBe(true);
  });

  it('encodeBatch writes the envelope around serialized results: it is what a step_results message is', () => {
    const items = [examples.stepResultSuccess, examples.stepResultFailure];
    const text = encodeBatch(STEP_RESULTS_SHAPE, items.map((r) => JSON.stringify(r)));
    expect(JSON.parse(text)).toEqual({ protocol_version: 1, message_type: 'step_results', results: items });
    expect(StepResults.safeParse(JSON.parse(text)).success).toBe(true);
    const d = decode(text);
    expect(d.ok && d.value.map((p) => p.decoded.ok && p.decoded.value)).toEqual(items);
  });

  it('a broken envelope fails whole: not an array, empty, too many, unknown version, no version', () => {
    expect(failed(decode(batch({}))).message).toBe('step_results message: results must be an array of 1 to 500 step results');
    expect(failed(decode(batch([]))).message).toBe('step_results message: results must be an array of 1 to 500 step results; it has 0');
    const many = Array.from({ length: Limits.maxResultsPerMessage + 1 }, () => examples.stepResultSuccess);
    expect(failed(decode(batch(many))).message).toMatch(/it has 501$/);
    const v2 = failed(decode(batch([examples.stepResultSuccess], { protocol_version: 2 })));
    expect([v2.code, v2.message]).toEqual([ErrorCode.UNSUPPORTED_PROTOCOL_VERSION, 'step_results message has protocol_version 2; supported: 1']);
    expect(failed(decode(body({ message_type: 'step_results', results: [examples.stepResultSuccess] }))).message).toBe('step_results message has no protocol_version');
    expect(failed(decode('[1]')).message).toBe('step result must be a JSON object');
  });
});
