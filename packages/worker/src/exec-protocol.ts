import { z } from 'zod';
import { jsonObject, jsonValue } from '@tasker/protocol';

/**
 * The exec bridge protocol (docs/protocol.md, "Exec bridge"): how the worker runtime talks
 * to a long-lived child process that holds the handlers, in any language, over the child's
 * stdin and stdout. One JSON object per line (UTF-8, `\n`-terminated; JSON escapes every
 * newline inside strings, so a line is always one whole message). The child's stderr is
 * its own log and is passed through untouched.
 *
 * child → runtime, first:      {"type":"hello","protocol":"tasker-exec/1","handlers":["a","b"]}
 * runtime → child, per step:   {"type":"step","id":"7","step":{...ExecStep}}
 * child → runtime, per step:   {"type":"result","id":"7","status":"success","result":<JSON>}
 *                              {"type":"result","id":"7","status":"failure","error":{kind,code,message,retry_after_ms?,details?}}
 *                              {"type":"result","id":"7","status":"waiting","wait_for":{"task_id":"..."}}  (a task it created)
 * runtime → child, advisory:   {"type":"cancel","id":"7","reason":"HANDLER_TIMEOUT"|"WORKER_SHUTDOWN"}
 * child → runtime, optional:   {"type":"create_task","id":"7","request_id":"r1","request":{namespace,name,context,...}}
 * runtime → child, its answer: {"type":"create_task_result","request_id":"r1","ok":true,"created":true,"task":{...}}
 *                              {"type":"create_task_result","request_id":"r1","ok":false,"error":{code,message,issues?}}
 * child → runtime, optional:   {"type":"log","level":"info","message":"...","id":"7","fields":{...}}
 *
 * Several steps may be in flight at once (up to the worker's concurrency); the child may
 * answer them in any order, each by its `id`. Receivers ignore fields and message types
 * they do not know, so both sides can grow without a new protocol version.
 */
export const EXEC_PROTOCOL = 'tasker-exec/1';

/** What the child gets for one step: the step message's fields a handler reads. */
export interface ExecStep {
  task_id: string;
  step_id: string;
  step_name: string;
  namespace: string;
  task_name: string;
  task_version: string;
  correlation_id: string;
  attempt: number;
  max_attempts: number;
  /** `<step_id>:<attempt>`: stable across redeliveries of this attempt. */
  idempotency_key: string;
  handler: { callable: string; method: string | null; initialization: Record<string, unknown> };
  input: Record<string, unknown>;
  dependency_results: Record<string, unknown>;
}

export const ExecHello = z.object({
  type: z.literal('hello'),
  protocol: z.literal(EXEC_PROTOCOL, { error: `the child must speak ${EXEC_PROTOCOL}` }),
  handlers: z.array(z.string().min(1)).min(1, 'the child must name at least one handler'),
});

export const ExecError = z.object({
  kind: z.enum(['permanent', 'retryable']),
  code: z.string().optional(),
  message: z.string(),
  retry_after_ms: z.number().nullable().optional(),
  details: jsonValue.optional(),
});

export const ExecResult = z.discriminatedUnion('status', [
  z.object({ type: z.literal('result'), id: z.string(), status: z.literal('success'), result: jsonValue.optional() }),
  z.object({ type: z.literal('result'), id: z.string(), status: z.literal('failure'), error: ExecError }),
  // The step waits for a task (created by the handler) without holding a worker: see ctx.waitFor.
  z.object({ type: z.literal('result'), id: z.string(), status: z.literal('waiting'), wait_for: z.object({ task_id: z.string().min(1) }) }),
]);
export type ExecResult = z.infer<typeof ExecResult>;

export const ExecCreateTask = z.object({
  type: z.literal('create_task'),
  id: z.string(),
  request_id: z.string(),
  request: z.object({
    namespace: z.string(),
    name: z.string(),
    version: z.string().optional(),
    context: jsonObject,
    idempotency_key: z.string().optional(),
    correlation_id: z.string().optional(),
    requested_by: z.string().optional(),
  }),
});
export type ExecCreateTask = z.infer<typeof ExecCreateTask>;

export const ExecLog = z.object({
  type: z.literal('log'),
  level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).catch('info'),
  message: z.string(),
  id: z.string().optional(),
  fields: jsonObject.optional(),
});
export type ExecLog = z.infer<typeof ExecLog>;

/** Any line the child writes, once its `type` is known. */
export type ChildMessage =
  | ({ kind: 'hello' } & z.infer<typeof ExecHello>)
  | ({ kind: 'result' } & ExecResult)
  | ({ kind: 'create_task' } & ExecCreateTask)
  | ({ kind: 'log' } & ExecLog)
  | { kind: 'ignored'; type: string }
  | { kind: 'invalid'; problem: string };

const BY_TYPE = { hello: ExecHello, result: ExecResult, create_task: ExecCreateTask, log: ExecLog } as const;

/** Parses one line of the child's stdout. Never throws. */
export function parseChildLine(line: string): ChildMessage {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return { kind: 'invalid', problem: 'not JSON' };
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { kind: 'invalid', problem: 'not a JSON object' };
  const type = (raw as Record<string, unknown>)['type'];
  if (typeof type !== 'string') return { kind: 'invalid', problem: 'no "type" field' };
  if (!Object.hasOwn(BY_TYPE, type)) return { kind: 'ignored', type };
  const schema = BY_TYPE[type as keyof typeof BY_TYPE];
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const why = parsed.error.issues.map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`).join('; ');
    return { kind: 'invalid', problem: `"${type}" message: ${why}` };
  }
  return { kind: type, ...parsed.data } as ChildMessage;
}
