import { sql } from 'kysely';
import { TaskerError, ErrorCode, type ListTasksQuery, type ListTasksResponse, type TaskView } from '@tasker/protocol';
import type { Db } from '../db/database.ts';
import type { TemplateRegistry } from '../templates/registry.ts';
import { SUMMARY_COLUMNS, toSummary, type TaskSummaryRow } from './create-tasks.ts';

const iso = (d: Date | string | null): string | null => (d ? new Date(d).toISOString() : null);

type TaskRow = TaskSummaryRow & {
  template_id: string;
  context: Record<string, unknown>;
  error: unknown;
  updated_at: Date;
  completed_at: Date | null;
};

/**
 * A task with its steps in template order, and optionally its transitions, its parent and
 * its children; null when there is no such task.
 */
export async function readTask(
  db: Db,
  registry: TemplateRegistry,
  id: string,
  detail: { transitions?: boolean; family?: boolean } = {},
): Promise<TaskView | null> {
  const { rows } = await sql<TaskRow>`
    SELECT ${sql.raw(SUMMARY_COLUMNS)}, template_id, context, error, updated_at, completed_at FROM tasks WHERE id = ${id}`.execute(db);
  const t = rows[0];
  if (!t) return null;
  const template = await registry.get(t.template_id);
  const defs = new Map(template.steps.map((s) => [s.name, s]));
  const steps = await db.selectFrom('steps').selectAll().where('task_id', '=', id).orderBy('position').execute();
  const view: TaskView = {
    ...toSummary(t),
    context: t.context as TaskView['context'],
    error: (t.error ?? null) as TaskView['error'],
    updated_at: iso(t.updated_at)!,
    completed_at: iso(t.completed_at),
    steps: steps.map((s) => ({
      id: s.id,
      name: s.name,
      state: s.state as TaskView['steps'][number]['state'],
      attempt: s.attempt,
      max_attempts: s.max_attempts,
      dependencies: defs.get(s.name)?.dependencies ?? [],
      handler_callable: defs.get(s.name)?.callable ?? '',
      result: (s.result ?? null) as TaskView['steps'][number]['result'],
      error: (s.error ?? null) as TaskView['steps'][number]['error'],
      enqueued_at: iso(s.enqueued_at),
      started_at: iso(s.started_at),
      finished_at: iso(s.finished_at),
      next_retry_at: iso(s.next_retry_at),
      waiting_for_task_id: s.waiting_for_task_id ?? null,
    })),
  };
  if (detail.transitions) {
    const names = new Map(steps.map((s) => [s.id, s.name]));
    const tr = await db.selectFrom('transitions').selectAll().where('task_id', '=', id).orderBy('id').execute();
    view.transitions = tr.map((r) => ({
      step_id: r.step_id,
      step: r.step_id ? (names.get(r.step_id) ?? null) : null,
      from_state: r.from_state,
      to_state: r.to_state,
      attempt: r.attempt,
      reason: r.reason,
      actor: r.actor ?? null,
      at: iso(r.at)!,
    }));
  }
  if (detail.family) {
    const parent = t.parent_task_id
      ? (await sql<TaskSummaryRow>`SELECT ${sql.raw(SUMMARY_COLUMNS)} FROM tasks WHERE id = ${t.parent_task_id}`.execute(db)).rows[0]
      : undefined;
    view.parent = parent ? toSummary(parent) : null;
    const children = await sql<TaskSummaryRow>`
      SELECT ${sql.raw(SUMMARY_COLUMNS)} FROM tasks WHERE parent_task_id = ${id} ORDER BY created_at, id`.execute(db);
    view.children = children.rows.map(toSummary);
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
