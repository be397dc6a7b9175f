import { sql } from 'kysely';
import { customAlphabet } from 'nanoid';
import {
  ErrorCode,
  Limits,
  TaskerError,
  jsonByteLength,
  jsonValueProblem,
  type CompiledTemplate,
  type CreateTaskBody,
  type Names,
  type TaskSummary,
  type TaskView,
} from '@tasker/protocol';
import type { Logger } from 'pino';
import { preparedQuery, type Db } from '../db/database.ts';
import { outboxPositions, type OutboxRow, type OutgoingMessage } from '../outbox/outbox.ts';
import type { TemplateRegistry } from '../templates/registry.ts';
import type { ContextValidator } from './context-validator.ts';
import { buildStepMessage, packStepGroups, stepOutgoing } from './step-messages.ts';
import type { LockedTask } from './dispatch.ts';
import type { StepState } from '../results/batch-plan.ts';
import type { TaskCache } from '../results/task-cache.ts';

const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz';
const nano = customAlphabet(alphabet, 11);

/**
 * 20 characters after the prefix: the creation time in milliseconds, base 36 and 9 digits
 * wide (enough until the year 5188), then 11 random ones (about 57 bits). Ids made later
 * sort after earlier ones, bytewise as Postgres compares them (COLLATE "C", migration 0007;
 * the alphabet's digits come before its letters, as in ASCII), so a new task's and its
 * steps' keys go to the right-hand end of the B-tree indexes keyed by them (the tasks' and
 * steps' primary keys, the steps by task and name, the audit by task, the correlation id,
 * which defaults to the task id) instead of to random pages: the pages an insert touches stay
 * few and in memory as the tables grow, and Postgres takes its shortcut to the rightmost
 * leaf. The random part keeps ids of one millisecond, and of several orchestrators, apart.
 */
export function timeOrderedId(prefix: string, now = Date.now()): string {
  // The time part is made once a millisecond: made for every id, it doubled an id's cost (0.25 → 0.49 µs).
  if (now !== stamped.ms) stamped = { ms: now, text: now.toString(36).padStart(9, '0') };
  return `${prefix}${stamped.text}${nano()}`;
}
let stamped = { ms: -1, text: '' };
export const newTaskId = (): string => timeOrderedId('tsk_');
export const newStepId = (): string => timeOrderedId('stp_');

export type CreateOutcome =
  /** `view`: a created task as it was created (its steps included), so callers need not read it back. */
  | { ok: true; created: boolean; task: TaskSummary; view?: TaskView }
  | { ok: false; error: TaskerError };

interface Prepared {
  index: number;
  input: CreateTaskBody;
  templateId: string;
  taskId: string;
  correlationId: string;
}

/** The creation batch's statement (migrations 0011 and 0012): every task, step, audit row and first step message of the batch. */
const CREATE_BATCH = `/* prepared:tasks_create_batch */
    SELECT created, outbox, stale FROM create_tasks_rows_newest($1::jsonb, $2::jsonb, $3::jsonb, $4::jsonb, $5::jsonb)`;

/**
 * Creates tasks in one transaction for a whole batch (HTTP and AMQP requests are batched
 * by the caller). Each request is validated on its own: a refused request gets its error
 * and leaves no row; the others go on. A repeated idempotency key returns the existing task.
 */
