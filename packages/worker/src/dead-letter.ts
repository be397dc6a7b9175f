import type { Names, TaskerError } from '@tasker/protocol';
import type { Broker, Delivery } from '@tasker/transport';

/** Header values are kept short: a schema error can list many fields. */
const MAX_REASON_CHARS = 4096;

/** Routing key of a parked step message on the dead-letter exchange. */
export function parkedRoutingKey(namespace: string): string {
  return `invalid.step.${namespace}`;
}

/**
 * Parks a step message the worker cannot run (malformed JSON, wrong schema or protocol
 * version, another namespace) on the dead-letter exchange, body untouched, with why in
 * the headers (one step of a `steps` message goes alone, as its own JSON). Resolves once the broker confirms it; the caller then acks the original.
 */
export async function parkStepMessage(
  broker: Broker,
  n: Names,
  namespace: string,
  sourceQueue: string,
  delivery: Delivery,
  reason: TaskerError,
  /** What to park: the delivery's body unless given (one step of a `steps` message, alone). */
  body?: Buffer,
): Promise<void> {
  const props = delivery.message.properties;
  // One step taken out of a `steps` message is JSON, a `step`; the envelope's id is not its own.
  const own = body === undefined
    ? {
        // The body may not be JSON at all: keep what the sender said, claim nothing otherwise.
        contentType: (props.contentType as string | undefined) ?? 'application/octet-stream',
        ...(props.messageId ? { messageId: props.messageId as string } : {}),
        ...(props.correlationId ? { correlationId: props.correlationId as string } : {}),
        ...(props.type ? { type: props.type as string } : {}),
      }
    : { contentType: 'application/json', type: 'step' };
  const text = reason.message.length > MAX_REASON_CHARS ? `${reason.message.slice(0, MAX_REASON_CHARS)}…` : reason.message;
  await broker.publish(n.deadLetterExchange, parkedRoutingKey(namespace), body ?? delivery.body, {
    persistent: true,
    headers: {
      ...(props.headers ?? {}),
      'x-tasker-reason': text,
      'x-tasker-code': reason.code,
      'x-tasker-source-queue': sourceQueue,
    },
    ...own,
  });
}
