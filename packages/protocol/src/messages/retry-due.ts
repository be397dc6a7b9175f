import { z } from 'zod';
import { id, protocolVersion } from './common.ts';
import { MAX_DELAY_MS } from '../names.ts';

/**
 * Orchestrator → itself through the delay queues: the wait before `attempt + 1` of a step
 * is over. The orchestrator checks the step still waits for that attempt before dispatching.
 */
export const RetryDue = z
  .object({
    protocol_version: protocolVersion,
    message_type: z.literal('retry_due'),
    task_id: id,
    step_id: id,
    /** The attempt that failed. */
    attempt: z.int().min(1).max(1000),
    delay_ms: z.int().min(0).max(MAX_DELAY_MS),
  })
  .describe('A retry delay has expired.');
export type RetryDue = z.infer<typeof RetryDue>;
