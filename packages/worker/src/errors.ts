import { ErrorCode, HANDLER_ERROR_CODE_PATTERN, type StepError } from '@tasker/protocol';

/** Code of a {@link PermanentError} that sets none. */
export const PERMANENT_ERROR_CODE = 'PERMANENT_ERROR';
/** Code of a {@link RetryableError} that sets none. */
export const RETRYABLE_ERROR_CODE = 'RETRYABLE_ERROR';

/** Longest error message put in a step result; longer ones are cut (the full one is logged). */
export const MAX_ERROR_MESSAGE_CHARS = 8 * 1024;
/** Largest `details` put in a step result, as JSON; larger ones are dropped (and logged). */
export const MAX_ERROR_DETAILS_BYTES = 64 * 1024;

/**
 * Marks the worker's own error classes so they are recognised even when a handler imports
 * another copy of this package (where `instanceof` would fail).
 */
const KIND: unique symbol = Symbol.for('@tasker/worker.errorKind');

export interface PermanentErrorOptions {
  /** Your own code, upper snake case (`MISSING_FIELDS`). @defaultValue 'PERMANENT_ERROR' */
  code?: string;
  /** Any JSON value that helps whoever reads the failed step. */
  details?: unknown;
  cause?: unknown;
}

/** Thrown by a handler: the step fails now, whatever attempts are left. */
export class PermanentError extends Error {
  override readonly name = 'PermanentError';
  readonly [KIND] = 'permanent' as const;
  readonly code: string;
  readonly details: unknown;

  constructor(message: string, options: PermanentErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = options.code ?? PERMANENT_ERROR_CODE;
    this.details = options.details;
  }
}

export interface RetryableErrorOptions {
  /** Your own code, upper snake case (`GATEWAY_BUSY`). @defaultValue 'RETRYABLE_ERROR' */
  code?: string;
  /** The delay before the next attempt, instead of the step's backoff (capped by its policy). @defaultValue the policy's backoff */
  retryAfterMs?: number;
  details?: unknown;
  cause?: unknown;
}

/** Thrown by a handler: the attempt failed; the step is retried while attempts remain. */
export class RetryableError extends Error {
  override readonly name = 'RetryableError';
  readonly [KIND] = 'retryable' as const;
  readonly code: string;
  readonly retryAfterMs: number | null;
  readonly details: unknown;

  constructor(message: string, options: RetryableErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = options.code ?? RETRYABLE_ERROR_CODE;
    this.retryAfterMs = options.retryAfterMs ?? null;
    this.details = options.details;
  }
}

export interface MappedError {
  error: StepError;
  /** What had to be changed to fit the protocol (bad code, oversized details...), for the log. */
  notes: string[];
}

/**
 * Maps whatever a handler threw to the `error` of a step result: a {@link PermanentError}
 * or {@link RetryableError} keeps its kind, code, delay and details; anything else is a
 * retryable `HANDLER_ERROR` carrying the message.
 */
export function toStepError(thrown: unknown): MappedError {
  const notes: string[] = [];
  const kind = errorKind(thrown);
  if (kind === 'permanent' || kind === 'retryable') {
    const e = thrown as PermanentError | RetryableError;
    const fallback = kind === 'permanent' ? PERMANENT_ERROR_CODE : RETRYABLE_ERROR_CODE;
    let code = e.code;
    if (typeof code !== 'string' || !HANDLER_ERROR_CODE_PATTERN.test(code)) {
      notes.push(`code ${JSON.stringify(code)} is not upper snake case (≤ 64 characters); sent as ${fallback}`);
      code = fallback;
    }
    const error: StepError = { kind, code, message: messageText(e.message, notes) };
    if (kind === 'retryable') error.retry_after_ms = retryAfter((e as RetryableError).retryAfterMs, notes);
    const details = detailsJson(e.details, notes);
    if (details !== undefined) error.details = details;
    return { error, notes };
  }
  return {
    error: { kind: 'retryable', code: ErrorCode.HANDLER_ERROR, message: messageText(describe(thrown), notes) },
    notes,
  };
}

function errorKind(thrown: unknown): 'permanent' | 'retryable' | null {
  if (typeof thrown !== 'object' || thrown === null) return null;
  const kind = (thrown as Record<symbol, unknown>)[KIND];
  return kind === 'permanent' || kind === 'retryable' ? kind : null;
}

/** `TypeError: x is undefined`; a plain `Error` keeps its message alone. */
function describe(thrown: unknown): string {
  if (thrown instanceof Error) {
    return thrown.name && thrown.name !== 'Error' ? `${thrown.name}: ${thrown.message}` : thrown.message;
  }
  if (typeof thrown === 'string') return thrown;
  try {
    return `non-Error value thrown: ${JSON.stringify(thrown) ?? String(thrown)}`;
  } catch {
    return `non-Error value thrown: ${String(thrown)}`;
  }
}

function messageText(message: unknown, notes: string[]): string {
  const text = typeof message === 'string' ? message : String(message);
  if (text.length <= MAX_ERROR_MESSAGE_CHARS) return text;
  notes.push(`message of ${text.length} characters cut to ${MAX_ERROR_MESSAGE_CHARS}`);
  return `${text.slice(0, MAX_ERROR_MESSAGE_CHARS)}…`;
}

function retryAfter(ms: unknown, notes: string[]): number | null {
  if (ms === null || ms === undefined) return null;
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
    notes.push(`retryAfterMs ${String(ms)} is not a non-negative number; ignored`);
    return null;
  }
  return Math.round(ms);
}

/** `details` as the JSON that travels, or undefined when absent, not JSON or too large. */
function detailsJson(details: unknown, notes: string[]): StepError['details'] {
  if (details === undefined) return undefined;
  let json: string | undefined;
  try {
    json = JSON.stringify(details);
  } catch (err) {
    notes.push(`details dropped: not JSON-serializable (${(err as Error).message})`);
    return undefined;
  }
  if (json === undefined) return undefined;
  const bytes = Buffer.byteLength(json);
  if (bytes > MAX_ERROR_DETAILS_BYTES) {
    notes.push(`details dropped: ${bytes} bytes, more than ${MAX_ERROR_DETAILS_BYTES}`);
    return undefined;
  }
  return JSON.parse(json) as StepError['details'];
}
