import { sql, type Kysely } from 'kysely';

// Append-only: never edit a migration that has landed; add the next number instead.
//
// create_tasks_rows_newest creates a batch as create_tasks_rows (migration 0011) does, once it
// has checked that each template the orchestrator took for "the newest version" of its name
// still is (issue 7: a task request without a version cost a round trip to ask which version
// is newest before the creation's own; one at a time, 0.3 ms of POST /v1/tasks's 3.3 ms).
//
//   p_newest: [[namespace, name, template_id], ...]
//
// The newest version is the one TemplateRegistry.resolve orders first (major, minor, patch,
// a release before its pre-releases, then pre-releases in reverse). If a template of the list
// is no longer the newest of its name (another orchestrator registered a newer version), the
// function writes nothing and answers `stale`; the orchestrator asks the database which
// version is newest and creates the batch again.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE FUNCTION create_tasks_rows_newest(p_newest jsonb, p_tasks jsonb, p_steps jsonb, p_transitions jsonb, p_outbox jsonb)
    RETURNS TABLE (created jsonb, outbox bigint[], stale boolean)
    LANGUAGE plpgsql VOLATILE
    SET plan_cache_mode = force_generic_plan
    SET enable_seqscan = off
    AS $fn$
    BEGIN
      IF EXISTS (
        SELECT 1 FROM jsonb_array_elements(p_newest) AS e(r)
        WHERE (SELECT t.id FROM templates t
               WHERE t.namespace = r->>0 AND t.name = r->>1
               ORDER BY t.major DESC, t.minor DESC, t.patch DESC, (t.prerelease = '') DESC, t.prerelease DESC
               LIMIT 1) IS DISTINCT FROM (r->>2)::bigint
      ) THEN
        RETURN QUERY SELECT NULL::jsonb, NULL::bigint[], true;
        RETURN;
      END IF;
      RETURN QUERY SELECT c.created, c.outbox, false FROM create_tasks_rows(p_tasks, p_steps, p_transitions, p_outbox) AS c;
    END
    $fn$;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP FUNCTION create_tasks_rows_newest(jsonb, jsonb, jsonb, jsonb, jsonb)`.execute(db);
}
