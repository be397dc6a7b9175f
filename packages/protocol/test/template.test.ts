import { describe, expect, it } from 'vitest';
import {
  compileTemplate,
  DEFAULT_RETRY_POLICY,
  ErrorCode,
  parseTemplate,
  TemplateError,
  UNSUPPORTED_STEP_TYPES,
  type CompiledStep,
  type CompiledTemplate,
} from '../src/index.ts';

/** Runs `fn`, which must throw a TemplateError, and returns that error. */
function templateError(fn: () => unknown): TemplateError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(TemplateError);
    return e as TemplateError;
  }
  throw new Error('expected a TemplateError, but the template compiled');
}

function step(t: CompiledTemplate, name: string): CompiledStep {
  const s = t.steps.find((x) => x.name === name);
  if (!s) throw new Error(`no step '${name}' in compiled template`);
  return s;
}

type RawStep = Record<string, unknown> & { name: string };

/** A template object with sensible header fields; each step gets a handler unless it has one. */
function raw(steps: RawStep[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'sample',
    namespace_name: 'payments',
    version: '1.0.0',
    steps: steps.map((s) => ({ handler: { callable: `Handlers::${s.name}` }, ...s })),
    ...extra,
  };
}

const ORIGIN = 'templates/payments/sample.yaml';

const VALID_YAML = `
name: process_refund
namespace_name: payments
version: 1.2.3
description: Refund through the gateway
input_schema:
  type: object
  required: [payment_id]
steps:
  # Written out of dependency order on purpose: the compiler must sort.
  - name: notify_customer
    handler:
      callable: Payments::Notify
    dependencies: [update_records]
  - name: update_records
    handler:
      callable: Payments::UpdateRecords
    dependencies: [refund_gateway, refund_ledger]
  - name: refund_gateway
    handler:
      callable: Payments::Gateway
      method: refund
      initialization:
        gateway: stripe
        timeouts: { connect: 2 }
    dependencies: [validate]
    timeout_seconds: 2.5
  - name: refund_ledger
    handler:
      callable: Payments::Ledger
    dependencies: [validate]
  - name: validate
    handler:
      callable: Payments::Validate
    dependencies: []
`;

describe('compiling a valid template', () => {
  const t = parseTemplate(VALID_YAML, { origin: ORIGIN });

  it('keeps the header fields', () => {
    expect(t.namespace).toBe('payments');
    expect(t.name).toBe('process_refund');
    expect(t.version).toBe('1.2.3');
    expect(t.description).toBe('Refund through the gateway');
    expect(t.inputSchema).toEqual({ type: 'object', required: ['payment_id'] });
    expect(t.metadata).toBeNull();
  });

  it('orders steps so that each comes after all its dependencies, keeping written order among ready steps', () => {
    expect(t.steps.map((s) => s.name)).toEqual([
      'validate',
      'refund_gateway',
      'refund_ledger',
      'update_records',
      'notify_customer',
    ]);
  });

  it('lists the direct dependents of each step', () => {
    expect(step(t, 'validate').dependents).toEqual(['refund_gateway', 'refund_ledger']);
    expect(step(t, 'refund_gateway').dependents).toEqual(['update_records']);
    expect(step(t, 'update_records').dependents).toEqual(['notify_customer']);
    expect(step(t, 'notify_customer').dependents).toEqual([]);
  });

  it('keeps direct dependencies as written', () => {
    expect(step(t, 'update_records').dependencies).toEqual(['refund_gateway', 'refund_ledger']);
    expect(step(t, 'validate').dependencies).toEqual([]);
  });

  it('lists every ancestor of a step, transitive ones included, in dependency order', () => {
    expect(step(t, 'validate').ancestors).toEqual([]);
    expect(step(t, 'refund_gateway').ancestors).toEqual(['validate']);
    expect(step(t, 'update_records').ancestors).toEqual(['validate', 'refund_gateway', 'refund_ledger']);
    expect(step(t, 'notify_customer').ancestors).toEqual([
      'validate',
      'refund_gateway',
      'refund_ledger',
      'update_records',
    ]);
  });

  it('carries handler callable, method and initialization', () => {
    const g = step(t, 'refund_gateway');
    expect(g.callable).toBe('Payments::Gateway');
    expect(g.method).toBe('refund');
    expect(g.initialization).toEqual({ gateway: 'stripe', timeouts: { connect: 2 } });
    const v = step(t, 'validate');
    expect(v.method).toBeNull();
    expect(v.initialization).toEqual({});
  });

  it('turns timeout_seconds into timeoutMs, and no timeout into null', () => {
    expect(step(t, 'refund_gateway').timeoutMs).toBe(2500);
    expect(step(t, 'validate').timeoutMs).toBeNull();
  });

  it('gives steps without a retry block the default policy', () => {
    expect(step(t, 'validate').retry).toEqual(DEFAULT_RETRY_POLICY);
  });

  it('compiles the same object through compileTemplate as through parseTemplate', () => {
    const obj = raw([{ name: 'a' }, { name: 'b', dependencies: ['a'] }]);
    const c = compileTemplate(obj);
    expect(c.steps.map((s) => s.name)).toEqual(['a', 'b']);
    expect(step(c, 'b').ancestors).toEqual(['a']);
  });
});

