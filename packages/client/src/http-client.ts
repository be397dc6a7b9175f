import { z } from 'zod';
import {
  CreateTaskResponse,
  CreateTasksResponse,
  Limits,
  ErrorCode,
  compiledSchema,
  jsonValue,
  ErrorResponse,
  ListTasksResponse,
  NamespaceSummary,
  TERMINAL_TASK_STATES,
  TaskView,
  TaskerError,
  TemplateSummary,
  TemplateValidation,
  zodIssues,
  type CompleteStepBody,
  type CreateTaskBody,
  type FieldIssue,
  type ListTasksQuery,
  type OperatorActionBody,
  type TaskListItem,
} from '@tasker/protocol';
import { buildTaskRequest, type CreateTaskRequest } from './create-task-request.ts';

/**
 * A refusal or failure of the HTTP API: the TaskerError of the response's
 * `{error: {code, message, issues?}}` (codes such as `UNAUTHENTICATED`, `FORBIDDEN`,
 * `INVALID_STATE` come from the server as sent), with the HTTP `status`. A 2xx response
 * whose body does not match the API's schema is one too (code `INVALID_MESSAGE`, with the
 * 2xx status): the server answered, but not with what the contract says.
 */
export class HttpError extends TaskerError {
  constructor(
    /** The HTTP status of the response. */
    readonly status: number,
    code: string,
    message: string,
    issues: FieldIssue[] = [],
  ) {
    // Server codes outside the protocol catalogue (auth, state conflicts) are kept as sent.
    super(code as ErrorCode, message, issues);
  }
}

/** A request body of YAML text (templates), sent as it is. */
class YamlBody {
  constructor(readonly text: string) {}
}

/** Query of {@link HttpTaskClient.listTasks}: every filter optional; `limit` defaults on the server (50). */
export type ListTasksFilter = Partial<ListTasksQuery>;

/** `POST /v1/tasks/:id/cancel`, `POST /v1/steps/:id/{retry,resolve,complete}`. */
export const OperatorActionResponse = z.object({ task: TaskView });
/** `GET /v1/namespaces`. */
export const NamespaceList = z.object({ items: z.array(NamespaceSummary) });
/** `GET /v1/templates`. */
export const TemplateList = z.object({ items: z.array(TemplateSummary) });
/** `GET /v1/templates/:namespace/:name/:version`: the summary and the definition as registered. */
export const TemplateDetail = z.object({ template: TemplateSummary, definition: jsonValue });
export type TemplateDetail = z.infer<typeof TemplateDetail>;
/** `POST /v1/templates`: 201 `created: true`, 200 when that exact version was registered already. */
export const RegisterTemplateResponse = z.object({ created: z.boolean(), template: TemplateSummary });
export type RegisterTemplateResponse = z.infer<typeof RegisterTemplateResponse>;

