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

/** Any JSON object: task contexts, handler initialization. */
export const jsonObject = z.record(z.string(), z.json());

export const errorCodeString = z.string().min(1).max(64);
