/**
 * The documented limits (docs/limits.md) at their exact boundaries. What happens to an
 * oversized or too-deep message on each path (HTTP, task request, result, step message) is
 * tested end to end in test/core/bad-input.test.ts; this file only pins the edges and the
 * numbers the documentation states.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ErrorCode, Limits, decodeMessage, jsonValueProblem } from '../src/index.ts';
import { z } from 'zod';

const nestedArrays = (levels: number): unknown => {
  let v: unknown = [];
  for (let i = 1; i < levels; i++) v = [v];
  return v;
};

describe('limits', () => {
  it('are the figures docs/limits.md states', () => {
    expect(Limits).toEqual({ maxContextBytes: 1_048_576, maxResultBytes: 1_048_576, maxMessageBytes: 4_194_304, maxResultsPerMessage: 500, maxStepsPerMessage: 100, maxRequestsPerMessage: 500, maxJsonDepth: 64, maxTaskWaitMs: 60_000 });
    const doc = readFileSync(new URL('../../../docs/limits.md', import.meta.url), 'utf8');
    for (const figure of ['1 MiB (1,048,576 bytes)', '4 MiB (4,194,304 bytes)', '500 results', '100 steps', '500 requests', '64 levels', '60 s (60,000 ms)']) expect(doc).toContain(figure);
  });

  it('nesting: 64 levels of arrays and objects pass, the 65th is refused naming the limit and the path', () => {
    expect(jsonValueProblem(nestedArrays(64))).toBeNull();
    expect(jsonValueProblem(nestedArrays(65))).toEqual({ path: '0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0', message: 'is nested deeper than 64 levels' });
  });

  it('NUL characters are refused with the path of the string, or of the object whose key holds one', () => {
    expect(jsonValueProblem({ a: [1, { b: 'x\u0000y' }], c: 'fine' })).toEqual({
      path: 'a.1.b',
      message: 'contains the NUL character (\\u0000), which cannot be stored',
    });
    expect(jsonValueProblem({ a: { ['k\u0000']: 1 } })).toEqual({ path: 'a', message: 'has a key containing the NUL character (\\u0000)' });
    expect(jsonValueProblem('\u0000')?.path).toBe('(root)');
    expect(jsonValueProblem({ a: [{ b: 'no NUL here' }], n: 1, t: true, z: null })).toBeNull();
  });

  it('message size: 4 MiB exactly is read, one byte more is PAYLOAD_TOO_LARGE with both sizes', () => {
    const pad = (total: number) => `{"x":"${'a'.repeat(total - 8)}"}`;
    expect(Buffer.byteLength(pad(Limits.maxMessageBytes))).toBe(Limits.maxMessageBytes);
    expect(decodeMessage(z.object({ x: z.string() }), pad(Limits.maxMessageBytes), 'test message').ok).toBe(true);
    const over = decodeMessage(z.object({ x: z.string() }), pad(Limits.maxMessageBytes + 1), 'test message');
    expect(over.ok).toBe(false);
    expect(!over.ok && over.error.code).toBe(ErrorCode.PAYLOAD_TOO_LARGE);
    expect(!over.ok && over.error.message).toBe('test message is 4194305 bytes; the limit is 4194304 bytes');
  });
});
