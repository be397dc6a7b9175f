import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTemplate, TemplateError, type CompiledTemplate } from '@tasker/protocol';
import { startStack, tasksWhen, finished, type Stack } from '../support/stack.ts';
import { startRecordingWorker, type Execution } from '../support/recording-worker.ts';

const CORPUS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'shared', 'corpus', 'tasker-core-templates');
const present = existsSync(CORPUS);
if (!present) console.warn(`corpus end-to-end test skipped: no corpus at ${CORPUS}`);

/** A context that satisfies a JSON Schema well enough for the corpus' input schemas. */
export function sampleFromSchema(schema: Record<string, unknown>): unknown {
  if (Array.isArray(schema.enum)) return schema.enum[0];
  switch (schema.type) {
    case 'object': {
      const props = (schema.properties ?? {}) as Record<string, Record<string, unknown>>;
      const required = (schema.required ?? []) as string[];
      return Object.fromEntries(required.map((k) => [k, sampleFromSchema(props[k] ?? {})]));
    }
    case 'integer': {
      const min = typeof schema.minimum === 'number' ? schema.minimum : 2;
      return min % 2 === 0 ? min : min + 1;
    }
    case 'number':
      return typeof schema.minimum === 'number' ? schema.minimum + 1 : 10;
    case 'boolean':
      return true;
    case 'array':
      return schema.minItems ? Array.from({ length: schema.minItems as number }, () => sampleFromSchema((schema.items ?? {}) as Record<string, unknown>)) : [];
    case 'string':
      if (schema.format === 'email') return 'someone@example.com';
      if (schema.format === 'uuid') return '3f1c2a9e-8b4d-4c6e-9f00-1a2b3c4d5e6f';
      return 'sample';
    default:
      return 'sample';
  }
}

/** Values the sampler cannot derive (a regex pattern), by template. */
const CONTEXT_OVERRIDES: Record<string, Record<string, unknown>> = {
  'payments.process_refund': { payment_id: 'pay_sample' },
};

describe.skipIf(!present)('every standard-only corpus template runs end to end with a generic handler', () => {
  let stack: Stack;
  const executions: Execution[] = [];
  const runnable: CompiledTemplate[] = [];

  beforeAll(async () => {
    stack = await startStack();
    for (const f of readdirSync(CORPUS).filter((f) => f.endsWith('.yaml')).sort()) {
      try {
        runnable.push(parseTemplate(readFileSync(join(CORPUS, f), 'utf8'), { origin: f }));
      } catch (err) {
        if (!(err instanceof TemplateError && err.code === 'UNSUPPORTED_STEP_TYPE')) throw err;
      }
    }
    await stack.orchestrator.registerTemplates(runnable);
    for (const t of runnable) stack.namespaces.add(t.namespace);
    for (const ns of stack.namespaces) await startRecordingWorker(stack, ns, runnable, executions);
  });
  afterAll(async () => {
    await stack?.cleanup();
  });

  it('16 templates are runnable', () => {
    expect(runnable).toHaveLength(16);
  });

  it('each completes with every step run once', async () => {
    const outcomes = await stack.orchestrator.createTasks(
      runnable.map((t) => ({
        namespace: t.namespace,
        name: t.name,
        version: t.version,
        context: {
          ...(t.inputSchema ? (sampleFromSchema(t.inputSchema) as object) : {}),
          ...CONTEXT_OVERRIDES[`${t.namespace}.${t.name}`],
        } as Record<string, never>,
      })),
    );
    const refused = outcomes.flatMap((o, i) => (o.ok ? [] : [`${runnable[i]!.name}: ${o.error.message}`]));
    expect(refused).toEqual([]);
    const ids = outcomes.map((o) => (o.ok ? o.task.id : ''));
    const tasks = await tasksWhen(stack.orchestrator, ids, finished, 30000);
    for (const [i, t] of tasks.entries()) {
      expect(`${t.namespace}.${t.name}: ${t.state}`).toBe(`${runnable[i]!.namespace}.${runnable[i]!.name}: complete`);
      expect(executions.filter((e) => e.taskId === t.id)).toHaveLength(runnable[i]!.steps.length);
    }
  });
});