export async function createTasks(
  deps: {
    db: Db;
    registry: TemplateRegistry;
    validator: ContextValidator;
    names: Names;
    logger: Logger;
    /** Most steps in one message (`TASKER_STEPS_PER_MESSAGE`). @defaultValue 1 */
    stepsPerMessage?: number;
    /** Where the created tasks go, so that their first results run in one round trip. @defaultValue none */
    taskCache?: TaskCache | null;
  },
  inputs: CreateTaskBody[],
  /**
   * `views`: build each created task's `view` (its steps included): the HTTP API answers with
   * it; a task reply does not. `held` (default true): take the templates this process holds
   * (TemplateRegistry.held) instead of asking the database first; false after the creation
   * found a held newest version stale.
   */
  options: { views?: boolean; held?: boolean } = {},
): Promise<{ outcomes: CreateOutcome[]; outbox: OutboxRow[] }> {
  const outcomes: CreateOutcome[] = new Array(inputs.length);
  const prepared: Prepared[] = [];
  const resolveCache = new Map<string, Promise<{ id: string; template: CompiledTemplate }>>();
  // Templates taken as the newest of their name without asking (by resolveCache's key): the
  // creation statement checks they still are (create_tasks_rows_newest, migration 0012).
  const newest = new Map<string, [string, string, string]>();
  const useHeld = options.held ?? true;
  let resolveAgain = false;

  for (const [index, input] of inputs.entries()) {
    try {
      const size = jsonByteLength(input.context);
      if (size > Limits.maxContextBytes) {
        throw new TaskerError(
          ErrorCode.PAYLOAD_TOO_LARGE,
          `context is ${size} bytes; the limit is ${Limits.maxContextBytes} bytes`,
        );
      }
      const bad = jsonValueProblem(input);
      if (bad) throw new TaskerError(ErrorCode.INVALID_CONTEXT, `request ${bad.path} ${bad.message}`, [bad]);
      const key = templateKey(input);
      let p = resolveCache.get(key);
      if (!p) {
        const held = useHeld ? deps.registry.held(input.namespace, input.name, input.version ?? null) : null;
        if (held?.newest) newest.set(key, held.newest);
        p = held ? Promise.resolve(held) : deps.registry.resolve(input.namespace, input.name, input.version ?? null);
        resolveCache.set(key, p);
      }
      const { id: templateId, template } = await p;
      if (template.inputSchema) {
        const issues = deps.validator.validate(templateId, template.inputSchema, input.context);
        if (issues.length > 0 && newest.has(key)) {
          // Refused by the schema of a version only held to be the newest: a refused request
          // never reaches the statement that checks, so ask the database which version is.
          resolveAgain = true;
          break;
        }
        if (issues.length > 0) {
          throw new TaskerError(
            ErrorCode.INVALID_CONTEXT,
            `context does not match the input_schema of ${template.namespace}.${template.name}@${template.version}: ${issues
              .map((i) => `${i.path} ${i.message}`)
              .join('; ')}`,
            issues,
          );
        }
      }
      const taskId = newTaskId();
      prepared.push({ index, input, templateId, taskId, correlationId: input.correlation_id ?? taskId });
    } catch (err) {
      if (err instanceof TaskerError) outcomes[index] = { ok: false, error: err };
      else throw err;
    }
  }
  if (resolveAgain) return createTasks(deps, inputs, { views: options.views, held: false });
  // A parent that does not exist is the caller's mistake, refused like any other field.
  const parentIds = [...new Set(prepared.map((p) => p.input.parent?.task_id).filter((x): x is string => !!x))];
  if (parentIds.length > 0) {
    const { rows } = await sql<{ id: string }>`SELECT id FROM tasks WHERE id = ANY(${parentIds}::text[])`.execute(deps.db);
    const known = new Set(rows.map((r) => r.id));
    for (let i = prepared.length - 1; i >= 0; i--) {
      const parent = prepared[i]!.input.parent?.task_id;
      if (parent && !known.has(parent)) {
        outcomes[prepared[i]!.index] = {
          ok: false,
          error: new TaskerError(ErrorCode.UNKNOWN_TASK, `parent task '${parent}' does not exist`, [
            { path: 'parent.task_id', message: 'no such task' },
          ]),
        };
        prepared.splice(i, 1);
      }
    }
  }
  if (prepared.length === 0) return { outcomes, outbox: [] };

  // The same idempotency key twice in one batch: the first creates, the rest return it.
  const firstByKey = new Map<string, Prepared>();
  const fresh: Prepared[] = [];
  const repeats: Array<{ p: Prepared; first: Prepared }> = [];
  for (const p of prepared) {
    const k = p.input.idempotency_key ? `${p.input.namespace}\u0000${p.input.idempotency_key}` : null;
    const first = k ? firstByKey.get(k) : undefined;
    if (first) repeats.push({ p, first });
    else {
      if (k) firstByKey.set(k, p);
      fresh.push(p);
    }
  }

  // Everything each new task implies is built first, then written in one statement (one
  // round trip, its own transaction; migrations 0009 and 0011) that inserts the tasks and,
  // for those whose idempotency key was free, their steps, audit rows and first step messages
  // (issue 7: creation was five statements one after the other, then three round trips).
  const taskRows: unknown[][] = [];
  const stepRows: Array<Record<string, unknown>> = [];
  const messages: Array<OutgoingMessage & { task_id: string }> = [];
  const templates = new Map<string, CompiledTemplate>();
  const stepsOf = new Map<string, Array<Record<string, unknown>>>();
  for (const p of fresh) {
    const template = await deps.registry.get(p.templateId);
    templates.set(p.taskId, template);
    // create_tasks_rows's positions (migration 0011).
    taskRows.push([
      p.taskId,
      p.input.namespace,
      p.input.name,
      template.version,
      p.templateId,
      p.input.context,
      p.correlationId,
      p.input.idempotency_key ?? null,
      p.input.parent?.task_id ?? null,
      p.input.parent?.step_id ?? null,
      p.input.requested_by ?? null,
    ]);
    const ids = new Map(template.steps.map((s) => [s.name, newStepId()]));
    const own: Array<Record<string, unknown>> = [];
    stepsOf.set(p.taskId, own);
    template.steps.forEach((s, position) => {
      const root = s.dependencies.length === 0;
      const id = ids.get(s.name)!;
      own.push({
        id,
        task_id: p.taskId,
        name: s.name,
        position,
        state: root ? 'enqueued' : 'pending',
        attempt: root ? 1 : 0,
        max_attempts: s.retry.maxAttempts,
        deps_pending: s.dependencies.length,
        dependents: s.dependents.map((d) => ids.get(d)!),
      });
      stepRows.push(own[own.length - 1]!);
      if (root) {
        const task = {
          id: p.taskId,
          namespace: template.namespace,
          name: template.name,
          version: template.version,
          correlation_id: p.correlationId,
          context: p.input.context,
        };
        // Not `{ ...outgoing, task_id }`: a spread followed by more properties is slow in V8 (see outboxRow).
        const m = stepOutgoing(deps.names, buildStepMessage(task, template, { id, name: s.name, attempt: 1 }, new Map()));
        messages.push({ exchange: m.exchange, routingKey: m.routingKey, body: m.body, properties: m.properties, stepRefs: m.stepRefs, task_id: p.taskId });
      }
    });
  }

  // The first steps of the new tasks, several to a message when allowed. A task with an
  // idempotency key may turn out not to be created (the key was taken meanwhile), so its steps
  // travel in messages of their own: every message is written exactly when all the tasks it
  // carries steps of were created.
  const keyed = new Set(fresh.filter((p) => p.input.idempotency_key).map((p) => p.taskId));
  const groups = new Map<string, Array<OutgoingMessage & { task_id: string }>>();
  for (const m of messages) {
    const k = keyed.has(m.task_id) ? m.task_id : '';
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(m);
  }
  const packs = [...groups.values()].flatMap((g) =>
    packStepGroups(deps.names, g, deps.stepsPerMessage ?? 1).map((p) => ({
      message: p.message,
      task_ids: [...new Set(p.parts.map((m) => m.task_id))],
    })),
  );

  // Each row as the JSON array of its values by position (create_tasks_rows, migration 0011,
  // names them): Postgres reads positions at half the cost of keys. The versions taken as the
  // newest of their names without asking go first, to be checked (migration 0012; none when
  // every template was asked for or named by version).
  const checks = [...new Set(fresh.map((p) => newest.get(templateKey(p.input))).filter((c) => c !== undefined))];
  const rows = await preparedQuery<{ created: Array<{ id: string; created_at: string }> | null; outbox: string[]; stale: boolean }>(deps.db, CREATE_BATCH, [
    JSON.stringify(checks),
    JSON.stringify(taskRows),
    JSON.stringify(stepRows.map((r) => [r.id, r.task_id, r.name, r.position, r.state, r.attempt, r.max_attempts, r.deps_pending, r.dependents])),
    // No audit rows: the statement writes each task's from the rows it creates (migration 0018).
    null,
    // The tasks a message carries steps of, then the row as a result batch writes it.
    JSON.stringify(packs.map((p) => [p.task_ids, ...outboxPositions(p.message)])),
  ]);
  if (rows[0]!.stale) {
    // A newer version was registered (by another orchestrator) since this one last asked:
    // nothing was written. Create the batch again from what the database says now.
    deps.registry.forgetNewest(checks.map((c) => [c[0], c[1]] as const));
    return createTasks(deps, inputs, { views: options.views, held: false });
  }
  const createdAt = new Map((rows[0]!.created ?? []).map((r) => [r.id, r.created_at]));

  const existingKeys: Prepared[] = [];
  for (const p of fresh) {
    if (!createdAt.has(p.taskId)) {
      existingKeys.push(p);
      continue;
    }
    const template = templates.get(p.taskId)!;
    const task: TaskSummary = {
      id: p.taskId,
      namespace: template.namespace,
      name: template.name,
      version: template.version,
      state: 'in_progress',
      correlation_id: p.correlationId,
      idempotency_key: p.input.idempotency_key ?? null,
      parent_task_id: p.input.parent?.task_id ?? null,
      parent_step_id: p.input.parent?.step_id ?? null,
      created_at: new Date(createdAt.get(p.taskId)!).toISOString(),
    };
    outcomes[p.index] = options.views
      ? { ok: true, created: true, task, view: createdView(task, p.input.context, template, stepsOf.get(p.taskId)!) }
      : { ok: true, created: true, task };
  }

  // The outbox ids only serve to delete the batch's rows once all are confirmed.
  const written = packs.filter((p) => p.task_ids.every((id) => createdAt.has(id)));
  const outbox = written.map(({ message: m }, i): OutboxRow => ({
    exchange: m.exchange,
    routingKey: m.routingKey,
    body: m.body,
    properties: m.properties,
    id: String(rows[0]!.outbox[i]),
  }));

  // Idempotency keys already used: return the existing task. The statement that found each
  // key taken waited for the transaction that took it to commit, so the row is there to read.
  // The others are created by now: if this read fails, only the requests it was for fail,
  // and asking again with the same key returns the task.
  if (existingKeys.length > 0) {
    let byKey: Map<string, TaskSummaryRow> | null = null;
    try {
      const found = await sql<TaskSummaryRow>`
        SELECT ${sql.raw(SUMMARY_COLUMNS)} FROM tasks
        WHERE (namespace, idempotency_key) IN (
          SELECT * FROM jsonb_to_recordset(${JSON.stringify(
            existingKeys.map((p) => ({ namespace: p.input.namespace, idempotency_key: p.input.idempotency_key })),
          )}::jsonb) AS x(namespace text, idempotency_key text))`.execute(deps.db);
      byKey = new Map(found.rows.map((r) => [`${r.namespace}\u0000${r.idempotency_key}`, r]));
    } catch (err) {
      deps.logger.warn({ err: (err as Error).message }, 'tasks of taken idempotency keys could not be read');
    }
    for (const p of existingKeys) {
      const row = byKey?.get(`${p.input.namespace}\u0000${p.input.idempotency_key}`);
      outcomes[p.index] = row
        ? { ok: true, created: false, task: toSummary(row) }
        : { ok: false, error: new TaskerError(ErrorCode.INTERNAL, `the task of idempotency key '${p.input.idempotency_key}' could not be read; retry with the same key`) };
    }
  }

  if (deps.taskCache && !deps.taskCache.shared) {
    // After the commit nothing may fail the creation: a task the cache cannot copy (a
    // program's context holding what JSON drops, such as a function) is only not held.
    try {
      remember(deps.taskCache, fresh, templates, stepsOf, outcomes);
    } catch (err) {
      deps.logger.debug({ err: (err as Error).message }, 'created tasks not held by the task cache');
    }
  }

  for (const { p, first } of repeats) {
    const o = outcomes[first.index];
    outcomes[p.index] = o && o.ok ? { ok: true, created: false, task: o.task } : o!;
  }
  return { outcomes, outbox };
}

