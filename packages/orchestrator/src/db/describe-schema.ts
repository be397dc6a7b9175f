import { sql } from 'kysely';
import type { Db } from './database.ts';

/**
 * A plain-text description of the tables (with their storage parameters), columns, indexes,
 * constraints, functions and triggers in a schema.
 * The committed snapshot (`schema.snapshot.txt`) must equal this for a freshly migrated
 * schema: a migration that changes the schema updates the snapshot in the same commit
 * (`pnpm db:snapshot`), so reviews see the schema change itself.
 */
export async function describeSchema(db: Db, schema: string): Promise<string> {
  const columns = await sql<{ table_name: string; column_name: string; data_type: string; collation_name: string | null; is_nullable: string; column_default: string | null }>`
    SELECT table_name, column_name, data_type, collation_name, is_nullable, column_default
    FROM information_schema.columns WHERE table_schema = ${schema}
    ORDER BY table_name, ordinal_position`.execute(db);
  const indexes = await sql<{ tablename: string; indexdef: string }>`
    SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = ${schema} ORDER BY tablename, indexname`.execute(db);
  const constraints = await sql<{ table_name: string; def: string }>`
    SELECT c.conrelid::regclass::text AS table_name, pg_get_constraintdef(c.oid) AS def
    FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
    WHERE n.nspname = ${schema} ORDER BY 1, 2`.execute(db);
  const functions = await sql<{ def: string }>`
    SELECT p.proname || '(' || pg_get_function_arguments(p.oid) || ') returns ' || pg_get_function_result(p.oid)
           || COALESCE(' SET ' || array_to_string(p.proconfig, ', '), '') AS def
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = ${schema} ORDER BY 1`.execute(db);
  const triggers = await sql<{ def: string }>`
    SELECT pg_get_triggerdef(t.oid) AS def
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ${schema} AND NOT t.tgisinternal ORDER BY c.relname, t.tgname`.execute(db);
  const options = await sql<{ relname: string; reloptions: string[] }>`
    SELECT c.relname, c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ${schema} AND c.relkind = 'r' AND c.reloptions IS NOT NULL ORDER BY c.relname`.execute(db);
  const tableOptions = new Map(options.rows.map((o) => [o.relname, o.reloptions]));
  const strip = (s: string) => s.split(`${schema}.`).join('');
  const lines: string[] = [];
  let table = '';
  for (const c of columns.rows) {
    if (c.table_name !== table) {
      const withOptions = tableOptions.get(c.table_name);
      lines.push(`table ${(table = c.table_name)}${withOptions ? ` with (${withOptions.join(', ')})` : ''}`);
    }
    // A collation is shown where a column names one (information_schema leaves the database's default out).
    lines.push(`  ${c.column_name} ${c.data_type}${c.collation_name ? ` collate ${c.collation_name}` : ''}${c.is_nullable === 'NO' ? ' not null' : ''}${c.column_default ? ` default ${strip(c.column_default)}` : ''}`);
  }
  for (const i of indexes.rows) lines.push(`index ${strip(i.indexdef)}`);
  for (const c of constraints.rows) lines.push(`constraint ${strip(c.table_name)}: ${strip(c.def)}`);
  // A function pinned to the installation's schema (`SET search_path FROM CURRENT`) names it: shown
  // as <schema>, so that the description does not depend on the schema's name.
  const pinned = (s: string) => s.split(`search_path=${schema}`).join('search_path=<schema>').split(`search_path="${schema}"`).join('search_path=<schema>');
  for (const f of functions.rows) lines.push(`function ${pinned(strip(f.def))}`);
  for (const t of triggers.rows) lines.push(`trigger ${strip(t.def)}`);
  return `${lines.join('\n')}\n`;
}
