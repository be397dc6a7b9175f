// Migrates a throwaway schema and writes its description to src/db/schema.snapshot.txt.
import { writeFileSync } from 'node:fs';
import pino from 'pino';
import { createDb } from '../src/db/database.ts';
import { describeSchema } from '../src/db/describe-schema.ts';
import { ensureDatabase, migrate } from '../src/db/migrate.ts';
import { resolveConfig } from '../src/config.ts';

const config = resolveConfig();
const schema = `snapshot_${process.pid}`;
const logger = pino({ level: 'warn' });
await ensureDatabase(config.databaseUrl, logger);
const { db } = createDb(config.databaseUrl, schema, 2);
try {
  await migrate(db, schema, logger);
  const text = await describeSchema(db, schema);
  writeFileSync(new URL('../src/db/schema.snapshot.txt', import.meta.url), text);
  process.stdout.write('wrote packages/orchestrator/src/db/schema.snapshot.txt\n');
} finally {
  await db.schema.dropSchema(schema).ifExists().cascade().execute();
  await db.destroy();
}
