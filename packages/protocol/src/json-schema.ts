import { z } from 'zod';
import { StepMessage, StepMessages } from './messages/step-message.ts';
import { StepResult, StepResults } from './messages/step-result.ts';
import { TaskReplies, TaskReply, TaskRequest, TaskRequests } from './messages/task-request.ts';
import { RetryDue } from './messages/retry-due.ts';
import { ControlMessage } from './messages/control.ts';
import { TemplateSpec } from './template.ts';
import { PROTOCOL_VERSION } from './version.ts';

/** The schemas published as JSON Schema files, by file stem. */
export const PUBLISHED_SCHEMAS = {
  'step-message': StepMessage,
  'step-messages': StepMessages,
  'step-result': StepResult,
  'step-results': StepResults,
  'task-request': TaskRequest,
  'task-requests': TaskRequests,
  'task-reply': TaskReply,
  'task-replies': TaskReplies,
  'retry-due': RetryDue,
  'control': ControlMessage,
  'task-template': TemplateSpec,
} as const;

/** The JSON Schema text of each published schema, as committed under `schemas/`. */
export function generateJsonSchemas(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [stem, schema] of Object.entries(PUBLISHED_SCHEMAS)) {
    const json = z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'input', unrepresentable: 'any' });
    const doc = {
      $id: `urn:tasker:schema:v${PROTOCOL_VERSION}:${stem}`,
      ...json,
    };
    out[`${stem}.json`] = `${JSON.stringify(doc, null, 2)}\n`;
  }
  return out;
}
