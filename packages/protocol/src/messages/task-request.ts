import { z } from 'zod';
import { errorCodeString, id, identifier, isoTime, jsonObject, namespaceName, protocolVersion } from './common.ts';

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
    }),
    z.object({
      protocol_version: protocolVersion,
      message_type: z.literal('task_reply'),
      ok: z.literal(false),
      error: ErrorBody,
    }),
  ])
  .describe('The answer to a task request.');
export type TaskReply = z.infer<typeof TaskReply>;