describe('dependency errors', () => {
  it('refuses an unknown dependency, naming the file, the step and the missing name', () => {
    const e = templateError(() =>
      compileTemplate(raw([{ name: 'a' }, { name: 'b', dependencies: ['a', 'charge_card'] }]), { origin: ORIGIN }),
    );
    expect(e.code).toBe(ErrorCode.TEMPLATE_INVALID);
    expect(e.message).toContain(ORIGIN);
    expect(e.message).toContain("step 'b'");
    expect(e.message).toContain("'charge_card'");
    expect(e.problems).toHaveLength(1);
  });

  it('refuses a two-step cycle and shows its path', () => {
    const e = templateError(() =>
      compileTemplate(raw([{ name: 'a', dependencies: ['b'] }, { name: 'b', dependencies: ['a'] }]), { origin: ORIGIN }),
    );
    expect(e.code).toBe(ErrorCode.TEMPLATE_INVALID);
    expect(e.message).toContain(ORIGIN);
    expect(e.message).toMatch(/dependency cycle: (a -> b -> a|b -> a -> b)/);
  });

  it('shows only the steps on the cycle, not the steps hanging off it', () => {
    // root -> x; x, y, z form a cycle (x needs z, y needs x, z needs y); tail needs x.
    const e = templateError(() =>
      compileTemplate(
        raw([
          { name: 'tail', dependencies: ['x'] },
          { name: 'root' },
          { name: 'x', dependencies: ['root', 'z'] },
          { name: 'y', dependencies: ['x'] },
          { name: 'z', dependencies: ['y'] },
        ]),
      ),
    );
    const m = /dependency cycle: ([\w >-]+)/.exec(e.message);
    expect(m, e.message).not.toBeNull();
    const path = m![1]!.split(' -> ');
    expect(path[0]).toBe(path[path.length - 1]);
    const loop = path.slice(0, -1);
    expect([...loop].sort()).toEqual(['x', 'y', 'z']);
    // Consecutive names are joined by a real edge, read in one consistent direction.
    const deps: Record<string, string[]> = { x: ['root', 'z'], y: ['x'], z: ['y'] };
    const edges = path.slice(0, -1).map((from, i) => [from, path[i + 1]!] as const);
    const forward = edges.every(([a, b]) => deps[b]!.includes(a)); // a runs before b
    const backward = edges.every(([a, b]) => deps[a]!.includes(b)); // a depends on b
    expect(forward || backward, `not a cycle of the template: ${path.join(' -> ')}`).toBe(true);
  });

  it('refuses a step that depends on itself', () => {
    const e = templateError(() => compileTemplate(raw([{ name: 'a', dependencies: ['a'] }]), { origin: ORIGIN }));
    expect(e.code).toBe(ErrorCode.TEMPLATE_INVALID);
    expect(e.message).toContain(`${ORIGIN}: step 'a': depends on itself`);
  });

  it('refuses the same dependency listed twice', () => {
    const e = templateError(() => compileTemplate(raw([{ name: 'a' }, { name: 'b', dependencies: ['a', 'a'] }])));
    expect(e.message).toContain("step 'b'");
    expect(e.message).toContain('same dependency twice');
  });

  it('refuses duplicate step names', () => {
    const e = templateError(() => compileTemplate(raw([{ name: 'a' }, { name: 'a' }]), { origin: ORIGIN }));
    expect(e.code).toBe(ErrorCode.TEMPLATE_INVALID);
    expect(e.message).toContain(`${ORIGIN}: step 'a': duplicate step name`);
  });

  it('reports every problem of a template at once', () => {
    const e = templateError(() =>
      compileTemplate(
        raw([
          { name: 'a', dependencies: ['a'] },
          { name: 'b', dependencies: ['nope'] },
        ]),
      ),
    );
    expect(e.problems.map((p) => p.step)).toEqual(['a', 'b']);
    expect(e.issues.map((i) => i.path)).toEqual(['steps.a', 'steps.b']);
  });
});

