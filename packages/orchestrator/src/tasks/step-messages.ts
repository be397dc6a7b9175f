import { PROTOCOL_VERSION, type CompiledTemplate, type StepMessage, type Names } from '@tasker/protocol';
import type { OutgoingMessage } from '../outbox/outbox.ts';

export interface TaskForDispatch {
  id: string;
  namespace: string;
  name: string;
  version: string;
  correlation_id: string;
  context: Record<string, unknown>;
}

/**
 * The step message for one attempt: everything the handler needs, including the results of
 * every ancestor step (a handler may read any earlier step's result, not only its parents').
 */
export function buildStepMessage(
  task: TaskForDispatch,
  template: CompiledTemplate,
  step: { id: string; name: string; attempt: number },
  completedResults: ReadonlyMap<string, unknown>,
): StepMessage {
  const def = template.steps.find((s) => s.name === step.name);
  if (!def) throw new Error(`step '${step.name}' is not in ${template.namespace}.${template.name}@${template.version}`);
  const dependency_results: Record<string, unknown> = {};
  for (const a of def.ancestors) {
    if (completedResults.has(a)) dependency_results[a] = completedResults.get(a) ?? null;
  }
  return {
    protocol_version: PROTOCOL_VERSION,
    message_type: 'step',
    task_id: task.id,
    namespace: task.namespace,
    task_name: task.name,
    task_version: task.version,
    correlation_id: task.correlation_id,
    step_id: step.id,
    step_name: step.name,
    attempt: step.attempt,
    max_attempts: def.retry.maxAttempts,
    timeout_ms: def.timeoutMs,
    handler: { callable: def.callable, method: def.method, initialization: def.initialization as StepMessage['handler']['initialization'] },
    input: task.context as StepMessage['input'],
    dependency_results: dependency_results as StepMessage['dependency_results'],
    idempotency_key: `${step.id}:${step.attempt}`,
    dispatched_at: new Date().toISOString(),
  };
}

export function stepOutgoing(n: Names, message: StepMessage): OutgoingMessage {
  return {
    exchange: n.stepsExchange,
    routingKey: message.namespace,
    body: JSON.stringify(message),
    properties: {
      messageId: message.idempotency_key,
      correlationId: message.correlation_id,
      type: 'step',
      persistent: true,
      contentType: 'application/json',
    },
  };
}
