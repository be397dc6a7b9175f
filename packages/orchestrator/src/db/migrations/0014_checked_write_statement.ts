import { sql, type Kysely } from 'kysely';

// Append-only: never edit a migration that has landed; add the next number instead.
//
// write_result_rows_checked_kept is write_result_rows_checked (migration 0011) with the
// settings that KEPT_PLANS (db/database.ts) gives a transaction as its own: a result batch
// of a few tasks whose copy the orchestrator holds (TaskCache) is then one prepared
// statement outside a transaction block, which PostgreSQL commits as it ends, instead of
// the text `BEGIN; SET LOCAL …; SELECT write_result_rows_checked(…); COMMIT` (issue 7,
// per-step overhead). PostgreSQL no longer parses and plans that text, with the batch in
// it as literals, or runs the six statements around the call. The guarantees are the
// function's: the check under the lock and the write commit together or not at all.
//
// write_result_rows_checked stays: big batches call it, planned for their size, and an
// orchestrator of the version before keeps calling it during a rolling upgrade.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE FUNCTION write_result_rows_checked_kept(
      p_task_ids text[], p_seen_tasks text, p_seen_steps text,
      p_steps jsonb, p_tasks jsonb, p_transitions jsonb, p_outbox jsonb)
    RETURNS bigint[]
    LANGUAGE plpgsql VOLATILE
    SET plan_cache_mode = force_generic_plan
    SET enable_seqscan = off
    SET enable_hashjoin = off
    SET enable_mergejoin = off
    AS $fn$
    BEGIN
      RETURN write_result_rows_checked(p_task_ids, p_seen_tasks, p_seen_steps, p_steps, p_tasks, p_transitions, p_outbox);
    END
    $fn$;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP FUNCTION write_result_rows_checked_kept(text[], text, text, jsonb, jsonb, jsonb, jsonb)`.execute(db);
}