export interface HttpTaskClientOptions {
  /** The orchestrator's HTTP address, e.g. `http://127.0.0.1:8080` (a trailing `/` is fine). */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <token>`. @defaultValue none */
  token?: string;
  /** @defaultValue the global `fetch` */
  fetch?: typeof fetch;
}

export interface HttpRequestOptions {
  signal?: AbortSignal;
}

export interface GetTaskOptions extends HttpRequestOptions {
  /** Wait up to this long (ms) for the task to end before answering. @defaultValue 0: answer at once */
  waitMs?: number;
}

export interface WaitForTaskOptions extends HttpRequestOptions {
  /** Give up (TaskerError `INTERNAL`) after this long. */
  timeoutMs: number;
  /**
   * Time between two reads of the task when `until` is given (without it the orchestrator
   * answers as the task ends: `GET /v1/tasks/:id?wait_ms=`). @defaultValue 100
   */
  pollMs?: number;
  /** Resolve as soon as this holds. The wait also ends when the task is terminal, whatever it says. */
  until?: (task: TaskView) => boolean;
}

export interface HttpCreateTaskResult {
  /** false when the idempotency key matched an existing task. */
  created: boolean;
  task: TaskView;
}

/** One task of {@link HttpTaskClient.createTasks}: created (or found by its idempotency key), or refused. */
export type HttpCreateTasksItem = ({ ok: true } & HttpCreateTaskResult) | { ok: false; error: HttpError };

/**
 * The orchestrator's HTTP API: tasks (create, read, list, cancel), operator actions on
 * steps (retry, resolve, complete), namespaces and templates (list, read, validate,
 * register). Refusals (`{error: {code, message, issues?}}`) become an {@link HttpError}
 * (a {@link TaskerError}) with that code, those issues and the HTTP status; a request that
 * fails validation here is a plain TaskerError and is never sent; network errors are
 * thrown as they come (fetch's `TypeError`, with the cause).
 */
export class HttpTaskClient {
  private readonly baseUrl: string;
  private readonly token: string | undefined;
  private readonly fetch: typeof fetch;

  constructor(options: HttpTaskClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.token = options.token;
    this.fetch = options.fetch ?? globalThis.fetch;
  }

  /** Creates a task (201 → `created: true`) or returns the one with the same idempotency key (200). */
  async createTask(req: CreateTaskRequest, options: HttpRequestOptions = {}): Promise<HttpCreateTaskResult> {
    // Validated like the AMQP request, so a bad request fails here with every field named.
    const { protocol_version: _v, message_type: _t, ...body } = buildTaskRequest(req);
    const payload: CreateTaskBody = body;
    const res = await this.request('POST', '/v1/tasks', payload, options.signal);
    return this.parse(CreateTaskResponse, res, 'POST /v1/tasks');
  }

  /**
   * Creates several tasks in one request (`POST /v1/tasks/batch`, at most 500), each as
   * {@link createTask} would: the outcomes in the order asked, a refused task as an
   * {@link HttpError} with the status `POST /v1/tasks` would have given it. Every request is
   * validated here first (a bad one fails the call, naming `tasks.N.<field>`, and nothing is
   * sent); a token not allowed one of the namespaces fails the call whole (403), and nothing is created.
   */
  async createTasks(reqs: CreateTaskRequest[], options: HttpRequestOptions = {}): Promise<HttpCreateTasksItem[]> {
    if (reqs.length < 1 || reqs.length > Limits.maxRequestsPerMessage) {
      throw new TaskerError(ErrorCode.INVALID_MESSAGE, `createTasks takes 1 to ${Limits.maxRequestsPerMessage} tasks; got ${reqs.length}`);
    }
    const tasks: CreateTaskBody[] = reqs.map((req, i) => {
      try {
        const { protocol_version: _v, message_type: _t, ...body } = buildTaskRequest(req);
        return body;
      } catch (e) {
        if (!(e instanceof TaskerError)) throw e;
        throw new TaskerError(e.code, `tasks.${i}: ${e.message}`, e.issues.map((x) => ({ ...x, path: `tasks.${i}.${x.path}` })));
      }
    });
    const res = await this.request('POST', '/v1/tasks/batch', { tasks }, options.signal);
    const { results } = await this.parse(CreateTasksResponse, res, 'POST /v1/tasks/batch');
    if (results.length !== reqs.length) {
      throw new HttpError(res.status, ErrorCode.INVALID_MESSAGE, `POST /v1/tasks/batch answered ${results.length} results for ${reqs.length} tasks`);
    }
    return results.map((r) =>
      'error' in r
        ? { ok: false as const, error: new HttpError(r.status, r.error.code, r.error.message, r.error.issues ?? []) }
        : { ok: true as const, created: r.created, task: r.task },
    );
  }

  /**
   * The task with its steps; TaskerError `UNKNOWN_TASK` when there is none with that id. With
   * `waitMs`, the orchestrator answers once the task is no longer in progress or that time
   * has passed (at most `Limits.maxTaskWaitMs`), whichever comes first.
   */
  async getTask(id: string, options: GetTaskOptions = {}): Promise<TaskView> {
    const base = `/v1/tasks/${encodeURIComponent(id)}`;
    const path = options.waitMs ? `${base}?wait_ms=${Math.min(Math.ceil(options.waitMs), Limits.maxTaskWaitMs)}` : base;
    const res = await this.request('GET', path, undefined, options.signal);
    return this.parse(TaskView, res, `GET ${base}`);
  }

  /** One page of tasks, newest first; pass `next_cursor` back as `cursor` for the next one (null: no more). */
  async listTasks(filter: ListTasksFilter = {}, options: HttpRequestOptions = {}): Promise<ListTasksResponse> {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(filter)) {
      if (value !== undefined && value !== null && value !== '') params.set(key, String(value));
    }
    const qs = params.toString();
    const path = `/v1/tasks${qs ? `?${qs}` : ''}`;
    const res = await this.request('GET', path, undefined, options.signal);
    return this.parse(ListTasksResponse, res, 'GET /v1/tasks');
  }

  /**
   * Every task matching the filter, page after page (`limit` is the page size), newest
   * first. Starts at `filter.cursor` when given.
   */
  async *iterateTasks(filter: ListTasksFilter = {}, options: HttpRequestOptions = {}): AsyncGenerator<TaskListItem, void, undefined> {
    let cursor = filter.cursor;
    for (;;) {
      const page = await this.listTasks({ ...filter, ...(cursor !== undefined ? { cursor } : {}) }, options);
      yield* page.items;
      if (!page.next_cursor || page.items.length === 0) return;
      cursor = page.next_cursor;
    }
  }

  /** Cancels a task (pending and waiting steps are cancelled, running handlers get their signal aborted). */
  async cancelTask(id: string, reason: string, options: HttpRequestOptions = {}): Promise<TaskView> {
    const body: OperatorActionBody = { reason };
    return this.operate(`/v1/tasks/${encodeURIComponent(id)}/cancel`, body, options);
  }

  /** Retries a failed step (a new attempt); its task resumes from there. */
  async retryStep(stepId: string, reason: string, options: HttpRequestOptions = {}): Promise<TaskView> {
    const body: OperatorActionBody = { reason };
    return this.operate(`/v1/steps/${encodeURIComponent(stepId)}/retry`, body, options);
  }

  /** Marks a failed step resolved by hand (complete, no result): its dependents proceed. */
  async resolveStep(stepId: string, reason: string, options: HttpRequestOptions = {}): Promise<TaskView> {
    const body: OperatorActionBody = { reason };
    return this.operate(`/v1/steps/${encodeURIComponent(stepId)}/resolve`, body, options);
  }

  /** Completes a step by hand with a result, as if its handler had returned it. */
  async completeStep(stepId: string, result: unknown, reason: string, options: HttpRequestOptions = {}): Promise<TaskView> {
    const body: CompleteStepBody = { reason, result: result as CompleteStepBody['result'] };
    return this.operate(`/v1/steps/${encodeURIComponent(stepId)}/complete`, body, options);
  }

  async listNamespaces(options: HttpRequestOptions = {}): Promise<NamespaceSummary[]> {
    const res = await this.request('GET', '/v1/namespaces', undefined, options.signal);
    return (await this.parse(NamespaceList, res, 'GET /v1/namespaces')).items;
  }

  /** Every registered template version, of one namespace or of all. */
  async listTemplates(namespace?: string, options: HttpRequestOptions = {}): Promise<TemplateSummary[]> {
    const path = namespace ? `/v1/templates?${new URLSearchParams({ namespace }).toString()}` : '/v1/templates';
    const res = await this.request('GET', path, undefined, options.signal);
    return (await this.parse(TemplateList, res, 'GET /v1/templates')).items;
  }

  async getTemplate(namespace: string, name: string, version: string, options: HttpRequestOptions = {}): Promise<TemplateDetail> {
    const path = `/v1/templates/${[namespace, name, version].map(encodeURIComponent).join('/')}`;
    const res = await this.request('GET', path, undefined, options.signal);
    return this.parse(TemplateDetail, res, `GET ${path}`);
  }

  /** Checks a template (YAML text) on the server without registering it; problems name the step. */
  async validateTemplate(yaml: string, options: HttpRequestOptions = {}): Promise<TemplateValidation> {
    const res = await this.request('POST', '/v1/templates/validate', new YamlBody(yaml), options.signal);
    return this.parse(TemplateValidation, res, 'POST /v1/templates/validate');
  }

  /**
   * Registers a template (YAML text). `created: false` when that version was registered
   * already; an invalid template is an HttpError `TEMPLATE_INVALID` (400) with its issues.
   */
  async registerTemplate(yaml: string, options: HttpRequestOptions = {}): Promise<RegisterTemplateResponse> {
    const res = await this.request('POST', '/v1/templates', new YamlBody(yaml), options.signal);
    return this.parse(RegisterTemplateResponse, res, 'POST /v1/templates');
  }

  private async operate(path: string, body: OperatorActionBody | CompleteStepBody, options: HttpRequestOptions): Promise<TaskView> {
    const res = await this.request('POST', path, body, options.signal);
    return (await this.parse(OperatorActionResponse, res, `POST ${path}`)).task;
  }

  /**
   * Waits until the task is terminal (complete, error, cancelled) or `until(task)` holds, and
   * returns it as last read. Without `until` the orchestrator answers as the task ends
   * (`wait_ms`); with it, the task is read every `pollMs`.
   */
  async waitForTask(id: string, options: WaitForTaskOptions): Promise<TaskView> {
    const pollMs = options.pollMs ?? 100;
    const deadline = Date.now() + options.timeoutMs;
    let waitMs = 0;
    for (;;) {
      const asked = Date.now();
      const task = await this.getTask(id, { ...(options.signal ? { signal: options.signal } : {}), ...(waitMs > 0 ? { waitMs } : {}) });
      if (options.until?.(task) || TERMINAL_TASK_STATES.includes(task.state)) return task;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new TaskerError(
          ErrorCode.INTERNAL,
          `task ${id} did not reach the awaited state within ${options.timeoutMs} ms (state: ${task.state})`,
        );
      }
      if (options.until) {
        // The orchestrator waits only for the task's end; what `until` looks for is polled.
        await sleep(Math.min(pollMs, left), options.signal);
        continue;
      }
      // The orchestrator holds the request until the task ends. An answer in progress sooner
      // than asked comes from an orchestrator without `wait_ms` (an older version): poll it.
      if (waitMs > 0 && Date.now() - asked < waitMs / 2) await sleep(Math.min(pollMs, left), options.signal);
      waitMs = Math.min(left, Limits.maxTaskWaitMs);
    }
  }

  /** `body`: sent as JSON, or a {@link YamlBody} as `application/yaml` text. */
  private async request(method: string, path: string, body: unknown, signal: AbortSignal | undefined): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json' };
    let payload: string | undefined;
    if (body instanceof YamlBody) {
      headers['content-type'] = 'application/yaml';
      payload = body.text;
    } else if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    if (this.token) headers['authorization'] = `Bearer ${this.token}`;
    const res = await this.fetch(`${this.baseUrl}${path}`, {
      method,
      headers,
      ...(payload !== undefined ? { body: payload } : {}),
      ...(signal ? { signal } : {}),
    });
    if (res.ok) return res;
    throw await errorFrom(res, `${method} ${path}`);
  }

  private async parse<S extends z.ZodType>(schema: S, res: Response, what: string): Promise<z.infer<S>> {
    let json: unknown;
    try {
      json = await res.json();
    } catch (err) {
      throw new HttpError(res.status, ErrorCode.INVALID_MESSAGE, `response to ${what} is not JSON: ${(err as Error).message}`);
    }
    const parsed = compiledSchema(schema).safeParse(json);
    if (!parsed.success) {
      const issues = zodIssues(parsed.error);
      throw new HttpError(
        res.status,
        ErrorCode.INVALID_MESSAGE,
        `response to ${what} does not match its schema: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
        issues,
      );
    }
    return parsed.data;
  }
}

