import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { ErrorCode, TaskerError, type FieldIssue } from '@tasker/protocol';

// ajv-formats is CommonJS with a default export.
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

/**
 * JSON Schema validation of task contexts against a template's `input_schema`, with ajv.
 * Validators are compiled once per template.
 */
export class ContextValidator {
  private readonly ajv: Ajv;
  private readonly cache = new Map<string, ValidateFunction>();

  constructor() {
    this.ajv = new Ajv({ allErrors: true, strict: false, useDefaults: false });
    addFormats(this.ajv);
  }

  /** Compiles a schema, throwing TEMPLATE_INVALID when the schema itself is broken. */
  compile(key: string, schema: Record<string, unknown>): ValidateFunction {
    const hit = this.cache.get(key);
    if (hit) return hit;
    let fn: ValidateFunction;
    try {
      fn = this.ajv.compile(schema);
    } catch (err) {
      throw new TaskerError(ErrorCode.TEMPLATE_INVALID, `input_schema is not a valid JSON Schema: ${(err as Error).message}`);
    }
    this.cache.set(key, fn);
    return fn;
  }

  /** Every failing field, e.g. `refund_amount: must be number`, `ticket_id: is required`. */
  validate(key: string, schema: Record<string, unknown>, context: unknown): FieldIssue[] {
    const fn = this.compile(key, schema);
    if (fn(context)) return [];
    return (fn.errors ?? []).map((e) => {
      const base = e.instancePath.replace(/^\//, '').replace(/\//g, '.');
      if (e.keyword === 'required') {
        const missing = String((e.params as { missingProperty: string }).missingProperty);
        return { path: base ? `${base}.${missing}` : missing, message: 'is required' };
      }
      if (e.keyword === 'additionalProperties') {
        const extra = String((e.params as { additionalProperty: string }).additionalProperty);
        return { path: base ? `${base}.${extra}` : extra, message: 'is not allowed by the input schema' };
      }
      return { path: base || '(context)', message: e.message ?? 'is invalid' };
    });
  }
}
