import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { measureWriteCost } from '../scripts/write-cost.ts';
import { DATABASE_URL } from './support/statements.ts';

async function schemaExists(name: string): Promise<boolean> {
  const c = new pg.Client({ connectionString: DATABASE_URL });
  await c.connect();
  try {
    return (await c.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [name])).rowCount === 1;
  } finally {
    await c.end();
  }
}

describe('write-cost script (issue 7: what one result write costs)', () => {
  it('writes every result of its tasks the orchestrator way, times each write and the floor, and drops its schema', async () => {
    const r = await measureWriteCost({ databaseUrl: DATABASE_URL, tasks: 2, warmup: 1 });
    // Four results a task, the warm-up's not counted.
    expect(r.write.samples).toBe(8);
    expect(r.floor.samples).toBe(8);
    for (const p of [r.write, r.floor]) {
      expect(p.p50).toBeGreaterThan(0);
      expect(p.p99).toBeGreaterThanOrEqual(p.p50);
    }
    expect(r.written).toEqual({ complete: 3, audit: 24, outbox: 9 });
    expect(await schemaExists(r.schema)).toBe(false);
    // Where the suite's Postgres runs on this machine (the default), its backend's CPU time is
    // read for every call, and a write does more work than a no-op.
    const host = new URL(DATABASE_URL).hostname;
    if (!['127.0.0.1', 'localhost', '::1', ''].includes(host)) return;
    expect(r.backendCpuUs?.write.samples).toBe(8);
    expect(r.backendCpuUs?.floor.samples).toBe(8);
    expect(r.backendCpuUs!.write.p50).toBeGreaterThan(r.backendCpuUs!.floor.p50);
  });

  it('runs a replacement given as SQL, reports what it wrote, and says so when a write found nothing to write', async () => {
    // Without the audit: the counts show the replacement ran.
    const noAudit = `
      CREATE OR REPLACE FUNCTION write_result_rows_checked_kept(p_task_ids text[], p_seen_tasks text, p_seen_steps text,
        p_steps jsonb, p_tasks jsonb, p_transitions jsonb, p_outbox jsonb) RETURNS bigint[] LANGUAGE plpgsql AS $fn$
      BEGIN
        UPDATE steps s SET state = r->>4, attempt = (r->>5)::int, deps_pending = (r->>6)::int
          FROM jsonb_array_elements(p_steps) AS e(r) WHERE s.id = r->>0;
        UPDATE tasks t SET state = r->>2 FROM jsonb_array_elements(p_tasks) AS e(r) WHERE t.id = r->>0;
        RETURN ARRAY(SELECT 0::bigint FROM jsonb_array_elements(p_outbox));
      END $fn$;`;
    const r = await measureWriteCost({ databaseUrl: DATABASE_URL, tasks: 1, warmup: 0, extraSql: noAudit });
    expect(r.written).toEqual({ complete: 1, audit: 0, outbox: 0 });
    expect(await schemaExists(r.schema)).toBe(false);

    const stale = `
      CREATE OR REPLACE FUNCTION write_result_rows_checked_kept(p_task_ids text[], p_seen_tasks text, p_seen_steps text,
        p_steps jsonb, p_tasks jsonb, p_transitions jsonb, p_outbox jsonb) RETURNS bigint[] LANGUAGE sql AS 'SELECT NULL::bigint[]';`;
    await expect(measureWriteCost({ databaseUrl: DATABASE_URL, tasks: 1, warmup: 0, extraSql: stale })).rejects.toThrow(
      /task tsk_writecost0: the write found the task changed since it was held/,
    );
  });
});