describe('version', () => {
  it.each(['1.0', 'v1.0.0', '1.0.0.0', '01.0.0', 'latest'])('refuses the non-semantic version %j', (version) => {
    const e = templateError(() => compileTemplate(raw([{ name: 'a' }], { version }), { origin: ORIGIN }));
    expect(e.code).toBe(ErrorCode.TEMPLATE_INVALID);
    expect(e.message).toContain(ORIGIN);
    expect(e.message).toContain(`version '${version}' is not a semantic version`);
  });

  it.each(['1.0.0', '0.1.0', '2.10.3-beta.1', '1.0.0+build.5'])('accepts the semantic version %j', (version) => {
    expect(compileTemplate(raw([{ name: 'a' }], { version })).version).toBe(version);
  });

  it('refuses a version that YAML reads as a number (version: 1.0)', () => {
    const yaml = 'name: t\nnamespace_name: payments\nversion: 1.0\nsteps:\n  - name: a\n    handler: { callable: A }\n';
    const e = templateError(() => parseTemplate(yaml, { origin: ORIGIN }));
    expect(e.code).toBe(ErrorCode.TEMPLATE_INVALID);
    expect(e.message).toContain(ORIGIN);
    expect(e.message).toMatch(/version .* is not a semantic version/);
  });

  it('reads an unquoted three-part version as the string it looks like', () => {
    const yaml = 'name: t\nnamespace_name: payments\nversion: 1.0.0\nsteps:\n  - name: a\n    handler: { callable: A }\n';
    expect(parseTemplate(yaml).version).toBe('1.0.0');
  });
});

