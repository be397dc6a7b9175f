/**
 * @tasker/conformance: the worker conformance kit. `runConformance()` drives a worker
 * command through the fixed cases; `CONFORMANCE_HANDLERS` is what such a worker must
 * provide; `measureWorkerOverhead()` times such a worker's per-step overhead without an
 * orchestrator. See README.md.
 */
export { runConformance, CASES, type CaseId, type CaseReport, type ConformanceOptions, type ConformanceReport } from './run.ts';
export { formatReport } from './report.ts';
export { CONFORMANCE_HANDLERS, MISSING_CALLABLE, PERMANENT_CODE, RETRY_CODE, UNICODE_PAYLOAD, UNICODE_TEXT, largeData, type ConformanceCallable } from './contract.ts';
export { conformanceTemplates, INITIALIZATION, TIMEOUT_SECONDS } from './templates.ts';
export { STEP_RESULT_SCHEMA_PATH, resultProblems } from './schema-check.ts';
export { measureWorkerOverhead, type WorkerOverhead, type WorkerOverheadOptions } from './overhead.ts';
