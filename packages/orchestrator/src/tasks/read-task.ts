import { sql } from 'kysely';
import { TaskerError, ErrorCode, type ListTasksQuery, type ListTasksResponse, type TaskView } from '@tasker/protocol';
import type { Db } from '../db/database.ts';
import type { TemplateRegistry } from '../templates/registry.ts';
import { SUMMARY_COLUMNS, toSummary, type TaskSummaryRow } from './create-tasks.ts';

/** A timestamp as JSON gives it (`2026-11-29T05:07:36.402123+00:00`) or as pg reads it, in ISO form to the ms. */
const iso = (d: Date | string | null): string | null => (d ? new Date(d).toISOString() : null);

type StepArray = [
  id: string, name: string, state: string, attempt: number, max_attempts: number, result: unknown, error: unknown,
  enqueued_at: string | null, started_at: string | null, finished_at: string | null, next_retry_at: string | null,
  waiting_for_task_id: string | null,
];
type TransitionArray = [step_id: string | null, from_state: string | null, to_state: string, attempt: number | null, reason: string, actor: string | null, at: string];

type TaskRow = TaskSummaryRow & {
  template_id: string;
  context: Record<string, unknown>;
  error: unknown;
  updated_at: Date;
  completed_at: Date | null;
  steps: StepArray[];
  transitions: TransitionArray[] | null;
  /** As SUMMARY_COLUMNS gives them, created_at as JSON's text (toSummary reads either). */
  parent: TaskSummaryRow | null;
  children: TaskSummaryRow[] | null;
};

/**
 * A task with its steps in template order, and optionally its transitions, its parent and
 * its children; null when there is no such task. One statement, whatever the detail: a
 * caller of `GET /v1/tasks/:id?wait_ms=` is answered one round trip after the commit that
 * ended its task, not five (the task, its steps, transitions, parent and children).
 */
export async function readTask(
  db: Db,
  registry: TemplateRegistry,
  id: string,
  detail: { transitions?: boolean; family?: boolean } = {},
): Promise<TaskView | null> {
  const { rows } = await sql<TaskRow>`/* prepared:read_task */
    SELECT ${sql.raw(SUMMARY_COLUMNS)}, template_id, context, error, updated_at, completed_at,
      (SELECT COALESCE(json_agg(json_build_array(s.id, s.name, s.state, s.attempt, s.max_attempts, s.result, s.error,
                                                 s.enqueued_at, s.started_at, s.finished_at, s.next_retry_at, s.waiting_for_task_id)
                                ORDER BY s.position), '[]')
         FROM steps s WHERE s.task_id = t.id) AS steps,
      CASE WHEN ${detail.transitions === true}::boolean THEN
        (SELECT COALESCE(json_agg(json_build_array(r.step_id, r.from_state, r.to_state, r.attempt, r.reason, r.actor, r.at) ORDER BY r.id), '[]')
           FROM transitions r WHERE r.task_id = t.id) END AS transitions,
      CASE WHEN ${detail.family === true}::boolean THEN
        (SELECT row_to_json(p) FROM (SELECT ${sql.raw(SUMMARY_COLUMNS)} FROM tasks WHERE id = t.parent_task_id) p) END AS parent,
      CASE WHEN ${detail.family === true}::boolean THEN
        (SELECT COALESCE(json_agg(c ORDER BY c.created_at, c.id), '[]')
           FROM (SELECT ${sql.raw(SUMMARY_COLUMNS)} FROM tasks WHERE parent_task_id = t.id) c) END AS children
    FROM tasks t WHERE t.id = ${id}`.execute(db);
  const t = rows[0];
  if (!t) return null;
  const template = await registry.get(t.template_id);
  const defs = new Map(template.steps.map((s) => [s.name, s]));
  const view: TaskView = {
    ...toSummary(t),
    context: t.context as TaskView['context'],
    error: (t.error ?? null) as TaskView['error'],
    updated_at: iso(t.updated_at)!,
    completed_at: iso(t.completed_at),
    steps: t.steps.map((s) => ({
      id: s[0],
      name: s[1],
      state: s[2] as TaskView['steps'][number]['state'],
      attempt: s[3],
      max_attempts: s[4],
      dependencies: defs.get(s[1])?.dependencies ?? [],
      handler_callable: defs.get(s[1])?.callable ?? '',
      result: (s[5] ?? null) as TaskView['steps'][number]['result'],
      error: (s[6] ?? null) as TaskView['steps'][number]['error'],
      enqueued_at: iso(s[7]),
      started_at: iso(s[8]),
      finished_at: iso(s[9]),
      next_retry_at: iso(s[10]),
      waiting_for_task_id: s[11] ?? null,
    })),
  };
  if (detail.transitions) {
    const names = new Map(t.steps.map((s) => [s[0], s[1]]));
    view.transitions = (t.transitions ?? []).map((r) => ({
      step_id: r[0],
      step: r[0] ? (names.get(r[0]) ?? null) : null,
      from_state: r[1],
      to_state: r[2],
      attempt: r[3],
      reason: r[4],
      actor: r[5] ?? null,
      at: iso(r[6])!,
    }));
  }
  if (detail.family) {
    view.parent = t.parent ? toSummary(t.parent) : null;
    view.children = (t.children ?? []).map(toSummary);
  }
  return view;
}

/** Cursor: the last item's (created_at, id), opaque to clients. */
function encodeCursor(createdAt: Date, id: string): string {
  return Buffer.from(JSON.stringify([new Date(createdAt).toISOString(), id])).toString('base64url');
}
function decodeCursor(cursor: string): [string, string] {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string') return [v[0], v[1]];
  } catch {
    // fall through
  }
  throw new TaskerError(ErrorCode.INVALID_MESSAGE, 'cursor is not one this API returned', [{ path: 'cursor', message: 'invalid' }]);
}

/** Tasks newest first, filtered, a page at a time (keyset pagination on created_at, id). */
export async function listTasks(db: Db, q: ListTasksQuery, namespaces: string[] | '*'): Promise<ListTasksResponse> {
  let query = db
    .selectFrom('tasks')
    .select(['id', 'namespace', 'name', 'version', 'state', 'correlation_id', 'idempotency_key', 'parent_task_id', 'parent_step_id', 'created_at', 'updated_at', 'completed_at'])
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(q.limit + 1);
  if (namespaces !== '*') query = query.where('namespace', 'in', namespaces.length > 0 ? namespaces : ['']);
  if (q.namespace) query = query.where('namespace', '=', q.namespace);
  if (q.name) query = query.where('name', '=', q.name);
  if (q.state) query = query.where('state', '=', q.state);
  if (q.correlation_id) query = query.where('correlation_id', '=', q.correlation_id);
  if (q.parent_task_id) query = query.where('parent_task_id', '=', q.parent_task_id);
  if (q.created_after) query = query.where('created_at', '>=', new Date(q.created_after));
  if (q.created_before) query = query.where('created_at', '<', new Date(q.created_before));
  if (q.cursor) {
    const [atText, id] = decodeCursor(q.cursor);
    const at = new Date(atText);
    query = query.where((eb) => eb.or([eb('created_at', '<', at), eb.and([eb('created_at', '=', at), eb('id', '<', id)])]));
  }
  const rows = await query.execute();
  const page = rows.slice(0, q.limit);
  const last = page[page.length - 1];
  return {
    items: page.map((r) => ({
      ...toSummary(r as unknown as TaskSummaryRow),
      updated_at: iso(r.updated_at)!,
      completed_at: iso(r.completed_at),
    })),
    next_cursor: rows.length > q.limit && last ? encodeCursor(last.created_at, last.id) : null,
  };
}
