import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { describe, expect, it } from 'vitest';
import { generateJsonSchemas, PUBLISHED_SCHEMAS } from '../src/index.ts';
import * as examples from './examples.ts';

// ajv-formats is CommonJS with a default export.
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;

const schemasDir = fileURLToPath(new URL('../schemas/', import.meta.url));
const REGENERATE = 'The committed JSON Schemas are out of date: run `pnpm schemas:generate` and commit packages/protocol/schemas/.';

describe('committed JSON Schema files', () => {
  const generated = generateJsonSchemas();
  const committed = readdirSync(schemasDir).filter((f) => f.endsWith('.json')).sort();

  it('are one file per published schema', () => {
    expect(Object.keys(generated).sort()).toEqual(Object.keys(PUBLISHED_SCHEMAS).map((s) => `${s}.json`).sort());
  });

  it('are exactly the set of generated files', () => {
    expect(committed, REGENERATE).toEqual(Object.keys(generated).sort());
  });

  it.each(Object.keys(generated).sort())('%s matches the generated text exactly', (file) => {
    let text: string;
    try {
      text = readFileSync(join(schemasDir, file), 'utf8');
    } catch {
      throw new Error(`${file} is missing. ${REGENERATE}`);
    }
    expect(text, `${file} differs. ${REGENERATE}`).toBe(generated[file]);
  });
});

describe('generated JSON Schemas, as another language would use them', () => {
  // Strict, so a keyword ajv does not know fails here; union types (`type: [string, number]`) are valid 2020-12.
  const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
  addFormats(ajv);
  const docs = Object.fromEntries(
    Object.entries(generateJsonSchemas()).map(([file, text]) => [file.replace(/\.json$/, ''), JSON.parse(text)]),
  ) as Record<string, Record<string, unknown>>;
  const validators = new Map<string, ValidateFunction>();
  const validator = (stem: string): ValidateFunction => {
    let v = validators.get(stem);
    if (!v) {
      v = ajv.compile(docs[stem]!);
      validators.set(stem, v);
    }
    return v;
  };
  const errorsOf = (v: ValidateFunction) => ajv.errorsText(v.errors, { separator: '\n' });

  it.each(Object.keys(PUBLISHED_SCHEMAS))('%s compiles under draft 2020-12 in strict mode', (stem) => {
    expect(docs[stem]!['$schema']).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(() => validator(stem)).not.toThrow();
  });

  it.each([
    ['step-message', 'a step message', examples.stepMessage],
    ['step-result', 'a success result', examples.stepResultSuccess],
    ['step-result', 'a failure result', examples.stepResultFailure],
    ['task-request', 'a task request', examples.taskRequest],
    ['task-reply', 'a successful task reply', examples.taskReplyOk],
    ['task-reply', 'a refused task reply', examples.taskReplyError],
    ['retry-due', 'a retry-due message', examples.retryDue],
  ] as const)('%s accepts %s', (stem, _what, value) => {
    const v = validator(stem);
    expect(v(structuredClone(value)), errorsOf(v)).toBe(true);
  });

  it.each([
    ['step-message', 'an unknown protocol version', { ...examples.stepMessage, protocol_version: 2 }, '/protocol_version'],
    ['step-message', 'a dotted namespace', { ...examples.stepMessage, namespace: 'payments.eu' }, '/namespace'],
    ['step-message', 'attempt 0', { ...examples.stepMessage, attempt: 0 }, '/attempt'],
    ['step-message', 'a time without offset', { ...examples.stepMessage, dispatched_at: '2025-03-01T12:00:00' }, '/dispatched_at'],
    ['step-result', 'an unknown status', { ...examples.stepResultSuccess, status: 'done' }, '/status'],
    [
      'step-result',
      'an error kind outside the enum',
      { ...examples.stepResultFailure, error: { kind: 'maybe', code: 'X', message: 'm' } },
      '/error/kind',
    ],
    ['task-request', 'a context that is not an object', { ...examples.taskRequest, context: [1, 2] }, '/context'],
    ['task-reply', 'ok without the task', { ...examples.taskReplyOk, task: undefined }, ''],
    ['retry-due', 'a negative delay', { ...examples.retryDue, delay_ms: -1 }, '/delay_ms'],
  ] as const)('%s refuses %s', (stem, _what, value, pointer) => {
    const v = validator(stem);
    const copy = JSON.parse(JSON.stringify(value)) as unknown;
    expect(v(copy)).toBe(false);
    expect(v.errors!.map((e) => e.instancePath), errorsOf(v)).toContain(pointer);
  });

  it('step-message refuses a message missing required fields, naming each', () => {
    const { task_id: _a, step_id: _b, ...rest } = examples.stepMessage;
    const v = validator('step-message');
    expect(v(rest)).toBe(false);
    const missing = v.errors!.filter((e) => e.keyword === 'required').map((e) => e.params['missingProperty']);
    expect(missing.sort()).toEqual(['step_id', 'task_id']);
  });

  describe('task-template', () => {
    const template = {
      name: 'process_refund',
      namespace_name: 'payments',
      version: '1.0.0',
      system_dependencies: { primary: 'default' },
      steps: [
        { name: 'validate', handler: { callable: 'V', initialization: { a: 1 } }, retry: { max_attempts: 2 } },
        { name: 'refund', handler: { callable: 'R', method: 'run' }, dependencies: ['validate'], timeout_seconds: 30 },
      ],
      environments: { test: { steps: [{ name: 'refund', timeout_seconds: 5 }] } },
    };

    it('accepts a template the compiler accepts', () => {
      const v = validator('task-template');
      expect(v(structuredClone(template)), errorsOf(v)).toBe(true);
    });

    it('refuses a misspelt step field', () => {
      const v = validator('task-template');
      const bad = structuredClone(template) as { steps: Record<string, unknown>[] };
      bad.steps[1]!['dependecies'] = bad.steps[1]!['dependencies'];
      delete bad.steps[1]!['dependencies'];
      expect(v(bad)).toBe(false);
      expect(v.errors!.some((e) => e.keyword === 'additionalProperties' && e.instancePath === '/steps/1')).toBe(true);
    });

    it('refuses an unknown backoff kind', () => {
      const v = validator('task-template');
      const bad = structuredClone(template) as { steps: { retry?: Record<string, unknown> }[] };
      bad.steps[0]!.retry = { backoff: 'random' };
      expect(v(bad)).toBe(false);
      expect(v.errors!.map((e) => e.instancePath)).toContain('/steps/0/retry/backoff');
    });
  });
});
