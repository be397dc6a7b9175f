import { z } from 'zod';
import { Limits } from '../limits.ts';
import { PROTOCOL_VERSION } from '../version.ts';
import type { StepMessage } from './step-message.ts';
import { batchMessage, errorCodeString, id, identifier, isoTime, jsonValue, namespaceName, protocolVersion } from './common.ts';

export const StepError = z.object({
  kind: z
    .enum(['permanent', 'retryable'])
    .describe('permanent: fail the step now. retryable: retry under the step policy while attempts remain.'),
  code: errorCodeString.describe('A Tasker error code or the handler\'s own, e.g. MISSING_FIELDS.'),
  message: z.string(),
  retry_after_ms: z
    .int()
    .min(0)
    .nullable()
    .optional()
    .describe('Retryable only: the delay the handler asks for, capped by the policy.'),
  details: jsonValue.optional(),
});
export type StepError = z.infer<typeof StepError>;

const resultBase = {
  protocol_version: protocolVersion,
  message_type: z.literal('step_result'),
  task_id: id,
  step_id: id,
  namespace: namespaceName,
  step_name: identifier,
  attempt: z.int().min(1).max(100_000),
  started_at: isoTime,
  finished_at: isoTime,
  worker_id: z.string().max(200).optional(),
  child_outcome: z
    .boolean()
    .optional()
    .describe('Set by the orchestrator only: this result is the outcome of the task a waiting step waits for.'),
  delivery_count: z
    .int()
    .min(1)
    .optional()
    .describe('How many times the broker delivered this step message (1 = first delivery; more after a worker died).'),
};

/**
 * Worker → orchestrator, to the results exchange with the step's namespace as routing key.
 * `attempt` must be the attempt of the step message it answers: results for another
 * attempt, or for a finished step, change nothing.
 */
export const StepResult = z
  .discriminatedUnion('status', [
    z.object({ ...resultBase, status: z.literal('success'), result: jsonValue }),
    z.object({ ...resultBase, status: z.literal('failure'), error: StepError }),
    z.object({
      ...resultBase,
      status: z.literal('waiting'),
      wait_for: z
        .object({ task_id: id })
        .describe('The step waits for this task (created by its handler) without holding a worker: it completes with the task\'s result or fails with its error.'),
    }),
  ])
  .describe('The outcome of one attempt of a step: worker → orchestrator.');
export type StepResult = z.infer<typeof StepResult>;

/** The fields a result copies from the step message it answers (the attempt included). */
export function answering(m: Pick<StepMessage, 'task_id' | 'step_id' | 'namespace' | 'step_name' | 'attempt'>) {
  return {
    protocol_version: PROTOCOL_VERSION,
    message_type: 'step_result' as const,
    task_id: m.task_id,
    step_id: m.step_id,
    namespace: m.namespace,
    step_name: m.step_name,
    attempt: m.attempt,
  };
}

/** How a `step_results` message carries its results (for `decodeOneOrMany`). */
export const STEP_RESULTS_SHAPE = {
  messageType: 'step_results',
  field: 'results',
  max: Limits.maxResultsPerMessage,
} as const;

/**
 * Worker → orchestrator: several results in one message, to the results exchange with
 * their namespace as routing key (every result of the message in that namespace). Optional:
 * a worker may always send results one by one. Each result is applied (or refused) on its
 * own, exactly as if it had come alone; the message is acked once all of them are.
 */
export const StepResults = batchMessage(STEP_RESULTS_SHAPE, StepResult).describe(
  'Several step results in one message (a worker answering many steps at once): worker → orchestrator.',
);
export type StepResults = z.infer<typeof StepResults>;
