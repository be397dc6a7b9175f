import { sql, type Kysely } from 'kysely';

// Append-only: never edit a migration that has landed; add the next number instead.
//
// steps.task_id → tasks and tasks.template_id → templates were foreign keys, which Postgres
// checks row by row: one query per inserted row. Creating a batch of 200 diamond tasks made
// 1,000 of those checks, and they were 57 % of the creating statement's time (auto_explain
// on the bench's template: 22.8 of 39.7 ms; a 200-task batch fell from 68 to 49 ms p50
// without them). The same references are now checked once per statement, over all the
// rows it inserted (transition tables), with the same guarantees:
//
// - inserting steps (tasks) whose task (template) does not exist fails with 23503
//   foreign_key_violation, naming the missing id; the referenced rows are locked FOR KEY
//   SHARE, as a foreign key check locks them, so no transaction deletes them meanwhile;
// - deleting or truncating a task (template) that steps (tasks) still refer to fails with
//   23503 (nothing in Tasker deletes either; this guards hands in psql);
// - steps.task_id, tasks.id, tasks.template_id and templates.id cannot change once written.
//
// The functions name tables through TG_TABLE_SCHEMA: they work whatever the caller's
// search_path (an operator's psql session included).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE steps DROP CONSTRAINT steps_task_id_fkey;
    ALTER TABLE tasks DROP CONSTRAINT tasks_template_id_fkey;

    -- After INSERT on steps (child = steps, key task_id, parent = tasks) or on tasks
    -- (child = tasks, key template_id, parent = templates): every key must exist.
    CREATE FUNCTION check_inserted_references() RETURNS trigger LANGUAGE plpgsql AS $fn$
    DECLARE
      key_column text := TG_ARGV[0];
      parent text := TG_ARGV[1];
      missing text;
    BEGIN
      EXECUTE format(
        'SELECT count(*) FROM (SELECT 1 FROM %I.%I WHERE id IN (SELECT %I FROM new_rows) FOR KEY SHARE) locked',
        TG_TABLE_SCHEMA, parent, key_column);
      EXECUTE format(
        'SELECT n.%I::text FROM new_rows n WHERE NOT EXISTS (SELECT 1 FROM %I.%I p WHERE p.id = n.%I) LIMIT 1',
        key_column, TG_TABLE_SCHEMA, parent, key_column) INTO missing;
      IF missing IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
          MESSAGE = format('insert into %s: %s %s does not exist in %s', TG_TABLE_NAME, key_column, missing, parent);
      END IF;
      RETURN NULL;
    END
    $fn$;

    -- After DELETE on tasks (child = steps, key task_id) or templates (child = tasks, key
    -- template_id): nothing may still refer to a deleted row.
    CREATE FUNCTION check_deleted_references() RETURNS trigger LANGUAGE plpgsql AS $fn$
    DECLARE
      child text := TG_ARGV[0];
      key_column text := TG_ARGV[1];
      referenced text;
    BEGIN
      EXECUTE format(
        'SELECT o.id::text FROM old_rows o WHERE EXISTS (SELECT 1 FROM %I.%I c WHERE c.%I = o.id) LIMIT 1',
        TG_TABLE_SCHEMA, child, key_column) INTO referenced;
      IF referenced IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
          MESSAGE = format('delete from %s: %s %s is still referred to by %s.%s', TG_TABLE_NAME, TG_TABLE_NAME, referenced, child, key_column);
      END IF;
      RETURN NULL;
    END
    $fn$;

    CREATE FUNCTION refuse_reference_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
      RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
        MESSAGE = format('update of %s: %s cannot change once written', TG_TABLE_NAME, TG_ARGV[0]);
    END
    $fn$;

    -- A TRUNCATE fires no DELETE trigger; after one, the child table must be empty too
    -- (TRUNCATE tasks, steps in one statement stays possible: it orphans nothing).
    CREATE FUNCTION check_truncated_references() RETURNS trigger LANGUAGE plpgsql AS $fn$
    DECLARE
      child_rows boolean;
    BEGIN
      EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I)', TG_TABLE_SCHEMA, TG_ARGV[0]) INTO child_rows;
      IF child_rows THEN
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
          MESSAGE = format('truncate %s: %s still refers to it; truncate both in one statement', TG_TABLE_NAME, TG_ARGV[0]);
      END IF;
      RETURN NULL;
    END
    $fn$;

    CREATE TRIGGER steps_task_exists AFTER INSERT ON steps
      REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION check_inserted_references('task_id', 'tasks');
    CREATE TRIGGER tasks_template_exists AFTER INSERT ON tasks
      REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION check_inserted_references('template_id', 'templates');

    CREATE TRIGGER tasks_not_referenced AFTER DELETE ON tasks
      REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION check_deleted_references('steps', 'task_id');
    CREATE TRIGGER templates_not_referenced AFTER DELETE ON templates
      REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION check_deleted_references('tasks', 'template_id');

    CREATE TRIGGER steps_task_id_fixed BEFORE UPDATE ON steps
      FOR EACH ROW WHEN (NEW.task_id IS DISTINCT FROM OLD.task_id) EXECUTE FUNCTION refuse_reference_change('task_id');
    CREATE TRIGGER tasks_keys_fixed BEFORE UPDATE ON tasks
      FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id OR NEW.template_id IS DISTINCT FROM OLD.template_id)
      EXECUTE FUNCTION refuse_reference_change('id and template_id');
    CREATE TRIGGER templates_id_fixed BEFORE UPDATE ON templates
      FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id) EXECUTE FUNCTION refuse_reference_change('id');

    CREATE TRIGGER tasks_truncated_alone AFTER TRUNCATE ON tasks
      FOR EACH STATEMENT EXECUTE FUNCTION check_truncated_references('steps');
    CREATE TRIGGER templates_truncated_alone AFTER TRUNCATE ON templates
      FOR EACH STATEMENT EXECUTE FUNCTION check_truncated_references('tasks');
  `.execute(db);
}
