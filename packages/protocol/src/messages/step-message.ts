import { z } from 'zod';
import { Limits } from '../limits.ts';
import { batchMessage, id, identifier, isoTime, jsonObject, jsonValue, namespaceName, protocolVersion } from './common.ts';

/**
 * Orchestrator → worker, on the namespace's step queue. Carries everything a handler needs:
 * workers never read the database.
 */
export const StepMessage = z
  .object({
    protocol_version: protocolVersion,
    message_type: z.literal('step'),
    task_id: id,
    namespace: namespaceName,
    task_name: identifier,
    task_version: z.string(),
    correlation_id: z.string(),
    step_id: id,
    step_name: identifier,
    attempt: z.int().min(1).max(100_000).describe('1 for the first attempt.'),
    max_attempts: z.int().min(1).max(100_000),
    timeout_ms: z.int().positive().nullable().describe('The handler is aborted after this long; null: no limit.'),
    handler: z.object({
      callable: z.string().min(1),
      method: z.string().nullable().describe('Optional method of the callable to invoke (method dispatch).'),
      initialization: jsonObject.describe("The template's handler.initialization config."),
    }),
    input: jsonObject.describe("The task's context."),
    dependency_results: z
      .record(z.string(), jsonValue)
      .describe('Results of every step this one depends on, directly or transitively, by step name.'),
    idempotency_key: z
      .string()
      .describe('`<step_id>:<attempt>`: stable across redeliveries of the same attempt; use it for side effects.'),
    dispatched_at: isoTime,
  })
  .describe('A step to run: orchestrator → worker.');
export type StepMessage = z.infer<typeof StepMessage>;

/** How a `steps` message carries its step messages (for `decodeOneOrMany`). */
export const STEP_MESSAGES_SHAPE = {
  messageType: 'steps',
  field: 'steps',
  max: Limits.maxStepsPerMessage,
} as const;

/**
 * Orchestrator → worker: several step messages in one message, on the namespace's step
 * queue (every step of the message in that namespace). Sent only when the orchestrator is
 * told to (`TASKER_STEPS_PER_MESSAGE` above 1), once every worker of the namespace
 * understands it. Each step is run and answered on its own, exactly as if it had come
 * alone; the message is acked once every one of them is answered (or parked).
 */
export const StepMessages = batchMessage(STEP_MESSAGES_SHAPE, StepMessage).describe(
  'Several steps to run in one message: orchestrator → worker.',
);
export type StepMessages = z.infer<typeof StepMessages>;
