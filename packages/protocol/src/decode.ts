import type { z } from 'zod';
import { ErrorCode, TaskerError, type FieldIssue } from './errors.ts';
import { Limits } from './limits.ts';
import { SUPPORTED_PROTOCOL_VERSIONS } from './version.ts';

/** Turns zod issues into `{path, message}` pairs that name every failing field. */
export function zodIssues(error: z.ZodError): FieldIssue[] {
  return error.issues.map((i) => ({
    path: i.path.length > 0 ? i.path.map(String).join('.') : '(root)',
    message: i.message,
  }));
}

export type Decoded<T> = { ok: true; value: T } | { ok: false; error: TaskerError };

/**
 * Decodes one message body: size, JSON, protocol version, schema, in that order. Never
 * throws: a receiver parks what fails, with the returned error as the reason.
 */
export function decodeMessage<S extends z.ZodType>(
  schema: S,
  body: Buffer | string,
  what: string,
  options: { allowNul?: boolean } = {},
): Decoded<z.infer<S>> {
  const size = typeof body === 'string' ? Buffer.byteLength(body) : body.length;
  if (size > Limits.maxMessageBytes) {
    return {
      ok: false,
      error: new TaskerError(
        ErrorCode.PAYLOAD_TOO_LARGE,
        `${what} is ${size} bytes; the limit is ${Limits.maxMessageBytes} bytes`,
      ),
    };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch (e) {
    return {
      ok: false,
      error: new TaskerError(ErrorCode.INVALID_MESSAGE, `${what} is not valid JSON: ${(e as Error).message}`),
    };
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { ok: false, error: new TaskerError(ErrorCode.INVALID_MESSAGE, `${what} must be a JSON object`) };
  }
  const problem = jsonValueProblem(raw);
  if (problem && !(options.allowNul && /NUL/.test(problem.message))) {
    return { ok: false, error: new TaskerError(ErrorCode.INVALID_MESSAGE, `${what}: ${problem.path} ${problem.message}`, [problem]) };
  }
  const version = (raw as Record<string, unknown>)['protocol_version'];
  if (typeof version === 'number' && !SUPPORTED_PROTOCOL_VERSIONS.includes(version)) {
    return {
      ok: false,
      error: new TaskerError(
        ErrorCode.UNSUPPORTED_PROTOCOL_VERSION,
        `${what} has protocol_version ${version}; supported: ${SUPPORTED_PROTOCOL_VERSIONS.join(', ')}`,
      ),
    };
  }
  let parsed: z.ZodSafeParseResult<z.infer<S>>;
  try {
    parsed = schema.safeParse(raw) as z.ZodSafeParseResult<z.infer<S>>;
  } catch (e) {
    // Defence in depth: the depth check above should make this unreachable.
    return { ok: false, error: new TaskerError(ErrorCode.INVALID_MESSAGE, `${what} could not be validated: ${(e as Error).message}`) };
  }
  if (!parsed.success) {
    const issues = zodIssues(parsed.error);
    return {
      ok: false,
      error: new TaskerError(
        ErrorCode.INVALID_MESSAGE,
        `${what} does not match its schema: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
        issues,
      ),
    };
  }
  return { ok: true, value: parsed.data };
}

/**
 * The first problem that keeps a JSON value out of Tasker: nesting deeper than
 * `Limits.maxJsonDepth`, or a NUL character (U+0000, which PostgreSQL cannot store) in a
 * string or a key. Iterative, so a hostile payload cannot exhaust the stack. Returns the
 * path and the problem, or null.
 */
export function jsonValueProblem(value: unknown, maxDepth: number = Limits.maxJsonDepth): FieldIssue | null {
  const stack: Array<{ v: unknown; path: string; depth: number }> = [{ v: value, path: '', depth: 0 }];
  while (stack.length > 0) {
    const { v, path, depth } = stack.pop()!;
    if (typeof v === 'string') {
      if (v.includes('\u0000')) return { path: path || '(root)', message: 'contains the NUL character (\\u0000), which cannot be stored' };
      continue;
    }
    if (v === null || typeof v !== 'object') continue;
    if (depth >= maxDepth) return { path: path || '(root)', message: `is nested deeper than ${maxDepth} levels` };
    if (Array.isArray(v)) {
      v.forEach((x, i) => stack.push({ v: x, path: path ? `${path}.${i}` : String(i), depth: depth + 1 }));
    } else {
      for (const [k, x] of Object.entries(v)) {
        if (k.includes('\u0000')) return { path: path || '(root)', message: 'has a key containing the NUL character (\\u0000)' };
        stack.push({ v: x, path: path ? `${path}.${k}` : k, depth: depth + 1 });
      }
    }
  }
  return null;
}

/** A copy with every NUL character in strings and keys replaced by U+FFFD (for error texts, which must be stored). */
export function replaceNul<T>(value: T): T {
  if (typeof value === 'string') return value.replaceAll('\u0000', '\ufffd') as T;
  if (Array.isArray(value)) return value.map(replaceNul) as T;
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k.replaceAll('\u0000', '\ufffd'), replaceNul(v)])) as T;
  }
  return value;
}

/** Byte size of a value serialized as JSON. */
export function jsonByteLength(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? 'null');
}
