import { z } from 'zod';
import { id, protocolVersion } from './common.ts';

/**
 * Orchestrator → every worker, on the control fanout exchange: stop running handlers of
 * these tasks (their signal is aborted). Results that still arrive change nothing.
 */
export const ControlMessage = z
  .object({
    protocol_version: protocolVersion,
    message_type: z.literal('cancel'),
    task_ids: z.array(id).min(1),
    reason: z.string(),
  })
  .describe('A broadcast to workers: cancel the running steps of these tasks.');
export type ControlMessage = z.infer<typeof ControlMessage>;
