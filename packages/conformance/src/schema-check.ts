import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { Observed } from './observer.ts';

// ajv-formats is CommonJS with a default export.
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;

/** The published schema file, exactly as another language's team reads it. */
export const STEP_RESULT_SCHEMA_PATH = fileURLToPath(new URL('../../protocol/schemas/step-result.json', import.meta.url));

const ajv = addFormats(new Ajv2020({ allErrors: true, strict: false }));
const validateStepResult = ajv.compile(JSON.parse(readFileSync(STEP_RESULT_SCHEMA_PATH, 'utf8')) as object);

/** What a step result message must be on the wire, for one step and attempt. */
export interface ExpectedEnvelope {
  namespace: string;
  taskId: string;
  stepName: string;
  attempt: number;
  /** The worker's broker user: results carry it as `user_id`. */
  user?: string;
}

/**
 * Problems with one raw result message: the JSON Schema (packages/protocol/schemas/
 * step-result.json, with ajv), the ids it must echo, the AMQP properties the protocol
 * requires (docs/protocol.md, "Step result"). Empty when it conforms.
 */
export function resultProblems(r: Observed, e: ExpectedEnvelope): string[] {
  const problems: string[] = [];
  if (r.json === undefined) return [`body is not JSON: ${r.body.subarray(0, 80).toString('utf8')}`];
  if (!validateStepResult(r.json)) {
    const errors = (validateStepResult.errors ?? []).slice(0, 5).map((x) => `${x.instancePath || '(root)'} ${x.message ?? ''}`);
    problems.push(`does not match step-result.json: ${errors.join('; ')}`);
  }
  const j = r.json as Record<string, unknown>;
  if (j['namespace'] !== e.namespace) problems.push(`namespace ${String(j['namespace'])}, expected ${e.namespace}`);
  if (j['task_id'] !== e.taskId) problems.push(`task_id ${String(j['task_id'])}, expected ${e.taskId}`);
  if (j['step_name'] !== e.stepName) problems.push(`step_name ${String(j['step_name'])}, expected ${e.stepName}`);
  if (j['attempt'] !== e.attempt) problems.push(`attempt ${String(j['attempt'])}, expected ${e.attempt}`);
  if (r.routingKey !== e.namespace) problems.push(`routing key '${r.routingKey}', expected the namespace '${e.namespace}'`);
  const started = Date.parse(String(j['started_at']));
  const finished = Date.parse(String(j['finished_at']));
  if (!(finished >= started)) problems.push(`finished_at ${String(j['finished_at'])} is before started_at ${String(j['started_at'])}`);
  const p = r.properties;
  if (p.contentType !== 'application/json') problems.push(`content_type '${String(p.contentType)}', expected application/json`);
  if (p.deliveryMode !== 2) problems.push(`delivery_mode ${String(p.deliveryMode)}, expected 2 (persistent)`);
  if (e.user !== undefined && p.userId !== e.user) {
    problems.push(`user_id '${String(p.userId)}', expected the connection's user '${e.user}' (the orchestrator's result origin check needs it)`);
  }
  if (r.sharedWith !== undefined) {
    // One of several results in a `step_results` message: the message's properties are shared.
    if (p.type !== 'step_results') problems.push(`type '${String(p.type)}' on a message carrying several results, expected step_results`);
    return problems;
  }
  const messageId = `${String(j['step_id'])}:${String(j['attempt'])}`;
  if (p.messageId !== messageId) problems.push(`message_id '${String(p.messageId)}', expected '${messageId}'`);
  return problems;
}
