import { z } from 'zod';
import { NAMESPACE_PATTERN, IDENTIFIER_PATTERN } from '../names.ts';
import { PROTOCOL_VERSION } from '../version.ts';

export const protocolVersion = z
  .literal(PROTOCOL_VERSION)
  .describe('Protocol version of this message; receivers refuse versions they do not know.');

export const namespaceName = z
  .string()
  .regex(NAMESPACE_PATTERN, 'must be lower snake case (a-z, 0-9, _), starting with a letter, at most 63 characters')
  .describe('A team namespace, e.g. `payments`.');

export const identifier = z
  .string()
  .regex(IDENTIFIER_PATTERN, 'must be an identifier (letters, digits, _), starting with a letter');

/** Task and step ids: Tasker makes them (`tsk_...`, `stp_...`); anything else is refused early. */
export const ID_PATTERN = /^[A-Za-z0-9_:.-]{1,64}$/;
export const id = z.string().regex(ID_PATTERN, 'must be an id (letters, digits, _ : . -, at most 64)');
export const isoTime = z.iso.datetime({ offset: true });

export { jsonObject, jsonValue } from '../json-value.ts';

export const errorCodeString = z.string().min(1).max(64);

/**
 * A message carrying several items of one kind, `{protocol_version, message_type, <field>:
 * [1 to max items]}`, built from the same shape the decoder and encoder use
 * (`decodeOneOrMany`, `encodeBatch`), so the schema and the shape cannot disagree.
 */
export function batchMessage<const M extends string, const F extends string, T extends z.ZodType>(
  shape: { messageType: M; field: F; max: number },
  item: T,
) {
  return z.object({
    protocol_version: protocolVersion,
    message_type: z.literal(shape.messageType),
    [shape.field]: z.array(item).min(1).max(shape.max),
  } as { protocol_version: typeof protocolVersion; message_type: z.ZodLiteral<M> } & { [K in F]: z.ZodArray<T> });
}
