#!/usr/bin/env node
// Creates the database (if missing) and the schema, and applies pending migrations.
import pino from 'pino';
import { resolveConfig } from '../config.ts';
import { createDb } from '../db/database.ts';
import { ensureDatabase, migrate } from '../db/migrate.ts';

const config = resolveConfig();
const logger = pino({ level: config.logLevel });
await ensureDatabase(config.databaseUrl, logger);
const { db } = createDb(config.databaseUrl, config.dbSchema, 2);
const applied = await migrate(db, config.dbSchema, logger);
logger.info({ schema: config.dbSchema, applied }, applied.length ? 'migrated' : 'schema is up to date');
await db.destroy();