describe('unknown fields and step types', () => {
  it('refuses a misspelt step field, naming the field and the step', () => {
    const e = templateError(() =>
      compileTemplate(raw([{ name: 'a' }, { name: 'b', dependecies: ['a'] }]), { origin: ORIGIN }),
    );
    expect(e.code).toBe(ErrorCode.TEMPLATE_INVALID);
    expect(e.message).toContain(ORIGIN);
    expect(e.message).toContain("step 'b'");
    expect(e.message).toContain("'dependecies'");
  });

  it('refuses a misspelt field inside a retry block, naming the field and the step', () => {
    const e = templateError(() => compileTemplate(raw([{ name: 'a', retry: { max_attempt: 2 } }])));
    expect(e.message).toContain("step 'a'");
    expect(e.message).toContain("'max_attempt'");
  });

  it('refuses an unknown top-level field', () => {
    const e = templateError(() => compileTemplate(raw([{ name: 'a' }], { namespace: 'payments' })));
    expect(e.message).toContain("'namespace'");
  });

  it("accepts and ignores the original project's fields for features not built here", () => {
    const t = compileTemplate(
      raw([{ name: 'a', system_dependency: 'default', publishes_events: [{ name: 'x' }] }], {
        system_dependencies: { primary: 'default', secondary: [] },
        domain_events: [],
      }),
    );
    expect(t.steps.map((s) => s.name)).toEqual(['a']);
  });

  it.each([...UNSUPPORTED_STEP_TYPES])('refuses step type %s as not supported yet', (type) => {
    const e = templateError(() =>
      compileTemplate(raw([{ name: 'a' }, { name: 'b', type, dependencies: ['a'] }]), { origin: ORIGIN }),
    );
    expect(e.code).toBe(ErrorCode.UNSUPPORTED_STEP_TYPE);
    expect(e.message).toContain(`${ORIGIN}: step 'b'`);
    expect(e.message).toContain(`'${type}'`);
    expect(e.message).toContain('not supported yet');
    expect(e.problems.every((p) => p.code === ErrorCode.UNSUPPORTED_STEP_TYPE)).toBe(true);
  });

  it('covers exactly the four step types of the original project that are not built here', () => {
    expect([...UNSUPPORTED_STEP_TYPES].sort()).toEqual(['batch_worker', 'batchable', 'decision', 'deferred_convergence']);
  });

  it('accepts an explicit standard step type', () => {
    expect(compileTemplate(raw([{ name: 'a', type: 'standard' }])).steps).toHaveLength(1);
  });

  it('refuses an unknown step type as invalid, not as unsupported', () => {
    const e = templateError(() => compileTemplate(raw([{ name: 'a', type: 'parallel' }]), { origin: ORIGIN }));
    expect(e.code).toBe(ErrorCode.TEMPLATE_INVALID);
    expect(e.message).toContain("unknown step type 'parallel'");
    expect(e.message).not.toContain('not supported yet');
  });

  it('reports TEMPLATE_INVALID when an unsupported type comes with another problem', () => {
    const e = templateError(() =>
      compileTemplate(raw([{ name: 'a', type: 'decision' }, { name: 'b', dependencies: ['missing'] }])),
    );
    expect(e.code).toBe(ErrorCode.TEMPLATE_INVALID);
    expect(e.problems.map((p) => p.code).sort()).toEqual([ErrorCode.TEMPLATE_INVALID, ErrorCode.UNSUPPORTED_STEP_TYPE]);
  });
});

describe('header checks', () => {
  it.each(['team.payments', 'Payments', 'payMents', '1payments', 'pay-ments', ''])(
    'refuses the namespace %j',
    (namespace_name) => {
      const e = templateError(() => compileTemplate(raw([{ name: 'a' }], { namespace_name }), { origin: ORIGIN }));
      expect(e.code).toBe(ErrorCode.TEMPLATE_INVALID);
      expect(e.message).toContain(ORIGIN);
      expect(e.message).toContain("field 'namespace_name'");
    },
  );

  it('accepts a lower snake case namespace', () => {
    expect(compileTemplate(raw([{ name: 'a' }], { namespace_name: 'customer_success2' })).namespace).toBe(
      'customer_success2',
    );
  });

  it('refuses a template without steps', () => {
    const e = templateError(() => compileTemplate(raw([]), { origin: ORIGIN }));
    expect(e.code).toBe(ErrorCode.TEMPLATE_INVALID);
    expect(e.message).toContain('at least one step');
  });

  it('refuses a step without a handler callable, naming the step', () => {
    const e = templateError(() => compileTemplate(raw([{ name: 'a', handler: {} }])));
    expect(e.message).toContain("step 'a'");
    expect(e.message).toContain('callable');
  });

  it('refuses invalid YAML, naming the origin', () => {
    const yaml = 'name: t\nnamespace_name: payments\nversion: 1.0.0\nsteps:\n  - name: a\n   handler: {callable: x}\n';
    const e = templateError(() => parseTemplate(yaml, { origin: ORIGIN }));
    expect(e.code).toBe(ErrorCode.TEMPLATE_INVALID);
    expect(e.message).toContain(`${ORIGIN}: YAML:`);
  });

  it('refuses a YAML document that is not a mapping', () => {
    const e = templateError(() => parseTemplate('- just\n- a list\n', { origin: ORIGIN }));
    expect(e.code).toBe(ErrorCode.TEMPLATE_INVALID);
    expect(e.message).toContain(ORIGIN);
  });
});

