import { z } from 'zod';
import { Limits } from './limits.ts';

/** A JSON value: what a context, a handler's result or its error details may hold. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/**
 * Any JSON value, checked in one iterative walk: null, a boolean, a finite number, a
 * string, an array or a plain object of them, nested at most `Limits.maxJsonDepth` levels.
 *
 * Not `z.json()`: zod checks each node of the value against a union of six schemas. A step
 * message of 5.6 kB (a context of 20 order lines and three dependencies' results) took 142
 * µs to check that way against 12 µs this way, four times what parsing its JSON takes
 * (`npx tsx bench/src/decode-cost.ts`). Every step message a worker receives, every result
 * and every task request is checked, so that cost grew with the payloads teams send.
 *
 * The JSON Schema of a JSON value is `{}`: every JSON document is one. The depth bound is
 * the one every message already has (`jsonValueProblem`); here it also ends the walk of an
 * object that contains itself.
 */
export const jsonValue = z.custom<JsonValue>((v) => isJsonValue(v), {
  error: (issue) => `must be JSON: ${notJson(issue.input) ?? 'it is not'}`,
});

/** Any JSON object, keys to JSON values: task contexts, handler initialization. */
export const jsonObject = z.record(z.string(), jsonValue);

/** Whether `value` is a JSON value, as {@link jsonValue} checks it. */
export function isJsonValue(value: unknown, maxDepth: number = Limits.maxJsonDepth): boolean {
  // Two parallel stacks instead of a frame per node: this walk runs on every message.
  const values: unknown[] = [value];
  const depths: number[] = [0];
  while (values.length > 0) {
    const v = values.pop();
    const depth = depths.pop()!;
    switch (typeof v) {
      case 'string':
      case 'boolean':
        continue;
      case 'number':
        if (!Number.isFinite(v)) return false;
        continue;
      case 'object': {
        if (v === null) continue;
        if (depth >= maxDepth) return false;
        if (Array.isArray(v)) {
          for (let i = 0; i < v.length; i++) {
            values.push(v[i]);
            depths.push(depth + 1);
          }
          continue;
        }
        if (!isPlainObject(v)) return false;
        for (const k in v) {
          if (!Object.hasOwn(v, k)) continue;
          values.push((v as Record<string, unknown>)[k]);
          depths.push(depth + 1);
        }
        continue;
      }
      default:
        return false;
    }
  }
  return true;
}

/**
 * Where `value` stops being JSON and why, for the error text (`at items.3.price: Infinity
 * is not a finite number`), or null if it is JSON. Only called once the value failed.
 */
export function notJson(value: unknown, maxDepth: number = Limits.maxJsonDepth): string | null {
  const found = locate(value, [], 0, maxDepth);
  if (found === null) return null;
  return found.path.length === 0 ? found.problem : `at ${found.path.join('.')}: ${found.problem}`;
}

function locate(v: unknown, path: string[], depth: number, maxDepth: number): { path: string[]; problem: string } | null {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return null;
    case 'number':
      return Number.isFinite(v) ? null : { path, problem: `${v} is not a finite number` };
    case 'undefined':
      return { path, problem: 'undefined is not a JSON value' };
    case 'bigint':
      return { path, problem: 'a bigint is not a JSON number (send it as a string)' };
    case 'object': {
      if (v === null) return null;
      if (depth >= maxDepth) return { path, problem: `nested deeper than ${maxDepth} levels` };
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) {
          const found = locate(v[i], [...path, String(i)], depth + 1, maxDepth);
          if (found) return found;
        }
        return null;
      }
      if (!isPlainObject(v)) {
        const name = (v as { constructor?: { name?: string } }).constructor?.name || 'object with a prototype of its own';
        return { path, problem: `a ${name} is not a plain object${v instanceof Date ? ' (send a date as an ISO 8601 string)' : ''}` };
      }
      for (const k in v) {
        if (!Object.hasOwn(v, k)) continue;
        const found = locate((v as Record<string, unknown>)[k], [...path, k], depth + 1, maxDepth);
        if (found) return found;
      }
      return null;
    }
    default:
      return { path, problem: `a ${typeof v} is not a JSON value` };
  }
}

function isPlainObject(v: object): boolean {
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}
