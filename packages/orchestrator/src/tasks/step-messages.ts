import { Limits, PROTOCOL_VERSION, STEP_MESSAGES_SHAPE, encodeBatch, type CompiledTemplate, type StepMessage, type Names } from '@tasker/protocol';
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
    stepRefs: [[message.step_id, message.attempt]],
    properties: {
      messageId: message.idempotency_key,
      correlationId: message.correlation_id,
      type: 'step',
      persistent: true,
      contentType: 'application/json',
    },
  };
}

/** A `steps` message stays under half the message limit, as a worker's `step_results` does. */
const MAX_PACKED_BYTES = Limits.maxMessageBytes / 2;

/**
 * Puts the step messages of one namespace together, at most `max` in one `steps` message
 * and at most half the message limit in bytes (issue 7: each message costs the broker, the
 * outbox and the worker about as much as a step's database work). Other messages, and a
 * step that finds no company, go unchanged; with `max` 1 the list comes back as it was.
 */
export function packSteps(n: Names, messages: OutgoingMessage[], max: number): OutgoingMessage[] {
  if (max <= 1) return messages;
  return packStepGroups(n, messages, max).map((g) => g.message);
}

/** {@link packSteps}, saying which of the given messages each outgoing one carries. */
export function packStepGroups<M extends OutgoingMessage>(n: Names, messages: M[], max: number): Array<{ message: OutgoingMessage; parts: M[] }> {
  const out: Array<{ message: OutgoingMessage; parts: M[] }> = [];
  const byQueue = new Map<string, M[]>();
  for (const m of messages) {
    if (max <= 1 || m.exchange !== n.stepsExchange || m.properties.type !== 'step') {
      out.push({ message: m, parts: [m] });
      continue;
    }
    let group = byQueue.get(m.routingKey);
    if (!group) byQueue.set(m.routingKey, (group = []));
    group.push(m);
  }
  for (const group of byQueue.values()) {
    let i = 0;
    while (i < group.length) {
      let bytes = 0;
      let j = i;
      while (j < group.length && j - i < max) {
        bytes += Buffer.byteLength(group[j]!.body) + 1;
        if (j > i && bytes > MAX_PACKED_BYTES) break;
        j += 1;
      }
      const parts = group.slice(i, j);
      out.push({ message: parts.length === 1 ? parts[0]! : packed(parts), parts });
      i = j;
    }
  }
  return out;
}

/** One `steps` message around step messages already serialized. */
function packed(steps: OutgoingMessage[]): OutgoingMessage {
  const first = steps[0]!;
  return {
    exchange: first.exchange,
    routingKey: first.routingKey,
    body: encodeBatch(STEP_MESSAGES_SHAPE, steps.map((s) => s.body)),
    stepRefs: steps.every((s) => s.stepRefs) ? steps.flatMap((s) => s.stepRefs!) : undefined,
    properties: {
      messageId: `${String(first.properties.messageId)}+${steps.length - 1}`,
      type: 'steps',
      persistent: true,
      contentType: 'application/json',
    },
  };
}
