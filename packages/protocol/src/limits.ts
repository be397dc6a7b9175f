/**
 * Size limits, enforced where a payload enters the system (task creation, step results).
 * They keep one message from filling the broker or a row from bloating Postgres.
 */
export const Limits = {
  /** Largest task context, serialized as JSON. @defaultValue 1 MiB */
  maxContextBytes: 1024 * 1024,
  /** Largest step result, serialized as JSON. @defaultValue 1 MiB */
  maxResultBytes: 1024 * 1024,
  /** Largest message of any kind on a Tasker queue. @defaultValue 4 MiB */
  maxMessageBytes: 4 * 1024 * 1024,
  /** Most step results in one `step_results` message. @defaultValue 500 */
  maxResultsPerMessage: 500,
  /** Most step messages in one `steps` message. @defaultValue 100 */
  maxStepsPerMessage: 100,
  /** Most task requests in one `task_requests` message (and replies in one `task_replies`). @defaultValue 500 */
  maxRequestsPerMessage: 500,
  /** Deepest nesting of arrays and objects in any JSON payload. @defaultValue 64 */
  maxJsonDepth: 64,
  /** Longest `wait_ms` of `GET /v1/tasks/:id` (a caller waiting longer asks again). @defaultValue 60 s */
  maxTaskWaitMs: 60_000,
} as const;