/** What a status means when the body does not say (a proxy's page, an empty 502). */
function codeForStatus(status: number): string {
  if (status === 401) return 'UNAUTHENTICATED';
  if (status === 403) return 'FORBIDDEN';
  if (status === 409) return 'INVALID_STATE';
  if (status === 413) return ErrorCode.PAYLOAD_TOO_LARGE;
  if (status >= 400 && status < 500) return ErrorCode.INVALID_MESSAGE;
  return ErrorCode.INTERNAL;
}

/** The HttpError for a non-2xx response: the body's error when it has one. */
async function errorFrom(res: Response, what: string): Promise<HttpError> {
  const text = await res.text().catch(() => '');
  let json: unknown = undefined;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON: described below
  }
  const parsed = ErrorResponse.safeParse(json);
  if (parsed.success) {
    const e = parsed.data.error;
    return new HttpError(res.status, e.code, e.message, e.issues ?? []);
  }
  if (res.status === 404 && what.startsWith('GET /v1/tasks/')) {
    return new HttpError(404, ErrorCode.UNKNOWN_TASK, `${what}: no such task`);
  }
  if (res.status === 404) return new HttpError(404, 'NOT_FOUND', `${what}: not found (HTTP 404)`);
  return new HttpError(res.status, codeForStatus(res.status), `${what} failed with HTTP ${res.status}: ${text.slice(0, 500)}`);
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
