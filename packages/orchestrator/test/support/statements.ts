import { expect } from 'vitest';

/** The local test database (TASKER_DATABASE_URL, else the local Postgres). */
export const DATABASE_URL = process.env.TASKER_DATABASE_URL ?? 'postgres://postgres:postgres@127.0.0.1:5432/tasker';

/** The error a statement must fail with: its SQLSTATE and message (the test fails if it succeeded). */
export async function failure(p: Promise<unknown>): Promise<{ code: string | undefined; message: string | undefined }> {
  const err = (await p.then(() => null, (e: unknown) => e)) as { code?: string; message?: string } | null;
  expect(err, 'the statement should have failed').not.toBeNull();
  return { code: err!.code, message: err!.message };
}
