import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ErrorCode, parseTemplate, qualifiedName, TemplateError, type CompiledTemplate } from '../src/index.ts';

/**
 * Real templates of the original Tasker project, kept outside the repository (see its
 * README): `../shared/corpus/tasker-core-templates` from the repository root. Every file
 * must load, or be refused because it uses a step type not built yet; nothing else.
 */
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const corpusDir = join(repoRoot, '..', 'shared', 'corpus', 'tasker-core-templates');
const exists = existsSync(corpusDir);
if (!exists) console.warn(`[corpus.test] template corpus absent, skipping: looked in ${corpusDir}`);

/**
 * Files refused with UNSUPPORTED_STEP_TYPE, with the step types they use that are not built.
 * Written out by hand, not derived from the files, so that a loader which refuses or accepts
 * too much fails here. Update it when a step type becomes supported.
 */
const REFUSED: Record<string, string[]> = {
  'batch_processing_products_csv.yaml': ['batchable', 'batch_worker', 'deferred_convergence'],
  'checkpoint_yield_test.yaml': ['batchable', 'batch_worker', 'deferred_convergence'],
  'conditional_approval_handler.yaml': ['decision', 'deferred_convergence'],
};
const EXPECTED_LOADED = 16;

type Outcome = { file: string; template: CompiledTemplate } | { file: string; error: unknown };

describe.skipIf(!exists)('original project template corpus', () => {
  const files = exists ? readdirSync(corpusDir).filter((f) => f.endsWith('.yaml')).sort() : [];
  const outcomes = new Map<string, Outcome>(
    files.map((file) => {
      const text = readFileSync(join(corpusDir, file), 'utf8');
      try {
        return [file, { file, template: parseTemplate(text, { origin: file }) }];
      } catch (error) {
        return [file, { file, error }];
      }
    }),
  );
  const loaded = (file: string): CompiledTemplate => {
    const o = outcomes.get(file);
    if (!o) throw new Error(`${file} is not in the corpus`);
    if ('error' in o) throw new Error(`${file} did not load: ${String((o.error as Error)?.message ?? o.error)}`);
    return o.template;
  };

  it('holds the expected number of templates', () => {
    expect(files).toHaveLength(EXPECTED_LOADED + Object.keys(REFUSED).length);
    for (const f of Object.keys(REFUSED)) expect(files).toContain(f);
  });

  it.each(files)('%s compiles, or is refused only for a step type not supported yet', (file) => {
    const o = outcomes.get(file)!;
    const refusedTypes = REFUSED[file];
    if (refusedTypes === undefined) {
      if ('error' in o) throw o.error;
      expect(o.template.steps.length).toBeGreaterThan(0);
      return;
    }
    if (!('error' in o)) throw new Error(`${file} compiled, but it uses ${refusedTypes.join(', ')} steps`);
    const e = o.error;
    expect(e).toBeInstanceOf(TemplateError);
    const te = e as TemplateError;
    expect(te.code, te.message).toBe(ErrorCode.UNSUPPORTED_STEP_TYPE);
    expect(te.message).toContain(file);
    for (const type of refusedTypes) expect(te.message).toContain(`step type '${type}' is not supported yet`);
    for (const p of te.problems) expect(p.origin).toBe(file);
  });

  it('compiles every loaded template with each step after its dependencies', () => {
    for (const file of files.filter((f) => !(f in REFUSED))) {
      const t = loaded(file);
      const seen = new Set<string>();
      for (const s of t.steps) {
        for (const d of s.dependencies) expect(seen.has(d), `${file}: ${s.name} before ${d}`).toBe(true);
        seen.add(s.name);
      }
    }
  });

  it('compiles every loaded template in the test environment too', () => {
    for (const file of files.filter((f) => !(f in REFUSED))) {
      expect(() => parseTemplate(readFileSync(join(corpusDir, file), 'utf8'), { origin: file, environment: 'test' }))
        .not.toThrow();
    }
  });

  it('compiles the two process_refund templates to one name in two namespaces', () => {
    const cs = loaded('customer_success_process_refund.yaml');
    const pay = loaded('payments_process_refund.yaml');
    expect(cs.name).toBe('process_refund');
    expect(pay.name).toBe('process_refund');
    expect(cs.namespace).toBe('customer_success');
    expect(pay.namespace).toBe('payments');
    expect(qualifiedName(cs)).not.toBe(qualifiedName(pay));
    expect(cs.steps.map((s) => s.callable)).not.toEqual(pay.steps.map((s) => s.callable));
  });
});
