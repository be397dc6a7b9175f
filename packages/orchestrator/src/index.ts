export { Orchestrator, type StartOptions } from './orchestrator.ts';
export { resolveConfig, CONFIG_ENV_VARS, OrchestratorConfigSchema, type OrchestratorConfig } from './config.ts';
export { loadTemplateDir, findTemplateFiles } from './templates/load-dir.ts';
export { migrate, ensureDatabase } from './db/migrate.ts';
export { createDb, type Db, type Database } from './db/database.ts';
export * from './broker-access/index.ts';
export { tuneHeap } from './heap.ts';
export { newTaskId, newStepId } from './tasks/create-tasks.ts';
