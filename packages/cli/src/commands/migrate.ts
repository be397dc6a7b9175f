import type { Command } from 'commander';
import { destination, pino } from 'pino';
import { CliError, ExitCode } from '../exit-codes.ts';
import { examples, type Runtime } from '../runtime.ts';

/** Orchestrator configuration from TASKER_* variables and the given overrides; bad values are usage errors. */
export async function orchestratorConfig(input: Record<string, unknown>) {
  const { resolveConfig } = await import('@tasker/orchestrator');
  try {
    return resolveConfig(input);
  } catch (err) {
    throw new CliError(ExitCode.USAGE, (err as Error).message);
  }
}

export function registerMigrateCommand(program: Command, rt: Runtime): void {
  examples(
    program
      .command('migrate')
      .description('create the database if missing, then the schema, and apply pending migrations (safe when several run at once)')
      .option('--database-url <url>', 'PostgreSQL URL (default: TASKER_DATABASE_URL, else postgres://postgres:postgres@127.0.0.1:5432/tasker)')
      .option('--schema <name>', 'schema holding the tables (default: TASKER_DB_SCHEMA, else tasker)'),
    'tasker migrate',
    'TASKER_DATABASE_URL=postgres://tasker:secret@db:5432/tasker tasker migrate --schema tasker',
  ).action(async (opts: { databaseUrl?: string; schema?: string }, cmd: Command) => {
    const { out } = rt.begin(cmd);
    const config = await orchestratorConfig({
      ...(opts.databaseUrl ? { databaseUrl: opts.databaseUrl } : {}),
      ...(opts.schema ? { dbSchema: opts.schema } : {}),
    });
    const { createDb, ensureDatabase, migrate } = await import('@tasker/orchestrator');
    // Logs to stderr, quiet by default: stdout carries the result.
    const logger = pino({ level: process.env['TASKER_LOG_LEVEL'] ?? 'warn' }, destination(2));
    await ensureDatabase(config.databaseUrl, logger);
    const { db } = createDb(config.databaseUrl, config.dbSchema, 2);
    let applied: string[];
    try {
      applied = await migrate(db, config.dbSchema, logger);
    } finally {
      await db.destroy();
    }
    out.result({ schema: config.dbSchema, applied }, () => {
      out.line(
        applied.length > 0
          ? `schema ${config.dbSchema}: applied ${applied.length} migration${applied.length === 1 ? '' : 's'} (${applied.join(', ')})`
          : `schema ${config.dbSchema} is up to date`,
      );
    });
    rt.exitCode = ExitCode.OK;
  });
}