describe('environment overrides', () => {
  const withEnvs = raw(
    [
      { name: 'a', timeout_seconds: 60, retry: { max_attempts: 5, backoff: 'linear' } },
      { name: 'b', dependencies: ['a'], handler: { callable: 'B', initialization: { url: 'prod', keep: 1 } } },
    ],
    {
      environments: {
        test: {
          steps: [
            { name: 'a', timeout_seconds: 2, retry: { max_attempts: 1 } },
            { name: 'b', handler: { initialization: { url: 'test' } } },
          ],
        },
      },
    },
  );

  it('are not applied when no environment is given', () => {
    const t = compileTemplate(withEnvs);
    expect(step(t, 'a').timeoutMs).toBe(60_000);
    expect(step(t, 'a').retry.maxAttempts).toBe(5);
    expect(step(t, 'b').initialization).toEqual({ url: 'prod', keep: 1 });
  });

  it('are not applied for another environment', () => {
    const t = compileTemplate(withEnvs, { environment: 'production' });
    expect(step(t, 'a').timeoutMs).toBe(60_000);
    expect(step(t, 'a').retry.maxAttempts).toBe(5);
  });

  it('replace timeout and retry.max_attempts in the named environment, keeping the other retry fields', () => {
    const t = compileTemplate(withEnvs, { environment: 'test' });
    expect(step(t, 'a').timeoutMs).toBe(2000);
    expect(step(t, 'a').retry.maxAttempts).toBe(1);
    expect(step(t, 'a').retry.backoff).toBe('linear');
  });

  it('merge handler initialization in the named environment', () => {
    const t = compileTemplate(withEnvs, { environment: 'test' });
    expect(step(t, 'b').initialization).toEqual({ url: 'test', keep: 1 });
  });

  it('refuse an override naming a step that does not exist, even when that environment is not used', () => {
    const tpl = raw([{ name: 'a' }], { environments: { staging: { steps: [{ name: 'ghost', timeout_seconds: 1 }] } } });
    const e = templateError(() => compileTemplate(tpl, { origin: ORIGIN }));
    expect(e.code).toBe(ErrorCode.TEMPLATE_INVALID);
    expect(e.message).toContain(`${ORIGIN}: step 'ghost'`);
    expect(e.message).toContain('environments.staging');
    expect(e.message).toContain('does not exist');
  });

  // The original project reads `name: ALL` in an override as "every step" (tasker-core,
  // tasker-shared/src/models/core/task_template/mod.rs, resolve_for_environment); its
  // templates use it (corpus: conditional_approval_handler.yaml).
  it('apply an override named ALL to every step', () => {
    const tpl = raw([{ name: 'a' }, { name: 'b', dependencies: ['a'], timeout_seconds: 60 }], {
      environments: { test: { steps: [{ name: 'ALL', timeout_seconds: 10, retry: { max_attempts: 2 } }] } },
    });
    const t = compileTemplate(tpl, { environment: 'test' });
    expect(t.steps.map((s) => [s.name, s.timeoutMs, s.retry.maxAttempts])).toEqual([
      ['a', 10_000, 2],
      ['b', 10_000, 2],
    ]);
    const plain = compileTemplate(tpl);
    expect(step(plain, 'b').timeoutMs).toBe(60_000);
    expect(step(plain, 'b').retry.maxAttempts).toBe(DEFAULT_RETRY_POLICY.maxAttempts);
  });
});

