import { sql, type Kysely } from 'kysely';

// Append-only: never edit a migration that has landed; add the next number instead.
//
// steps.task_id, tasks.id, tasks.template_id and templates.id cannot change once written
// (migration 0005, which replaced those foreign keys by statement-level checks). The guards
// were BEFORE UPDATE row triggers, and PostgreSQL locks the row it is about to update
// whenever a table has one, whatever the trigger's WHEN says: every move of a step wrote a
// tuple lock to the WAL (XLOG_HEAP_LOCK) before its update (pg_waldump of the bench's
// throughput section: 39,465 such records on steps for 16,000 steps; issue 7). As AFTER
// UPDATE row triggers with the same WHEN the guards hold as before (the change raises 23503
// and the statement is undone), and an update that does not touch those columns queues
// nothing and locks nothing more.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql.raw(guards('AFTER')).execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql.raw(guards('BEFORE')).execute(db);
}

/** The three guards of migrations 0005 and 0007, fired at `when`. */
function guards(when: 'BEFORE' | 'AFTER'): string {
  return `
    DROP TRIGGER steps_task_id_fixed ON steps;
    DROP TRIGGER tasks_keys_fixed ON tasks;
    DROP TRIGGER templates_id_fixed ON templates;
    CREATE TRIGGER steps_task_id_fixed ${when} UPDATE ON steps
      FOR EACH ROW WHEN (NEW.task_id IS DISTINCT FROM OLD.task_id) EXECUTE FUNCTION refuse_reference_change('task_id');
    CREATE TRIGGER tasks_keys_fixed ${when} UPDATE ON tasks
      FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id OR NEW.template_id IS DISTINCT FROM OLD.template_id)
      EXECUTE FUNCTION refuse_reference_change('id and template_id');
    CREATE TRIGGER templates_id_fixed ${when} UPDATE ON templates
      FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id) EXECUTE FUNCTION refuse_reference_change('id');
  `;
}