/** A request's template, as namespace, name and version asked for (none: the newest). */
function templateKey(input: CreateTaskBody): string {
  return `${input.namespace}\u0000${input.name}\u0000${input.version ?? ''}`;
}

/** The tasks just created, as their rows now are, for the TaskCache. */
function remember(
  cache: TaskCache,
  fresh: Prepared[],
  templates: Map<string, CompiledTemplate>,
  stepsOf: Map<string, Array<Record<string, unknown>>>,
  outcomes: CreateOutcome[],
): void {
  const tasks = new Map<string, LockedTask>();
  const steps: StepState[] = [];
  for (const p of fresh) {
    const o = outcomes[p.index];
    if (!o?.ok || !o.created || p.input.parent) continue;
    const template = templates.get(p.taskId)!;
    tasks.set(p.taskId, {
      id: p.taskId,
      state: 'in_progress',
      namespace: template.namespace,
      name: template.name,
      version: template.version,
      template_id: String(p.templateId),
      correlation_id: p.correlationId,
      // A copy: the caller's object is not ours to keep (a program may change it afterwards).
      context: structuredClone(p.input.context),
      parent_task_id: null,
      parent_step_id: null,
    });
    for (const r of stepsOf.get(p.taskId)!) {
      steps.push({
        id: r.id as string,
        task_id: p.taskId,
        name: r.name as string,
        state: r.state as string,
        attempt: r.attempt as number,
        max_attempts: r.max_attempts as number,
        deps_pending: r.deps_pending as number,
        dependents: r.dependents as string[],
        result: null,
        error: null,
        finished_at: null,
      });
    }
  }
  if (tasks.size > 0) cache.keep(tasks, steps);
}

