import type { z } from 'zod';
import {
  CreateTaskResponse,
  ErrorCode,
  ErrorResponse,
  TERMINAL_TASK_STATES,
  TaskView,
  TaskerError,
  zodIssues,
  type CreateTaskBody,
} from '@tasker/protocol';
import { buildTaskRequest, type CreateTaskRequest } from './create-task-request.ts';

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

export interface WaitForTaskOptions extends HttpRequestOptions {
  /** Give up (TaskerError `INTERNAL`) after this long. */
  timeoutMs: number;
  /** Time between two reads of the task. @defaultValue 100 */
  pollMs?: number;
  /** Resolve as soon as this holds. The wait also ends when the task is terminal, whatever it says. */
  until?: (task: TaskView) => boolean;
}

export interface HttpCreateTaskResult {
  /** false when the idempotency key matched an existing task. */
  created: boolean;
  task: TaskView;
}

/**
 * The orchestrator's HTTP API: `POST /v1/tasks`, `GET /v1/tasks/:id`. Refusals (4xx with
 * `{error: {code, message, issues?}}`) become a {@link TaskerError} with that code and
 * those issues; network errors are thrown as they come.
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

  /** The task with its steps; TaskerError `UNKNOWN_TASK` when there is none with that id. */
  async getTask(id: string, options: HttpRequestOptions = {}): Promise<TaskView> {
    const path = `/v1/tasks/${encodeURIComponent(id)}`;
    const res = await this.request('GET', path, undefined, options.signal);
    return this.parse(TaskView, res, `GET ${path}`);
  }

  /**
   * Reads the task every `pollMs` until `until(task)` holds or the task is terminal
   * (complete, error, cancelled), and returns it as last read.
   */
  async waitForTask(id: string, options: WaitForTaskOptions): Promise<TaskView> {
    const pollMs = options.pollMs ?? 100;
    const deadline = Date.now() + options.timeoutMs;
    for (;;) {
      const task = await this.getTask(id, options.signal ? { signal: options.signal } : {});
      if (options.until?.(task) || TERMINAL_TASK_STATES.includes(task.state)) return task;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new TaskerError(
          ErrorCode.INTERNAL,
          `task ${id} did not reach the awaited state within ${options.timeoutMs} ms (state: ${task.state})`,
        );
      }
      await sleep(Math.min(pollMs, left), options.signal);
    }
  }

  private async request(method: string, path: string, body: unknown, signal: AbortSignal | undefined): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.token) headers['authorization'] = `Bearer ${this.token}`;
    const res = await this.fetch(`${this.baseUrl}${path}`, {
      method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
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
      throw new TaskerError(ErrorCode.INVALID_MESSAGE, `response to ${what} is not JSON: ${(err as Error).message}`);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      const issues = zodIssues(parsed.error);
      throw new TaskerError(
        ErrorCode.INVALID_MESSAGE,
        `response to ${what} does not match its schema: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
        issues,
      );
    }
    return parsed.data;
  }
}

/** The TaskerError for a non-2xx response: the body's error when it has one. */
async function errorFrom(res: Response, what: string): Promise<TaskerError> {
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
    return new TaskerError(e.code as ErrorCode, e.message, e.issues ?? []);
  }
  if (res.status === 404 && what.startsWith('GET /v1/tasks/')) {
    return new TaskerError(ErrorCode.UNKNOWN_TASK, `${what}: no such task`);
  }
  return new TaskerError(ErrorCode.INTERNAL, `${what} failed with HTTP ${res.status}: ${text.slice(0, 500)}`);
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
