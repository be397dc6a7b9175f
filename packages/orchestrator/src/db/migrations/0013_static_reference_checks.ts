import { sql, type Kysely } from 'kysely';

// Append-only: never edit a migration that has landed; add the next number instead.
//
// The statement-level reference checks of migration 0005 (steps.task_id → tasks,
// tasks.template_id → templates) built their two queries as text on every insert (EXECUTE
// format(...), so that one function served both tables whatever the caller's search_path),
// and Postgres parsed and planned all four again for every creating statement. One task at
// a time, the two triggers took 0.19 and 0.27 ms of a creation statement's 0.62 ms
// (auto_explain with log_triggers, the bench's overhead section; issue 7).
//
// Each reference now has a function of its own with static queries, which PL/pgSQL plans
// once per connection and keeps:
//
// - `SET search_path FROM CURRENT` pins the installation's schema (the migration runs with
//   it as the search path), so the checks read this installation's tables whatever the
//   inserting session's search path, as TG_TABLE_SCHEMA did;
// - `plan_cache_mode = force_generic_plan` keeps one plan (the orchestrator's connections
//   plan every execution, see createDb), and `enable_seqscan`, `enable_hashjoin` and
//   `enable_mergejoin` off make it of index lookups and nested loops, right for a batch's
//   keys whatever size the tables were when it was made (as migration 0009's creation).
//
// The guarantees are 0005's, unchanged: a missing task or template fails the insert with
// 23503 foreign_key_violation naming the missing id, and the referenced rows are locked FOR
// KEY SHARE, as a foreign key check locks them.
/**
 * The check of one reference as a function of its own: `child`.`key` must name a row of
 * `parent` (its `id`). The names are this file's constants, written into static queries.
 */
function referenceCheck(fn: string, child: string, key: string, parent: string): string {
  return `
    CREATE FUNCTION ${fn}() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
    SET plan_cache_mode = force_generic_plan
    SET enable_seqscan = off
    SET enable_hashjoin = off
    SET enable_mergejoin = off
    AS $fn$
    DECLARE
      missing text;
    BEGIN
      PERFORM count(*) FROM (SELECT 1 FROM ${parent} p WHERE p.id IN (SELECT n.${key} FROM new_rows n) FOR KEY SHARE OF p) locked;
      SELECT n.${key}::text INTO missing FROM new_rows n WHERE NOT EXISTS (SELECT 1 FROM ${parent} p WHERE p.id = n.${key}) LIMIT 1;
      IF missing IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
          MESSAGE = format('insert into ${child}: ${key} %s does not exist in ${parent}', missing);
      END IF;
      RETURN NULL;
    END
    $fn$;`;
}

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql.raw(`
    ${referenceCheck('check_steps_task_exists', 'steps', 'task_id', 'tasks')}
    ${referenceCheck('check_tasks_template_exists', 'tasks', 'template_id', 'templates')}

    DROP TRIGGER steps_task_exists ON steps;
    CREATE TRIGGER steps_task_exists AFTER INSERT ON steps
      REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION check_steps_task_exists();
    DROP TRIGGER tasks_template_exists ON tasks;
    CREATE TRIGGER tasks_template_exists AFTER INSERT ON tasks
      REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION check_tasks_template_exists();
    DROP FUNCTION check_inserted_references();
  `).execute(db);
}