export const SUMMARY_COLUMNS =
  'id, namespace, name, version, state, correlation_id, idempotency_key, parent_task_id, parent_step_id, created_at';

export interface TaskSummaryRow {
  id: string;
  namespace: string;
  name: string;
  version: string;
  state: TaskSummary['state'];
  correlation_id: string;
  idempotency_key: string | null;
  parent_task_id: string | null;
  parent_step_id: string | null;
  created_at: Date;
}

export function toSummary(r: TaskSummaryRow): TaskSummary {
  return {
    id: r.id,
    namespace: r.namespace,
    name: r.name,
    version: r.version,
    state: r.state,
    correlation_id: r.correlation_id,
    idempotency_key: r.idempotency_key,
    parent_task_id: r.parent_task_id,
    parent_step_id: r.parent_step_id,
    created_at: new Date(r.created_at).toISOString(),
  };
}

/**
 * A task as its creating transaction left it (`now()` is the transaction's time throughout).
 * The summary's fields are named, not spread: a spread followed by more properties is slow
 * in V8 (see outboxRow), and this is every `POST /v1/tasks` answer.
 */
function createdView(task: TaskSummary, context: CreateTaskBody['context'], template: CompiledTemplate, rows: Array<Record<string, unknown>>): TaskView {
  return {
    id: task.id,
    namespace: task.namespace,
    name: task.name,
    version: task.version,
    state: task.state,
    correlation_id: task.correlation_id,
    idempotency_key: task.idempotency_key,
    parent_task_id: task.parent_task_id,
    parent_step_id: task.parent_step_id,
    created_at: task.created_at,
    updated_at: task.created_at,
    completed_at: null,
    context: context as TaskView['context'],
    error: null,
    steps: template.steps.map((def, position) => {
      const r = rows[position]!;
      return {
        id: r['id'] as string,
        name: def.name,
        state: r['state'] as 'enqueued' | 'pending',
        attempt: r['attempt'] as number,
        max_attempts: def.retry.maxAttempts,
        dependencies: def.dependencies,
        handler_callable: def.callable,
        result: null,
        error: null,
        enqueued_at: r['state'] === 'enqueued' ? task.created_at : null,
        started_at: null,
        finished_at: null,
        next_retry_at: null,
        waiting_for_task_id: null,
      };
    }),
  };
}
