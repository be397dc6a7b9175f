import { sql } from 'kysely';
import type { Db } from '@tasker/orchestrator';

/** Row count and an md5 of every row (as text, in key order) of one table. */
export interface TableDigest {
  rows: number;
  md5: string;
}

export type StateSnapshot = Record<'tasks' | 'steps' | 'transitions' | 'templates' | 'namespaces', TableDigest>;

/**
 * Counts and checksums of the state tables. Rows of the tasks in `exceptTasks` (a row's
 * own fixture, which it is expected to change) are left out. Any update bumps a row's text
 * (`updated_at` at least), so equal digests mean nothing was inserted, changed or deleted.
 */
export async function snapshotState(db: Db, exceptTasks: string[] = []): Promise<StateSnapshot> {
  const ex = exceptTasks;
  const { rows } = await sql<{ t: keyof StateSnapshot; rows: number; md5: string }>`
    SELECT 'tasks' AS t, count(*)::int AS rows, md5(coalesce(string_agg(x::text, '|' ORDER BY x.id), '')) AS md5
      FROM tasks x WHERE x.id <> ALL(${ex}::text[])
    UNION ALL
    SELECT 'steps', count(*)::int, md5(coalesce(string_agg(x::text, '|' ORDER BY x.id), ''))
      FROM steps x WHERE x.task_id <> ALL(${ex}::text[])
    UNION ALL
    SELECT 'transitions', count(*)::int, md5(coalesce(string_agg(x::text, '|' ORDER BY x.id), ''))
      FROM transitions x WHERE x.task_id <> ALL(${ex}::text[])
    UNION ALL
    SELECT 'templates', count(*)::int, md5(coalesce(string_agg(x::text, '|' ORDER BY x.id), '')) FROM templates x
    UNION ALL
    SELECT 'namespaces', count(*)::int, md5(coalesce(string_agg(x::text, '|' ORDER BY x.name), '')) FROM namespaces x
  `.execute(db);
  return Object.fromEntries(rows.map((r) => [r.t, { rows: r.rows, md5: r.md5 }])) as StateSnapshot;
}

/** One step's row as text (null when there is no such step), to show it did not move. */
export async function stepRowText(db: Db, stepId: string): Promise<string | null> {
  const { rows } = await sql<{ row: string }>`SELECT s::text AS row FROM steps s WHERE s.id = ${stepId}`.execute(db);
  return rows[0]?.row ?? null;
}
