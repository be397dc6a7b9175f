import { z } from 'zod';
import { ErrorBody, TaskSummary } from './messages/task-request.ts';
import { id, identifier, isoTime } from './messages/common.ts';

/** HTTP API shapes. Requests reuse the task-request fields without the envelope. */
export const CreateTaskBody = z.object({
  namespace: z.string(),
  name: z.string(),
  version: z.string().optional(),
  context: z.record(z.string(), z.json()),
  idempotency_key: z.string().min(1).max(255).optional(),
  correlation_id: z.string().min(1).max(255).optional(),
  parent: z.object({ task_id: id, step_id: id.optional() }).optional(),
  requested_by: z.string().max(200).optional(),
});
export type CreateTaskBody = z.infer<typeof CreateTaskBody>;

export const StepView = z.object({
  id,
  name: identifier,
  state: z.enum(['pending', 'enqueued', 'waiting_retry', 'complete', 'error', 'cancelled']),
  attempt: z.int().describe('The current (or last) attempt; 0 before the first dispatch.'),
  max_attempts: z.int(),
  dependencies: z.array(z.string()),
  handler_callable: z.string(),
  result: z.json().nullable(),
  error: z.json().nullable(),
  enqueued_at: isoTime.nullable(),
  started_at: isoTime.nullable().describe('When the handler of the last attempt started (worker clock).'),
  finished_at: isoTime.nullable(),
  next_retry_at: isoTime.nullable(),
});
export type StepView = z.infer<typeof StepView>;

export const TaskView = TaskSummary.extend({
  context: z.record(z.string(), z.json()),
  error: z.json().nullable(),
  updated_at: isoTime,
  completed_at: isoTime.nullable(),
  steps: z.array(StepView),
});
export type TaskView = z.infer<typeof TaskView>;

export const CreateTaskResponse = z.object({ created: z.boolean(), task: TaskView });
export type CreateTaskResponse = z.infer<typeof CreateTaskResponse>;

export const ErrorResponse = z.object({ error: ErrorBody });
export type ErrorResponse = z.infer<typeof ErrorResponse>;
