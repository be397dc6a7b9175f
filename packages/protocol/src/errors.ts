/**
 * Error codes shared by every language. They are part of the protocol: a code, once
 * published, keeps its meaning. Handlers may also use their own codes (any string
 * matching {@link HANDLER_ERROR_CODE_PATTERN}) for business errors, e.g. `MISSING_FIELDS`.
 */
export const ErrorCode = {
  /** A message could not be parsed as JSON or does not match its schema. */
  INVALID_MESSAGE: 'INVALID_MESSAGE',
  /** `protocol_version` is not one this receiver understands. */
  UNSUPPORTED_PROTOCOL_VERSION: 'UNSUPPORTED_PROTOCOL_VERSION',
  /** A payload (context, result, request) is larger than the documented limit. */
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  /** A template file is not valid (bad YAML, missing fields, cycles, unknown dependencies...). */
  TEMPLATE_INVALID: 'TEMPLATE_INVALID',
  /** A template uses a step type this version does not run (decision, batchable, ...). */
  UNSUPPORTED_STEP_TYPE: 'UNSUPPORTED_STEP_TYPE',
  /** No template is registered for the namespace at all. */
  UNKNOWN_NAMESPACE: 'UNKNOWN_NAMESPACE',
  /** The namespace exists but has no template with that name. */
  UNKNOWN_TEMPLATE: 'UNKNOWN_TEMPLATE',
  /** The template exists but not in the requested version. */
  UNKNOWN_VERSION: 'UNKNOWN_VERSION',
  /** The task context does not satisfy the template's `input_schema`. */
  INVALID_CONTEXT: 'INVALID_CONTEXT',
  /** A task request came without `reply_to` where a reply was required. */
  MISSING_REPLY_TO: 'MISSING_REPLY_TO',
  /** No task with that id. */
  UNKNOWN_TASK: 'UNKNOWN_TASK',
  /** No step with that id (or it does not belong to the task named). */
  UNKNOWN_STEP: 'UNKNOWN_STEP',
  /** A result for an attempt that is not the step's current one, or for a finished step. */
  STALE_RESULT: 'STALE_RESULT',
  /** The worker has no handler for the step's `handler.callable`. */
  HANDLER_NOT_FOUND: 'HANDLER_NOT_FOUND',
  /** The handler did not finish within the step's `timeout_seconds`. */
  HANDLER_TIMEOUT: 'HANDLER_TIMEOUT',
  /** The handler threw something that is not a Tasker error (treated as retryable). */
  HANDLER_ERROR: 'HANDLER_ERROR',
  /** The worker is shutting down and gave the step back. */
  WORKER_SHUTDOWN: 'WORKER_SHUTDOWN',
  /** The step ran out of attempts; the last error is in `cause`. */
  RETRIES_EXHAUSTED: 'RETRIES_EXHAUSTED',
  /** The broker dead-lettered the step message after its delivery limit: workers took it and never answered (crashed). */
  POISON_MESSAGE: 'POISON_MESSAGE',
  /** The operation does not fit the task's or step's current state (e.g. cancelling a finished task). */
  INVALID_STATE: 'INVALID_STATE',
  /** No valid API token was presented. */
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  /** The API token may not do this action in this namespace. */
  FORBIDDEN: 'FORBIDDEN',
  /**
   * A message came from a broker user that may not send it: a step result for namespace X
   * whose validated AMQP `user_id` is not X's worker user (nor an orchestrator's), or a
   * child-task outcome not sent by an orchestrator. Parked, never applied.
   */
  FORBIDDEN_ORIGIN: 'FORBIDDEN_ORIGIN',
  /** A task a step waited for ended in error. */
  CHILD_TASK_FAILED: 'CHILD_TASK_FAILED',
  /** A task a step waited for was cancelled. */
  CHILD_TASK_CANCELLED: 'CHILD_TASK_CANCELLED',
  /** Something failed inside Tasker itself (details are in the logs, not in the reply). */
  INTERNAL: 'INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Codes a handler may set on its own errors: upper snake case, up to 64 characters. */
export const HANDLER_ERROR_CODE_PATTERN = /^[A-Z][A-Z0-9_]{0,63}$/;

/** One failing field, as reported by schema validation: `path` is a JSON pointer-ish dotted path. */
export interface FieldIssue {
  path: string;
  message: string;
}

/**
 * The error type Tasker code throws for refusals a caller should see (unknown template,
 * invalid context...). `issues` names every failing field where there are several.
 */
export class TaskerError extends Error {
  override readonly name = 'TaskerError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly issues: FieldIssue[] = [],
  ) {
    super(message);
  }

  toJSON(): { code: ErrorCode; message: string; issues?: FieldIssue[] } {
    return this.issues.length > 0
      ? { code: this.code, message: this.message, issues: this.issues }
      : { code: this.code, message: this.message };
  }
}