describe('retry normalization', () => {
  const retryOf = (retry: unknown) => compileTemplate(raw([{ name: 'a', retry }])).steps[0]!.retry;

  it('uses 3 exponential attempts from 1000 ms, capped at 300000 ms, by default', () => {
    expect(compileTemplate(raw([{ name: 'a' }])).steps[0]!.retry).toEqual({
      maxAttempts: 3,
      backoff: 'exponential',
      baseDelayMs: 1000,
      maxDelayMs: 300_000,
      multiplier: 2,
    });
    expect(retryOf(null)).toEqual(DEFAULT_RETRY_POLICY);
    expect(retryOf({})).toEqual(DEFAULT_RETRY_POLICY);
  });

  it('reads retryable: false as a single attempt, whatever max_attempts says', () => {
    expect(retryOf({ retryable: false }).maxAttempts).toBe(1);
    expect(retryOf({ retryable: false, max_attempts: 5 }).maxAttempts).toBe(1);
  });

  it('reads max_attempts: 0 as one attempt', () => {
    expect(retryOf({ max_attempts: 0 }).maxAttempts).toBe(1);
    expect(retryOf({ retryable: false, max_attempts: 0 }).maxAttempts).toBe(1);
  });

  it('keeps max_attempts as the total number of attempts', () => {
    expect(retryOf({ max_attempts: 7 }).maxAttempts).toBe(7);
  });

  it('converts initial_delay and max_delay from seconds to milliseconds', () => {
    const r = retryOf({ initial_delay: 5, max_delay: 60 });
    expect(r.baseDelayMs).toBe(5000);
    expect(r.maxDelayMs).toBe(60_000);
    expect(retryOf({ initial_delay: 0.25 }).baseDelayMs).toBe(250);
  });

  it('takes backoff_base_ms and max_backoff_ms as milliseconds', () => {
    const r = retryOf({ backoff_base_ms: 50, max_backoff_ms: 200 });
    expect(r.baseDelayMs).toBe(50);
    expect(r.maxDelayMs).toBe(200);
  });

  it('accepts both forms when they agree', () => {
    const r = retryOf({ initial_delay: 2, backoff_base_ms: 2000, max_delay: 30, max_backoff_ms: 30_000 });
    expect([r.baseDelayMs, r.maxDelayMs]).toEqual([2000, 30_000]);
  });

  it('refuses initial_delay and backoff_base_ms that disagree, with a sentence naming both', () => {
    const e = templateError(() =>
      compileTemplate(raw([{ name: 'a', retry: { initial_delay: 2, backoff_base_ms: 1000 } }]), { origin: ORIGIN }),
    );
    expect(e.code).toBe(ErrorCode.TEMPLATE_INVALID);
    expect(e.message).toContain(`${ORIGIN}: step 'a'`);
    expect(e.message).toMatch(/retry\.initial_delay and retry\.backoff_base_ms disagree/);
  });

  it('refuses max_delay and max_backoff_ms that disagree, with a sentence naming both', () => {
    const e = templateError(() => compileTemplate(raw([{ name: 'a', retry: { max_delay: 10, max_backoff_ms: 500 } }])));
    expect(e.message).toMatch(/retry\.max_delay and retry\.max_backoff_ms disagree/);
  });

  it('raises the default cap to a base delay above it', () => {
    const r = retryOf({ initial_delay: 600 });
    expect(r.baseDelayMs).toBe(600_000);
    expect(r.maxDelayMs).toBe(600_000);
  });

  it('raises an explicit cap below the base delay to the base delay', () => {
    const r = retryOf({ backoff_base_ms: 5000, max_backoff_ms: 1000 });
    expect(r.maxDelayMs).toBe(5000);
  });

  it('refuses a cap longer than the delay queues can express', () => {
    const e = templateError(() => compileTemplate(raw([{ name: 'a', retry: { max_delay: 300_000 } }])));
    expect(e.message).toContain('above the longest supported delay');
  });

  it('keeps backoff kind and multiplier', () => {
    expect(retryOf({ backoff: 'fixed' }).backoff).toBe('fixed');
    expect(retryOf({ backoff_multiplier: 3 }).multiplier).toBe(3);
  });

  it('refuses an unknown backoff kind', () => {
    const e = templateError(() => compileTemplate(raw([{ name: 'a', retry: { backoff: 'random' } }])));
    expect(e.message).toContain("step 'a'");
    expect(e.message).toContain("field 'retry.backoff'");
  });
});
