import { TaskerError, TemplateError, type FieldIssue } from '@tasker/protocol';
import { HttpError } from '@tasker/client';

/**
 * Exit codes a script can rely on. They are part of the CLI's contract: documented in
 * `tasker --help` and the package README, and never reused for another meaning.
 */
export const ExitCode = {
  /** The command did what was asked and the outcome is a success. */
  OK: 0,
  /** The command ran, but the outcome is a failure: templates with errors; with `--wait`, a task that ended in error or was cancelled (or did not finish within `--timeout`). */
  FAILED: 1,
  /** The command line is wrong: unknown command or option, missing argument, unreadable `@file`, JSON that does not parse. */
  USAGE: 2,
  /** The task, step, namespace, template or version does not exist (HTTP 404). */
  NOT_FOUND: 3,
  /** The API refused the token: missing or unknown (401), or not allowed for that namespace or action (403). */
  AUTH: 4,
  /** The API, PostgreSQL or RabbitMQ could not be reached, or failed inside (5xx, unexpected answer). */
  UNAVAILABLE: 5,
  /** The request was refused as invalid (HTTP 400, 413) or does not fit the current state (409). */
  INVALID: 6,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** The table shown by `tasker --help` (the README carries the same). */
export const EXIT_CODES_HELP = `Exit codes:
  0  success
  1  the command ran but the outcome is a failure: template errors; with --wait,
     the task ended in error or was cancelled, or did not finish within --timeout
  2  usage error: unknown command or option, missing argument, bad JSON or @file
  3  not found: task, step, namespace, template or version (HTTP 404)
  4  refused by auth: missing or unknown token (401), namespace or action not
     allowed for the token (403)
  5  the API, PostgreSQL or RabbitMQ could not be reached, or failed (5xx)
  6  the request is invalid (HTTP 400/413) or does not fit the state (409)`;

/** One line for each command's help. */
export const EXIT_CODES_LINE =
  'Exit codes: 0 ok, 1 failed outcome, 2 usage, 3 not found, 4 auth refused, 5 unreachable/internal, 6 invalid request (see tasker --help).';

/** An error the CLI itself raises, with the exit code it means. */
export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
    readonly code: string = exitCode === ExitCode.USAGE ? 'USAGE' : 'FAILED',
    readonly issues: FieldIssue[] = [],
    readonly hint?: string,
  ) {
    super(message);
  }
}

/** What a failure is reported as: exit code, code, message, the fields at fault. */
export interface Failure {
  exitCode: ExitCode;
  code: string;
  message: string;
  issues: FieldIssue[];
  status?: number;
  hint?: string;
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET']);

function networkCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && NETWORK_CODES.has(code)) return code;
    // AggregateError (happy eyeballs): any of its errors.
    const inner = (e as { errors?: unknown[] }).errors;
    if (Array.isArray(inner)) for (const x of inner) if (networkCode(x)) return networkCode(x);
  }
  return undefined;
}

/** Maps anything thrown by a command to what the CLI reports and exits with. */
export function describeFailure(err: unknown, apiUrl: string): Failure {
  if (err instanceof CliError) {
    return { exitCode: err.exitCode, code: err.code, message: err.message, issues: err.issues, ...(err.hint ? { hint: err.hint } : {}) };
  }
  if (err instanceof HttpError) {
    const base = { code: err.code, message: err.message, issues: err.issues, status: err.status };
    if (err.status === 401) {
      return { ...base, exitCode: ExitCode.AUTH, hint: 'give a valid API token with --token or TASKER_API_TOKEN' };
    }
    if (err.status === 403) {
      return { ...base, exitCode: ExitCode.AUTH, hint: 'the token is valid but not allowed this namespace or action' };
    }
    if (err.status === 404) return { ...base, exitCode: ExitCode.NOT_FOUND };
    if (err.status >= 400 && err.status < 500) return { ...base, exitCode: ExitCode.INVALID };
    // 5xx, or a 2xx whose body is not what the contract says.
    return { ...base, exitCode: ExitCode.UNAVAILABLE };
  }
  if (err instanceof TemplateError) {
    return { exitCode: ExitCode.FAILED, code: err.code, message: err.message, issues: err.issues };
  }
  if (err instanceof TaskerError) {
    // Refused here, before anything was sent (the client validates requests).
    const exitCode = err.code.startsWith('UNKNOWN_') ? ExitCode.NOT_FOUND : err.code === 'INTERNAL' ? ExitCode.UNAVAILABLE : ExitCode.INVALID;
    return { exitCode, code: err.code, message: err.message, issues: err.issues };
  }
  const net = networkCode(err);
  if (net) {
    const isFetch = err instanceof TypeError;
    return {
      exitCode: ExitCode.UNAVAILABLE,
      code: 'UNREACHABLE',
      message: isFetch ? `cannot reach the Tasker API at ${apiUrl} (${net})` : `cannot reach a service (${net}): ${(err as Error).message}`,
      issues: [],
      hint: isFetch ? 'is the orchestrator running? set --url or TASKER_API_URL' : 'check TASKER_DATABASE_URL / TASKER_AMQP_URL and that the services run',
    };
  }
  if (err instanceof TypeError && err.message === 'fetch failed') {
    const cause = (err as { cause?: { message?: string } }).cause?.message ?? 'no cause given';
    return { exitCode: ExitCode.UNAVAILABLE, code: 'UNREACHABLE', message: `cannot reach the Tasker API at ${apiUrl}: ${cause}`, issues: [] };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { exitCode: ExitCode.UNAVAILABLE, code: 'INTERNAL', message, issues: [] };
}
