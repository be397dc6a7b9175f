import { z } from 'zod';
import { ErrorCode, TaskerError, type FieldIssue } from './errors.ts';
import { Limits } from './limits.ts';
import { PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS } from './version.ts';

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
  const raw = parseObject(body, what);
  if (!raw.ok) return raw;
  return decodeValue(schema, raw.value, what, options);
}

/** Size (against `Limits.maxMessageBytes`), then JSON, then "an object": the checks before any field is read. */
function parseObject(body: Buffer | string, what: string): Decoded<Record<string, unknown>> {
  const size = typeof body === 'string' ? Buffer.byteLength(body) : body.length;
  if (size > Limits.maxMessageBytes) {
    return {
      ok: false,
      error: new TaskerError(ErrorCode.PAYLOAD_TOO_LARGE, `${what} is ${size} bytes; the limit is ${Limits.maxMessageBytes} bytes`),
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
  return { ok: true, value: raw as Record<string, unknown> };
}

function versionProblem(raw: Record<string, unknown>, what: string): TaskerError | null {
  const version = raw['protocol_version'];
  if (typeof version === 'number' && !SUPPORTED_PROTOCOL_VERSIONS.includes(version)) {
    return new TaskerError(
      ErrorCode.UNSUPPORTED_PROTOCOL_VERSION,
      `${what} has protocol_version ${version}; supported: ${SUPPORTED_PROTOCOL_VERSIONS.join(', ')}`,
    );
  }
  return null;
}

/** The checks of {@link decodeMessage} after parsing: depth and NUL, protocol version, schema. */
export function decodeValue<S extends z.ZodType>(
  schema: S,
  raw: unknown,
  what: string,
  options: { allowNul?: boolean } = {},
): Decoded<z.infer<S>> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { ok: false, error: new TaskerError(ErrorCode.INVALID_MESSAGE, `${what} must be a JSON object`) };
  }
  const problem = jsonValueProblem(raw);
  if (problem && !(options.allowNul && /NUL/.test(problem.message))) {
    return { ok: false, error: new TaskerError(ErrorCode.INVALID_MESSAGE, `${what}: ${problem.path} ${problem.message}`, [problem]) };
  }
  const unsupported = versionProblem(raw as Record<string, unknown>, what);
  if (unsupported) return { ok: false, error: unsupported };
  let parsed: z.ZodSafeParseResult<z.infer<S>>;
  try {
    parsed = compiledSchema(schema).safeParse(raw) as z.ZodSafeParseResult<z.infer<S>>;
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

const compiledSchemas = new WeakMap<z.ZodType, z.ZodType>();

/**
 * The schema as zod compiles it (`z.compile`): a parser generated for its shape, with the
 * schema's own parser behind it for input that fails, so what passes and every error stay
 * the same. Compiled once per schema, on first use. A step message was checked in 1.0 µs
 * instead of 3.4, a step result in 0.7 instead of 1.9 (`npx tsx bench/src/decode-cost.ts`),
 * once for every step a worker runs and every result the orchestrator applies. A schema
 * zod cannot compile comes back as it is. `decodeMessage` and `decodeValue` use it; so may
 * any other caller that checks input against one schema many times.
 */
export function compiledSchema<S extends z.ZodType>(schema: S): S {
  let c = compiledSchemas.get(schema);
  if (c === undefined) {
    c = z.compile(schema);
    compiledSchemas.set(schema, c);
  }
  return c as S;
}

/** One item of a message that may carry several: its decoding, and its own JSON (to park it alone). */
export interface DecodedPart<T> {
  decoded: Decoded<T>;
  body: string;
  /**
   * Where it was, for reasons: `step message 2 of 3 in a steps message`; null when the
   * message was the item itself (not a batch), which is then parked whole.
   */
  place: string | null;
}

/** How a message carrying several items looks: `{protocol_version, message_type, <field>: [...]}`. */
export interface BatchShape {
  messageType: string;
  field: string;
  max: number;
}

/**
 * The body of a message carrying several items in `shape` (`step_results`, `steps`), written
 * around items already serialized, so that none is serialized twice. The sender keeps within
 * `shape.max` items and the message limit.
 */
export function encodeBatch(shape: BatchShape, items: readonly string[]): string {
  const head = JSON.stringify({ protocol_version: PROTOCOL_VERSION, message_type: shape.messageType });
  return `${head.slice(0, -1)},${JSON.stringify(shape.field)}:[${items.join(',')}]}`;
}

/**
 * Decodes a message that is either one item (checked as {@link decodeMessage} does) or a
 * batch of them (`shape`). A batch whose envelope is wrong (not an array, empty, too many,
 * an unknown protocol version) fails as a whole; otherwise each item is decoded on its own,
 * so one bad item is refused alone and its siblings still go through.
 */
export function decodeOneOrMany<S extends z.ZodType>(
  schema: S,
  shape: BatchShape,
  body: Buffer | string,
  what: string,
  options: { allowNul?: boolean } = {},
): Decoded<Array<DecodedPart<z.infer<S>>>> {
  const raw = parseObject(body, what);
  if (!raw.ok) return raw;
  if (raw.value['message_type'] !== shape.messageType) {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    return { ok: true, value: [{ decoded: decodeValue(schema, raw.value, what, options), body: text, place: null }] };
  }
  const envelope = `${shape.messageType} message`;
  const unsupported = versionProblem(raw.value, envelope);
  if (unsupported) return { ok: false, error: unsupported };
  if (raw.value['protocol_version'] === undefined) {
    return { ok: false, error: new TaskerError(ErrorCode.INVALID_MESSAGE, `${envelope} has no protocol_version`) };
  }
  const items = raw.value[shape.field];
  if (!Array.isArray(items) || items.length === 0 || items.length > shape.max) {
    return {
      ok: false,
      error: new TaskerError(
        ErrorCode.INVALID_MESSAGE,
        `${envelope}: ${shape.field} must be an array of 1 to ${shape.max} ${what}s${Array.isArray(items) ? `; it has ${items.length}` : ''}`,
      ),
    };
  }
  return {
    ok: true,
    value: items.map((item, i) => ({
      decoded: decodeValue(schema, item, `${what} ${i + 1} of ${items.length} in a ${envelope}`, options),
      place: `${what} ${i + 1} of ${items.length} in a ${envelope}`,
      // Serialized only when asked for (an item parked alone), not for every item.
      get body() {
        return JSON.stringify(item) ?? 'null';
      },
    })),
  };
}

/**
 * The first problem that keeps a JSON value out of Tasker: nesting deeper than
 * `Limits.maxJsonDepth`, or a NUL character (U+0000, which PostgreSQL cannot store) in a
 * string or a key. Iterative, so a hostile payload cannot exhaust the stack. Returns the
 * path and the problem, or null.
 */
export function jsonValueProblem(value: unknown, maxDepth: number = Limits.maxJsonDepth): FieldIssue | null {
  // Every message, result and context is walked, so the walk keeps two parallel stacks and
  // no path: a frame object per node was most of its cost. The path is found by a second
  // walk, only for a value that has a problem.
  const values: unknown[] = [value];
  const depths: number[] = [0];
  while (values.length > 0) {
    const v = values.pop();
    const depth = depths.pop()!;
    if (typeof v === 'string') {
      if (v.includes('\u0000')) return locateProblem(value, maxDepth);
      continue;
    }
    if (v === null || typeof v !== 'object') continue;
    if (depth >= maxDepth) return locateProblem(value, maxDepth);
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        values.push(v[i]);
        depths.push(depth + 1);
      }
    } else {
      for (const k in v) {
        if (!Object.hasOwn(v, k)) continue;
        if (k.includes('\u0000')) return locateProblem(value, maxDepth);
        values.push((v as Record<string, unknown>)[k]);
        depths.push(depth + 1);
      }
    }
  }
  return null;
}

/** The problem {@link jsonValueProblem} found, with its path: the same checks, depth first. */
function locateProblem(root: unknown, maxDepth: number): FieldIssue {
  const visit = (v: unknown, path: string[]): FieldIssue | null => {
    const at = () => (path.length > 0 ? path.join('.') : '(root)');
    if (typeof v === 'string') {
      return v.includes('\u0000') ? { path: at(), message: 'contains the NUL character (\\u0000), which cannot be stored' } : null;
    }
    if (v === null || typeof v !== 'object') return null;
    if (path.length >= maxDepth) return { path: at(), message: `is nested deeper than ${maxDepth} levels` };
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const found = visit(v[i], [...path, String(i)]);
        if (found) return found;
      }
      return null;
    }
    for (const k in v) {
      if (!Object.hasOwn(v, k)) continue;
      if (k.includes('\u0000')) return { path: at(), message: 'has a key containing the NUL character (\\u0000)' };
      const found = visit((v as Record<string, unknown>)[k], [...path, k]);
      if (found) return found;
    }
    return null;
  };
  // Found by the first walk, so found again (the recursion is bounded by maxDepth).
  return visit(root, [])!;
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
