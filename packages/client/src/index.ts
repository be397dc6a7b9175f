/**
 * @tasker/client: what a service or a handler uses to create tasks and read their state.
 *
 * - {@link AmqpTaskRequester}: creates tasks over RabbitMQ (request and reply), the way a
 *   worker's handlers do; no HTTP dependency on the orchestrator.
 * - {@link HttpTaskClient}: the orchestrator's HTTP API: create, read, list, wait for and
 *   cancel tasks, operate steps, read and register templates. Its refusals are
 *   {@link HttpError}s (a TaskerError with the HTTP status).
 *
 * Both validate a request before sending it and refuse with a `TaskerError` whose
 * `issues` name every failing field.
 */
export { AmqpTaskRequester } from './task-requester.ts';
export type {
  AmqpTaskRequesterConnectOptions,
  AmqpTaskRequesterOptions,
  CreateTaskOptions,
  CreateTaskResult,
} from './task-requester.ts';
export {
  HttpError,
  HttpTaskClient,
  NamespaceList,
  OperatorActionResponse,
  RegisterTemplateResponse,
  TemplateDetail,
  TemplateList,
} from './http-client.ts';
export type {
  HttpCreateTaskResult,
  HttpCreateTasksItem,
  HttpRequestOptions,
  HttpTaskClientOptions,
  ListTasksFilter,
  WaitForTaskOptions,
} from './http-client.ts';
export { buildTaskRequest } from './create-task-request.ts';
export type { CreateTaskRequest } from './create-task-request.ts';
export { ErrorCode, TaskerError } from '@tasker/protocol';
export type {
  FieldIssue,
  ListTasksResponse,
  NamespaceSummary,
  StepView,
  TaskListItem,
  TaskSummary,
  TaskView,
  TemplateSummary,
  TemplateValidation,
  TransitionView,
} from '@tasker/protocol';
