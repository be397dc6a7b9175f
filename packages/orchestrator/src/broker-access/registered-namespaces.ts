import pg from 'pg';

/**
 * The namespaces registered in the database (`<schema>.namespaces`): every namespace with a
 * template gets a user. A database, schema or table that does not exist yet (apply run
 * before the orchestrator's first start) means none, said in `note`.
 */
export async function registeredNamespaces(databaseUrl: string, schema: string): Promise<{ namespaces: string[]; note: string | null }> {
  const client = new pg.Client({ connectionString: databaseUrl });
  try {
    await client.connect();
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === '3D000') return { namespaces: [], note: `database of TASKER_DATABASE_URL does not exist yet: no registered namespaces` };
    throw new Error(`cannot read the registered namespaces from PostgreSQL (TASKER_DATABASE_URL): ${(err as Error).message}`);
  }
  try {
    const { rows } = await client.query<{ name: string }>(`SELECT name FROM ${pg.escapeIdentifier(schema)}.namespaces ORDER BY name`);
    return { namespaces: rows.map((r) => r.name), note: null };
  } catch (err) {
    // 42P01: no such table (or schema): nothing registered yet.
    if ((err as { code?: string }).code === '42P01') return { namespaces: [], note: `schema '${schema}' has no namespaces table yet: no registered namespaces` };
    throw new Error(`cannot read the registered namespaces from ${schema}.namespaces: ${(err as Error).message}`);
  } finally {
    await client.end().catch(() => undefined);
  }
}
