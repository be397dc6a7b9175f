import { z } from 'zod';
import { Limits } from './limits.ts';
import { ErrorBody, TaskSummary } from './messages/task-request.ts';
import { id, identifier, isoTime, jsonObject, jsonValue, namespaceName } from './messages/common.ts';

/** HTTP API shapes. Requests reuse the task-request fields without the envelope. */
export const CreateTaskBody = z.object({
  namespace: namespaceName,
  name: identifier,
  version: z.string().max(100).optional(),
  context: jsonObject,
  idempotency_key: z.string().min(1).max(255).optional(),
  correlation_id: z.string().min(1).max(255).optional(),
  parent: z.object({ task_id: id, step_id: id.optional() }).optional(),
  requested_by: z.string().max(200).optional(),
});
export type CreateTaskBody = z.infer<typeof CreateTaskBody>;

export const StepView = z.object({
  id,
  name: identifier,
  state: z.enum(['pending', 'enqueued', 'waiting_retry', 'waiting_child', 'complete', 'error', 'cancelled']),
  attempt: z.int().describe('The current (or last) attempt; 0 before the first dispatch.'),
  max_attempts: z.int(),
  dependencies: z.array(z.string()),
  handler_callable: z.string(),
  result: jsonValue.nullable(),
  error: jsonValue.nullable(),
  enqueued_at: isoTime.nullable(),
  started_at: isoTime.nullable().describe('When the handler of the last attempt started (worker clock).'),
  finished_at: isoTime.nullable(),
  next_retry_at: isoTime.nullable(),
  waiting_for_task_id: z.string().nullable().describe('The task this step waits for (state waiting_child).'),
});
export type StepView = z.infer<typeof StepView>;

export const TransitionView = z.object({
  step_id: z.string().nullable().describe('null: a transition of the task itself.'),
  step: z.string().nullable(),
  from_state: z.string().nullable(),
  to_state: z.string(),
  attempt: z.int().nullable(),
  reason: z.string(),
  actor: z.string().nullable().describe('Who did it, for operator actions (the API token name); null for the engine.'),
  at: isoTime,
});
export type TransitionView = z.infer<typeof TransitionView>;

export const TaskListItem = TaskSummary.extend({ updated_at: isoTime, completed_at: isoTime.nullable() });
export type TaskListItem = z.infer<typeof TaskListItem>;

export const TaskView = TaskListItem.extend({
  context: jsonObject,
  error: jsonValue.nullable(),
  steps: z.array(StepView),
  transitions: z.array(TransitionView).optional(),
  parent: TaskSummary.nullable().optional(),
  children: z.array(TaskSummary).optional(),
});
export type TaskView = z.infer<typeof TaskView>;

/** `GET /v1/tasks` query: filters combine with AND; newest first; `cursor` from the previous page. */
export const ListTasksQuery = z.object({
  namespace: z.string().optional(),
  name: z.string().optional(),
  state: z.enum(['in_progress', 'complete', 'error', 'cancelled']).optional(),
  correlation_id: z.string().optional(),
  parent_task_id: z.string().optional(),
  created_after: isoTime.optional(),
  created_before: isoTime.optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z.string().optional(),
});
export type ListTasksQuery = z.infer<typeof ListTasksQuery>;

/**
 * `GET /v1/tasks/:id?wait_ms=N`: while the task is in progress, the answer waits until it is
 * complete, error or cancelled, or N ms have passed, whichever comes first; then it is the
 * task as it is (200 either way: the caller reads `state`). Without `wait_ms`, or 0, at once.
 */
export const GetTaskQuery = z.object({
  wait_ms: z.coerce
    .number()
    .int()
    .min(0)
    .max(Limits.maxTaskWaitMs)
    .optional()
    .describe(`Wait up to this many ms (at most ${Limits.maxTaskWaitMs}) for the task to end before answering.`),
});
export type GetTaskQuery = z.infer<typeof GetTaskQuery>;

export const ListTasksResponse = z.object({ items: z.array(TaskListItem), next_cursor: z.string().nullable() });
export type ListTasksResponse = z.infer<typeof ListTasksResponse>;

/** Body of every operator action: why (kept in the audit with who). */
export const OperatorActionBody = z.object({ reason: z.string().min(1).max(1000) });
export type OperatorActionBody = z.infer<typeof OperatorActionBody>;

/** `POST /v1/steps/:id/complete`: complete a step by hand with a result. */
export const CompleteStepBody = OperatorActionBody.extend({ result: jsonValue });
export type CompleteStepBody = z.infer<typeof CompleteStepBody>;

export const TemplateSummary = z.object({
  namespace: z.string(),
  name: z.string(),
  version: z.string(),
  description: z.string().nullable(),
  steps: z.int(),
  created_at: isoTime,
});
export type TemplateSummary = z.infer<typeof TemplateSummary>;

export const NamespaceSummary = z.object({ name: z.string(), templates: z.int(), created_at: isoTime });
export type NamespaceSummary = z.infer<typeof NamespaceSummary>;

/** `POST /v1/templates/validate` and `POST /v1/templates`: YAML (text/yaml) or JSON body. */
export const TemplateValidation = z.object({
  valid: z.boolean(),
  template: z.object({ namespace: z.string(), name: z.string(), version: z.string() }).nullable(),
  problems: z.array(z.object({ origin: z.string(), step: z.string().nullable(), message: z.string(), code: z.string() })),
});
export type TemplateValidation = z.infer<typeof TemplateValidation>;

/** What an API token may do: each action includes none of the others. */
export const API_ACTIONS = ['read', 'create', 'operate', 'admin'] as const;
export type ApiAction = (typeof API_ACTIONS)[number];

/** One API token (configured by file or environment): a name for the audit, a secret, a scope. */
export const ApiTokenConfig = z.object({
  name: z.string().min(1).max(100),
  /** The bearer token itself, or its SHA-256 in hex (`sha256:<hex>`), so the file need not hold secrets. */
  token: z.string().min(16),
  /** Namespaces it may touch; `*` for all. */
  namespaces: z.array(z.string()).min(1),
  actions: z.array(z.enum(API_ACTIONS)).min(1),
});
export type ApiTokenConfig = z.infer<typeof ApiTokenConfig>;
export const ApiTokensFile = z.object({ tokens: z.array(ApiTokenConfig) });

export const CreateTaskResponse = z.object({ created: z.boolean(), task: TaskView });
export type CreateTaskResponse = z.infer<typeof CreateTaskResponse>;

/** `POST /v1/tasks/batch`: several tasks in one request, each created (or refused) on its own. */
export const CreateTasksBody = z.object({ tasks: z.array(CreateTaskBody).min(1).max(Limits.maxRequestsPerMessage) });
export type CreateTasksBody = z.infer<typeof CreateTasksBody>;

/**
 * One task of `POST /v1/tasks/batch`, in the order asked: `status` is what `POST /v1/tasks`
 * would have answered for it alone (201 created, 200 the task its idempotency key made
 * before, 4xx the refusal).
 */
export const CreateTasksItem = z.union([
  z.object({ status: z.int(), created: z.boolean(), task: TaskView }),
  z.object({ status: z.int(), error: ErrorBody }),
]);
export type CreateTasksItem = z.infer<typeof CreateTasksItem>;
export const CreateTasksResponse = z.object({ results: z.array(CreateTasksItem) });
export type CreateTasksResponse = z.infer<typeof CreateTasksResponse>;

export const ErrorResponse = z.object({ error: ErrorBody });
export type ErrorResponse = z.infer<typeof ErrorResponse>;
