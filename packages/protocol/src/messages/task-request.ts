import { z } from 'zod';
import { Limits } from '../limits.ts';
import { batchMessage, errorCodeString, id, identifier, isoTime, jsonObject, namespaceName, protocolVersion } from './common.ts';

/** The requester's id for one request of a `task_requests` message, echoed by its reply. */
export const requestId = z
  .string()
  .min(1)
  .max(255)
  .describe('In a task_requests message (required there): your id for this request, echoed by its reply.');

/**
 * Service (or handler) → orchestrator, to the task-requests exchange with the namespace as
 * routing key. Set the AMQP `reply_to` and `correlation_id` properties to get a
 * {@link TaskReply}.
 */
export const TaskRequest = z
  .object({
    protocol_version: protocolVersion,
    message_type: z.literal('task_request'),
    namespace: namespaceName,
    name: identifier,
    version: z.string().max(100).optional().describe('Exact template version; omitted: the newest registered.'),
    context: jsonObject.describe("The task's input, checked against the template's input_schema."),
    idempotency_key: z
      .string()
      .min(1)
      .max(255)
      .optional()
      .describe('Unique per namespace: asking again returns the existing task.'),
    correlation_id: z.string().min(1).max(255).optional().describe('Generated when absent.'),
    parent: z
      .object({ task_id: id, step_id: id.optional() })
      .optional()
      .describe('The task (and step) that created this one, for cross-namespace coordination.'),
    requested_by: z.string().max(200).optional(),
    request_id: requestId.optional(),
  })
  .describe('Ask for a task to be created.');
export type TaskRequest = z.infer<typeof TaskRequest>;

export const TaskSummary = z.object({
  id,
  namespace: namespaceName,
  name: identifier,
  version: z.string(),
  state: z.enum(['in_progress', 'complete', 'error', 'cancelled']),
  correlation_id: z.string(),
  idempotency_key: z.string().nullable(),
  parent_task_id: z.string().nullable(),
  parent_step_id: z.string().nullable(),
  created_at: isoTime,
});
export type TaskSummary = z.infer<typeof TaskSummary>;

export const ErrorBody = z.object({
  code: errorCodeString,
  message: z.string(),
  issues: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
});
export type ErrorBody = z.infer<typeof ErrorBody>;

/** Orchestrator → requester, to `reply_to`, with the request's `correlation_id`. */
export const TaskReply = z
  .discriminatedUnion('ok', [
    z.object({
      protocol_version: protocolVersion,
      message_type: z.literal('task_reply'),
      ok: z.literal(true),
      created: z.boolean().describe('false when the idempotency key matched an existing task.'),
      task: TaskSummary,
      request_id: requestId.optional(),
    }),
    z.object({
      protocol_version: protocolVersion,
      message_type: z.literal('task_reply'),
      ok: z.literal(false),
      error: ErrorBody,
      request_id: requestId.optional(),
    }),
  ])
  .describe('The answer to a task request.');
export type TaskReply = z.infer<typeof TaskReply>;

/** How a `task_requests` message carries its requests (for `decodeOneOrMany` and `encodeBatch`). */
export const TASK_REQUESTS_SHAPE = {
  messageType: 'task_requests',
  field: 'requests',
  max: Limits.maxRequestsPerMessage,
} as const;

/**
 * Service → orchestrator: several task requests in one message, to the task-requests
 * exchange with their namespace as routing key (every request of the message for that
 * namespace), each with its own `request_id`. Optional: requests may always go one by one.
 * Each is created (or refused) on its own, exactly as if it had come alone, and answered
 * with a reply carrying its `request_id` (several replies may share a `task_replies` message).
 */
export const TaskRequests = batchMessage(TASK_REQUESTS_SHAPE, TaskRequest).describe(
  'Several task requests in one message (a service creating many tasks at once): requester → orchestrator.',
);
export type TaskRequests = z.infer<typeof TaskRequests>;

/** How a `task_replies` message carries its replies. */
export const TASK_REPLIES_SHAPE = {
  messageType: 'task_replies',
  field: 'replies',
  max: Limits.maxRequestsPerMessage,
} as const;

/**
 * Orchestrator → requester: the replies to requests of a `task_requests` message, each with
 * the `request_id` of the request it answers, to `reply_to` with the message's `correlation_id`.
 */
export const TaskReplies = batchMessage(TASK_REPLIES_SHAPE, TaskReply).describe(
  'Several task replies in one message, each naming its request_id: orchestrator → requester.',
);
export type TaskReplies = z.infer<typeof TaskReplies>;

/**
 * The `request_id` of one request or reply given as JSON that failed its schema, when it
 * holds a usable one: whoever answers (or is answered) can still say which it was.
 */
export function readRequestId(json: string): string | undefined {
  let id: unknown;
  try {
    id = (JSON.parse(json) as { request_id?: unknown } | null)?.request_id;
  } catch {
    return undefined;
  }
  return requestId.safeParse(id).success ? (id as string) : undefined;
}
