import { sql } from 'kysely';
import type { TaskView } from '@tasker/protocol';
import type { Db } from '../db/database.ts';
import type { TemplateRegistry } from '../templates/registry.ts';
import { SUMMARY_COLUMNS, toSummary, type TaskSummaryRow } from './create-tasks.ts';

const iso = (d: Date | string | null): string | null => (d ? new Date(d).toISOString() : null);

/** A task with its steps in template order; null when there is no such task. */
export async function readTask(db: Db, registry: TemplateRegistry, id: string): Promise<TaskView | null> {
  const { rows } = await sql<
    TaskSummaryRow & { template_id: string; context: Record<string, unknown>; error: unknown; updated_at: Date; completed_at: Date | null }
  >`SELECT ${sql.raw(SUMMARY_COLUMNS)}, template_id, context, error, updated_at, completed_at FROM tasks WHERE id = ${id}`.execute(db);
  const t = rows[0];
  if (!t) return null;
  const template = await registry.get(t.template_id);
  const deps = new Map(template.steps.map((s) => [s.name, s]));
  const steps = await db.selectFrom('steps').selectAll().where('task_id', '=', id).orderBy('position').execute();
  return {
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
      dependencies: deps.get(s.name)?.dependencies ?? [],
      handler_callable: deps.get(s.name)?.callable ?? '',
      result: (s.result ?? null) as TaskView['steps'][number]['result'],
      error: (s.error ?? null) as TaskView['steps'][number]['error'],
      enqueued_at: iso(s.enqueued_at),
      started_at: iso(s.started_at),
      finished_at: iso(s.finished_at),
      next_retry_at: iso(s.next_retry_at),
    })),
  };
}
