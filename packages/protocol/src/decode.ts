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
  const parsed = schema.safeParse(raw);
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

/** Byte size of a value serialized as JSON. */
export function jsonByteLength(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? 'null');
}
